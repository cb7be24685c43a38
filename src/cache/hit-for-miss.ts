/** How long a URI stays known-uncacheable, and how many are kept (each worker's, and the cluster primary's for the node). */
export const HIT_FOR_MISS = { ttlMs: 120_000, max: 10_000 } as const;

/**
 * Keys known to be uncacheable (Varnish's hit-for-miss): for a while, requests for them go
 * straight to the origin, each on its own, instead of queueing behind a collapsed forward whose
 * answer will not be shared. Bounded: the oldest entry goes first. Time comes from `now`.
 */
export interface HitForMiss {
  has(key: string): boolean;
  /** `reason`: why the response was not stored (policy.ts's whyNotStorable words), for explain. */
  remember(key: string, reason?: string): void;
  /** Why the key is known uncacheable, while it is. */
  reason(key: string): string | undefined;
  forget(key: string): void;
  clear(): void;
  readonly size: number;
}

export function createHitForMiss(options: { ttlMs: number; max: number; now: () => number }): HitForMiss {
  const { ttlMs, max, now } = options;
  const until = new Map<string, { expires: number; reason: string }>();
  const has = (key: string) => {
    const entry = until.get(key);
    if (entry === undefined) return false;
    if (entry.expires > now()) return true;
    until.delete(key);
    return false;
  };
  return {
    has,
    remember(key, reason = 'uncacheable') {
      until.delete(key);
      if (until.size >= max) until.delete(until.keys().next().value!);
      until.set(key, { expires: now() + ttlMs, reason });
    },
    reason: (key) => (has(key) ? until.get(key)!.reason : undefined),
    forget: (key) => { until.delete(key); },
    clear: () => until.clear(),
    get size() { return until.size; },
  };
}
