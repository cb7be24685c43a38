import type { OutgoingHttpHeaders } from 'node:http';
import type { SharedBody } from './shared-body.ts';
import type { StoredResponse } from './policy.ts';
import type { Found } from './entries.ts';
import { AbortSource, unwatchAbort, watchAbort } from '../pipeline/abort-watch.ts';

/**
 * Collapsed forwarding: one origin request per primary key at a time. The first request for a key
 * (the leader) starts a flight; identical requests that arrive while it is in the air wait for its
 * outcome instead of going to the origin.
 *
 *   shared     the response will be stored: read it from the shared body (if your Vary inputs match)
 *   refreshed  the stored response was updated by a 304: look it up again
 *   pass       not storable: go to the origin yourself (the key is now hit-for-miss)
 *   error      the origin failed: the same error for everyone
 */
export type FlightResult =
  | {
    readonly kind: 'shared';
    /** What will be stored. */
    readonly meta: StoredResponse;
    /** The fields clients get (hidden ones removed), without our Cache-Status. */
    readonly clientHeaders: OutgoingHttpHeaders;
    readonly body: SharedBody;
    /** The whole body once it ended within maxObjectSize and matched its Content-Length, else null. */
    readonly completed: Promise<Buffer | null>;
    /** The stored record once the store took it, else undefined. */
    readonly stored: Promise<Found | undefined>;
    /** The response's Vary names and the leader's secondary key: a waiter with other values is another variant. */
    readonly vary: readonly string[];
    readonly secondary: string;
  }
  | { readonly kind: 'refreshed' }
  /** Not storable; `uncacheable`: why, when the URI was learnt uncacheable for a while (hit-for-miss), as other workers may learn it too. */
  | { readonly kind: 'pass'; readonly uncacheable?: string }
  | { readonly kind: 'error'; readonly error: unknown };

export interface Flight {
  /** Resolves once, when the leader knows the outcome (headers, not the whole body). */
  readonly outcome: Promise<FlightResult>;
  /** A validation of a stored response (validate.ts), not a fetch of one: its waiters have a stale response to fall back on. */
  readonly validating: boolean;
  /**
   * Interest in the outcome, counted per client (the leader's holds one from the start): when every
   * client that waits has gone away before the origin answered, the fetch is abandoned.
   */
  hold(): void;
  release(): void;
}

export interface Leader extends Flight {
  /** Publishes the outcome. The flight stays joinable until `land`. */
  settle(result: FlightResult): void;
  /** Removes the flight: later requests look in the store (or start a new flight). */
  land(): void;
}

export interface Flights {
  get(key: string): Flight | undefined;
  /**
   * Starts a flight for `key` (the caller makes sure none is in the air), held once for the
   * leader's client; `abandon` runs if all interest is released before it settles.
   */
  start(key: string, abandon: () => void, validating?: boolean): Leader;
  readonly size: number;
}

export function createFlights(): Flights {
  // A slot per flight, emptied when it lands. V8 rebuilds a Map's table as keys come and go, and
  // the table it replaces (in the old generation, as the Map is after its first full collection)
  // goes on pointing at what it held until the next full collection, which young collections take
  // as alive: every flight in the air at a rebuild, and the whole response it settled with, was
  // moved to the old generation once it landed. A replaced table now holds an empty slot.
  const inflight = new Map<string, { flight: Flight | undefined }>();
  return {
    get: (key) => inflight.get(key)?.flight,
    start(key, abandon, validating = false) {
      let resolve!: (result: FlightResult) => void;
      const outcome = new Promise<FlightResult>((r) => { resolve = r; });
      let settled = false;
      let interest = 1;
      const leader: Leader = {
        outcome,
        validating,
        hold() { interest++; },
        release() {
          if (--interest === 0 && !settled) abandon();
        },
        settle(result) {
          if (settled) return;
          settled = true;
          resolve(result);
          // A flight that will not share a body is over as soon as its outcome is known.
          if (result.kind !== 'shared') leader.land();
        },
        land() {
          const slot = inflight.get(key);
          if (slot?.flight !== leader) return;
          slot.flight = undefined;
          inflight.delete(key);
        },
      };
      inflight.set(key, { flight: leader });
      return leader;
    },
    get size() { return inflight.size; },
  };
}

/**
 * A flight led by the request with this `signal`, and the signal of its fetch. The fetch has its
 * own abort source: it goes on when this client leaves while others wait (and, once the body
 * flows, while it is being stored); it is abandoned only when every client waiting for the answer
 * has gone. Signals are watched (abort-watch.ts), not listened to: an 'abort' listener per request
 * on the client's signal and another (the origin exchange's) on the fetch's kept their closures
 * alive through young collections.
 */
export function leadFlight(flights: Flights, signal: AbortSignal, primary: string, validating = false): { readonly leader: Leader; readonly fetchSignal: AbortSignal } {
  const fetch = new AbortSource();
  const leader = flights.start(primary, () => fetch.abort(), validating);
  // Once the outcome is known the client's going away changes nothing (release() abandons only a
  // flight still in the air): the watch ends there, or the client's signal, which its HTTP/2
  // stream holds, would keep the flight and all it reaches (body, record, promises) as long as V8
  // keeps the stream (server/stream-listeners.ts).
  void releaseOnAbort(signal, leader);
  return { leader, fetchSignal: fetch.signal };
}

/** The flight's outcome; the waiting client's interest counts until its `signal` aborts. */
export function awaitFlight(signal: AbortSignal, flight: Flight): Promise<FlightResult> {
  flight.hold();
  return releaseOnAbort(signal, flight);
}

/** Releases the client's interest in `flight` if `signal` aborts before the outcome; the outcome, once the watch has ended. */
function releaseOnAbort(signal: AbortSignal, flight: Flight): Promise<FlightResult> {
  const watcher = { handleEvent: () => flight.release() };
  watchAbort(signal, watcher);
  return flight.outcome.finally(() => unwatchAbort(signal, watcher));
}
