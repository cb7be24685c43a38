import type { Timers } from '../timers.ts';

/** A request waiting for a connection: told when its time is up; its links are the deadline's. */
export interface Queued {
  expireQueued(): void;
  /** When it joined, and its neighbours in the deadline's list (null at the ends, and once it left). */
  queuedSince: number;
  queuedBefore: Queued | null;
  queuedAfter: Queued | null;
}

/**
 * How long a request may wait for a connection, and the requests waiting under it: undici's queue
 * runs none of its timeouts (they start when a request is sent), so unless a request waiting there
 * has been sent `ms` after it joined, it is told to expire (a 504). Without it, clients that stop
 * reading large pass-through responses could hold every connection (each response paced by its
 * client) and every other request to that upstream waited, unanswered, for as long as they held on.
 * Every request waits as long, so they expire in the order they joined: a list, oldest first,
 * linked through the requests themselves, and one timer armed for the oldest, instead of a timer
 * per request. (With 1,000 requests in flight and 128 connections most requests wait, and a timer
 * each, a Timeout and two closures, was ~200 B per request that outlived V8's young generation.)
 */
export class QueueDeadline {
  readonly ms: number;
  readonly #timers: Timers;
  /** The oldest waiting and the newest. */
  #first: Queued | null = null;
  #last: Queued | null = null;
  #size = 0;
  #cancel: (() => void) | null = null;

  constructor(ms: number, timers: Timers) {
    this.ms = ms;
    this.#timers = timers;
  }

  /** Starts the wait of `queued`. */
  join(queued: Queued): void {
    queued.queuedSince = this.#timers.now();
    queued.queuedBefore = this.#last;
    queued.queuedAfter = null;
    if (this.#last === null) this.#first = queued;
    else this.#last.queuedAfter = queued;
    this.#last = queued;
    this.#size++;
    if (this.#cancel === null) this.#arm(this.ms); // else armed for an older one
  }

  /** `queued`, which joined, was sent (or failed): no longer waiting. */
  leave(queued: Queued): void {
    const before = queued.queuedBefore;
    const after = queued.queuedAfter;
    if (before === null && this.#first !== queued) return; // not waiting (left, or expired)
    if (before === null) this.#first = after;
    else before.queuedAfter = after;
    if (after === null) this.#last = before;
    else after.queuedBefore = before;
    queued.queuedBefore = queued.queuedAfter = null;
    if (--this.#size === 0) {
      this.#cancel?.();
      this.#cancel = null;
    }
  }

  /** Requests waiting now. */
  get size(): number {
    return this.#size;
  }

  readonly #expire = (): void => {
    this.#cancel = null;
    const now = this.#timers.now();
    let oldest = this.#first;
    while (oldest !== null && oldest.queuedSince + this.ms <= now) {
      this.leave(oldest);
      oldest.expireQueued();
      oldest = this.#first;
    }
    // Armed for the oldest still waiting (replacing any a join armed meanwhile, which may be later).
    if (oldest !== null) this.#arm(oldest.queuedSince + this.ms - now);
  };

  #arm(ms: number): void {
    this.#cancel?.();
    this.#cancel = this.#timers.setTimeout(this.#expire, ms);
  }
}
