import type { Timers } from '../../src/timers.ts';

/** Timers that fire only when the test advances them, in order of their due time. */
export interface ManualTimers extends Timers {
  /** Moves the clock forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void;
  /** Timers waiting to fire. */
  readonly pending: number;
}

export function manualTimers(): ManualTimers {
  let now = 0;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return () => { timers.delete(id); };
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const entry of timers) if (entry[1].at <= until && (!next || entry[1].at < next[1].at)) next = entry;
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = until;
    },
    get pending() { return timers.size; },
  };
}
