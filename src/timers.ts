/**
 * Time for code whose timing is the point (health-check schedules, ClientHello deadlines): the
 * clock and one-shot timers, injected so tests move time by hand instead of sleeping.
 */
export interface Timers {
  /** Milliseconds, only compared with each other. */
  now(): number;
  /** Runs `fn` once after `ms`; the returned function cancels it. Never keeps the process alive. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const realTimers: Timers = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** A check run every `period` ms (`arm` starts it when it is not running), for as long as it answers true. */
export interface Recurring {
  arm(): void;
  stop(): void;
}

/**
 * `check(now)` every `period` ms from the first `arm()`, again for as long as it answers true (it
 * still has something to watch), after which the next `arm()` starts it again: a sweep over a set
 * that costs nothing while the set is empty.
 */
export function recurring(timers: Timers, period: number, check: (now: number) => boolean): Recurring {
  let cancel: (() => void) | null = null;
  const run = () => {
    cancel = null;
    if (check(timers.now())) cancel = timers.setTimeout(run, period);
  };
  return {
    arm() { cancel ??= timers.setTimeout(run, period); },
    stop() {
      cancel?.();
      cancel = null;
    },
  };
}

/**
 * `report` called at most once a second (by the wall clock): a failure that repeats per request
 * (a store down, a primary not answering) is one log line a second, not one per request.
 */
export function onceASecond<A extends unknown[]>(report: (...args: A) => void): (...args: A) => void {
  let last = 0;
  return (...args) => {
    const now = Date.now();
    if (now - last <= 1000) return;
    last = now;
    report(...args);
  };
}
