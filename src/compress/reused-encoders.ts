import zlib from 'node:zlib';

/**
 * gzip and Brotli of small bodies on the calling thread, each with one engine kept for all bodies
 * instead of the one-shot functions' engine per call.
 *
 * `zlib.gzipSync` and `zlib.brotliCompressSync` build a whole engine per call (a Transform stream
 * with its state, a 16 KB output buffer, the native encoder) and close it when they return:
 * - gzip: the deflate state is four blocks of just over 64 KiB (window, prev, head and pending
 *   buffers), made, cleared and freed per body. Freed and asked for again between the cache's
 *   long-lived bodies, blocks of that size keep glibc's heap from closing its holes (the soak,
 *   bench/soak.ts: most of the process's free malloc chunks sat in the main heap). Kept and reset
 *   between bodies (zlib's deflateReset keeps its blocks): the same bytes at 12-19 % less CPU for
 *   a 10 KB body, and no allocation of 64 KiB or more per call (counted with a malloc wrapper).
 * - Brotli: its encoder cannot be reset (Node's reset makes a new one with default parameters:
 *   quality 11, 80 times slower), so the kept engine's handle is initialised again with our
 *   parameters for each body; the encoder's own blocks are still made per body, but not the
 *   stream around them: the same bytes at 5-12 µs less per call (1-30 KB bodies, measured).
 * (zstd is left to its one-shot function: its reset makes the workspace again anyway, and clients
 * that prefer it to Brotli are few.)
 *
 * Node's one-shot functions close their engine when they return, so this drives the engine's
 * handle the way they do inside (`_handle.writeSync`, `_writeState`, and for Brotli `_handle.init`:
 * Node's internals since v10/v11). Where a runtime lacks them, the factories answer null and the
 * caller keeps the one-shot functions.
 */

interface ZlibHandle {
  writeSync(flush: number, input: Buffer, inOffset: number, inLength: number, out: Buffer, outOffset: number, outLength: number): void;
  reset(): void;
  /** Brotli engines only: a new encoder with these parameters (-1: the encoder's default); false when one was refused. */
  init?(params: Uint32Array, writeState: Uint32Array, callback: () => void, dictionary: undefined): boolean | undefined;
}

/** What Node's zlib engines carry inside: the native handle and where it writes [availOut, availIn]. */
interface EngineInternals {
  _handle?: ZlibHandle | null;
  _writeState?: Uint32Array;
}

type Engine = zlib.Gzip & EngineInternals;

/** Encodes `input` whole (with `params` where the coding takes them per body); the result owns its bytes. */
export type SyncEncoder<P = void> = (input: Buffer, params: P) => Buffer;

/** Output space per write: the whole of a body up to 64 KB in one go (the worst case is a few bytes over the input). */
const OUT_SIZE = 66 * 1024;

/** The first `length` bytes of `buffer` in memory of their own (not the shared pool: results are kept), since `buffer` is written again by the next call. */
function copyOf(buffer: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(length);
  buffer.copy(copy, 0, 0, length);
  return copy;
}

/**
 * One kept engine driven synchronously: `prepare` readies its handle for a body, `finish` is the
 * flush that ends one, `done` runs after it. A failure closes the engine; the next call opens another.
 */
function keptEngine<P>(create: () => Engine, usable: (engine: Engine) => boolean, finish: number,
  prepare: (handle: ZlibHandle, state: Uint32Array, params: P) => void,
  done: (handle: ZlibHandle) => void): SyncEncoder<P> | null {
  const open = () => {
    const opened = create();
    // A failing write reports through the engine's 'error' (it destroys itself); we throw instead.
    opened.on('error', () => {});
    return opened;
  };
  const probe = open();
  if (!usable(probe)) {
    probe.close();
    return null;
  }
  let engine: Engine | null = probe;
  let out: Buffer | null = null;

  return function encode(input: Buffer, params: P): Buffer {
    const current = engine ?? open();
    engine = null; // taken: a throw below leaves it closed, and the next call opens another
    out ??= Buffer.allocUnsafeSlow(OUT_SIZE);
    const handle = current._handle!;
    const state = current._writeState!;
    const chunks: Buffer[] = [];
    let total = 0;
    let inOffset = 0;
    let inLeft = input.length;
    try {
      prepare(handle, state, params);
      for (;;) {
        handle.writeSync(finish, input, inOffset, inLeft, out, 0, out.length);
        if (current.destroyed) throw current.errored ?? new Error('compression failed');
        const availOut = state[0];
        const have = out.length - availOut;
        chunks.push(copyOf(out, have));
        total += have;
        inOffset += inLeft - state[1];
        inLeft = state[1];
        if (availOut !== 0) break; // the final flush with room to spare: the stream is complete
      }
      done(handle);
      engine = current;
    } catch (error) {
      current.close();
      throw error;
    }
    if (chunks.length === 1) return chunks[0];
    const whole = Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (const chunk of chunks) at += chunk.copy(whole, at);
    return whole;
  };
}

const hasInternals = (engine: Engine): boolean =>
  typeof engine._handle?.writeSync === 'function' && typeof engine._handle.reset === 'function' && engine._writeState instanceof Uint32Array;

/** gzip at `level`, one deflate state reset between bodies. */
export function reusedGzip(level: number): SyncEncoder | null {
  return keptEngine<void>(() => zlib.createGzip({ level }) as Engine, hasInternals, zlib.constants.Z_FINISH, () => {}, (handle) => handle.reset());
}

/** Brotli's parameter slots, as Node sizes them: one per BROTLI_PARAM_* constant up to the largest. */
const BROTLI_PARAM_SLOTS = 1 + Math.max(...Object.entries(zlib.constants).map(([name, value]) => (name.startsWith('BROTLI_PARAM_') ? value : 0)));
const UNSET = 0xffffffff; // -1 in a Uint32Array: the encoder's default

/** Brotli parameters by BROTLI_PARAM_* number (quality, size hint, window), as `params` in zlib's options. */
export type BrotliParams = Readonly<Record<number, number>>;

/** Brotli with each body's own parameters, on one kept engine whose handle is initialised again per body. */
export function reusedBrotli(): SyncEncoder<BrotliParams> | null {
  const slots = new Uint32Array(BROTLI_PARAM_SLOTS);
  const noCallback = () => {}; // only asynchronous writes call back; these are synchronous
  return keptEngine<BrotliParams>(
    () => zlib.createBrotliCompress() as unknown as Engine,
    (engine) => hasInternals(engine) && typeof engine._handle!.init === 'function',
    zlib.constants.BROTLI_OPERATION_FINISH,
    (handle, state, params) => {
      slots.fill(UNSET);
      for (const key in params) slots[Number(key)] = params[key];
      if (handle.init!(slots, state, noCallback, undefined) === false) throw new Error('Brotli refused its parameters');
    },
    () => {},
  );
}
