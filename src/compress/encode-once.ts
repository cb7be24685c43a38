import type { Encoding } from '../pipeline/context.ts';

/**
 * One fast encoding of a body at a time: requests that encode the same identity bytes at the same
 * moment share the first one's work instead of each making its own. That moment comes with
 * collapsed forwarding: the waiters of a miss are woken together by the stored body (the same
 * Buffer for all of them), and each would otherwise encode it before any had kept its encoding
 * in the holder (200 waiters with Accept-Encoding: br, 200 Brotli runs of one page).
 *
 * An entry is forgotten in the turn of the event loop after its encode settles: the requests woken
 * by one event run their microtasks within the turn that woke them, and a later request finds the
 * encoding kept in the holder (or encodes anew, if there is none to find).
 */

export type Encode = (coding: Encoding, input: Buffer) => Promise<Buffer>;

export interface SharedEncoding {
  readonly fast: Promise<Buffer>;
  /** Set by the one request that hands the encoding to its holder, so the others do not put it again. */
  kept: boolean;
}

export function createEncodeOnce(encode: Encode): (coding: Encoding, input: Buffer) => SharedEncoding {
  let running = new Map<Buffer, Map<Encoding, SharedEncoding>>();
  let settled: Array<readonly [Buffer, Encoding]> = [];

  const forgetSettled = () => {
    const due = settled;
    settled = [];
    for (const [input, coding] of due) {
      const byCoding = running.get(input);
      byCoding?.delete(coding);
      if (byCoding?.size === 0) running.delete(input);
    }
    // A new Map each turn that used it, young: V8 rebuilds a Map's table as keys come and go, and
    // a replaced table in the old generation (where a long-lived Map's is) goes on pointing at its
    // keys until the next full collection, which young collections take as alive; every miss's
    // whole body (a key here) was moved to the old generation (test: encode-once.test.ts).
    running = new Map(running);
  };

  return (coding, input) => {
    let byCoding = running.get(input);
    const shared = byCoding?.get(coding);
    if (shared !== undefined) return shared;
    const entry: SharedEncoding = { fast: encode(coding, input), kept: false };
    if (byCoding === undefined) running.set(input, byCoding = new Map());
    byCoding.set(coding, entry);
    const forget = () => {
      // One Immediate for every encode that settled in this turn.
      if (settled.push([input, coding]) === 1) setImmediate(forgetSettled);
    };
    entry.fast.then(forget, forget);
    return entry;
  };
}
