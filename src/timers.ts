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
