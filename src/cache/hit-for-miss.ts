/**
 * Keys known to be uncacheable (Varnish's hit-for-miss): for a while, requests for them go
 * straight to the origin, each on its own, instead of queueing behind a collapsed forward whose
 * answer will not be shared. Bounded: the oldest entry goes first. Time comes from `now`.
 */
export interface HitForMiss {
  has(key: string): boolean;
  remember(key: string): void;
  forget(key: string): void;
  clear(): void;
  readonly size: number;
}

export function createHitForMiss(options: { ttlMs: number; max: number; now: () => number }): HitForMiss {
  const { ttlMs, max, now } = options;
  const until = new Map<string, number>();
  return {
    has(key) {
      const expires = until.get(key);
      if (expires === undefined) return false;
      if (expires > now()) return true;
      until.delete(key);
      return false;
    },
    remember(key) {
      until.delete(key);
      if (until.size >= max) until.delete(until.keys().next().value!);
      until.set(key, now() + ttlMs);
    },
    forget: (key) => { until.delete(key); },
    clear: () => until.clear(),
    get size() { return until.size; },
  };
}
