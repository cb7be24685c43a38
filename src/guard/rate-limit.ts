import { onceASecond } from '../timers.ts';

/**
 * Per-client rate limits as a GCRA (generic cell rate algorithm, the "leaky bucket as a meter"):
 * one number per client, its theoretical arrival time (TAT). A request conforms when it is no
 * earlier than TAT − (burst − 1) × T, where T = 1 / rate; each conforming request moves TAT on by
 * T. So `burst` requests may come at once, then one every T. Stored as one integer per client, it
 * fits a Redis key updated by one atomic script (redis-limiter.ts) as well as a Map.
 */

export interface RateSpec {
  /** Requests per second. */
  readonly rate: number;
  /** Requests allowed at once. */
  readonly burst: number;
}

export interface RateDecision {
  readonly allowed: boolean;
  /** Requests left in the burst after this one. */
  readonly remaining: number;
  /** ms until the burst is fully available again. */
  readonly resetMs: number;
  /** ms until a rejected request would conform (0 when allowed). */
  readonly retryAfterMs: number;
}

export interface RateLimiter {
  readonly spec: RateSpec;
  take(key: string): RateDecision | Promise<RateDecision>;
  close(): Promise<void>;
}

/** One GCRA step, pure: the client's stored TAT (or undefined), now → the decision and the TAT to store. */
export function gcra(spec: RateSpec, tat: number | undefined, now: number): { decision: RateDecision; tat: number | undefined } {
  const interval = 1000 / spec.rate;
  const current = Math.max(tat ?? now, now);
  const allowAt = current - (spec.burst - 1) * interval;
  if (now < allowAt) {
    return { decision: { allowed: false, remaining: 0, resetMs: Math.ceil(current - now), retryAfterMs: Math.ceil(allowAt - now) }, tat: undefined };
  }
  const next = current + interval;
  const remaining = Math.max(0, Math.floor((now + spec.burst * interval - next) / interval));
  return { decision: { allowed: true, remaining, resetMs: Math.ceil(next - now), retryAfterMs: 0 }, tat: next };
}

export interface LocalLimiterOptions {
  readonly now?: () => number;
  /** Clients tracked at most; the least recently seen go first (an idle client's TAT is in the past anyway). */
  readonly maxKeys?: number;
}

/** This process's limiter: a Map of TATs in insertion order (re-inserted on use), bounded. */
export function createLocalLimiter(spec: RateSpec, options: LocalLimiterOptions = {}): RateLimiter {
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? 100_000;
  const tats = new Map<string, number>();
  return {
    spec,
    take(key) {
      const at = now();
      const stored = tats.get(key);
      const { decision, tat } = gcra(spec, stored, at);
      if (tat !== undefined) {
        tats.delete(key);
        if (tats.size >= maxKeys) {
          // Oldest first; an entry whose TAT has passed is the same as no entry.
          for (const [oldest, value] of tats) {
            if (tats.size < maxKeys && value > at) break;
            tats.delete(oldest);
          }
        }
        tats.set(key, tat);
      }
      return decision;
    },
    close: async () => { tats.clear(); },
  };
}

/** A limiter shared beyond this process (Redis, the cluster primary) that can fall back on its own. */
export interface SharedLimiter extends RateLimiter {
  /** Decisions made locally because the shared limiter failed. */
  readonly fallbacks: number;
}

/**
 * What a shared limiter does when it cannot ask: this process's own limiter decides (so the limit
 * holds per process meanwhile), the failure is counted, and reported at most once a second.
 */
export function localFallback(spec: RateSpec, options: { onError?: (error: unknown) => void; now?: () => number }): { local: RateLimiter; failed(error: unknown): void; readonly fallbacks: number } {
  const report = onceASecond(options.onError ?? (() => {}));
  const local = createLocalLimiter(spec, { now: options.now });
  let fallbacks = 0;
  return {
    local,
    failed(error) {
      fallbacks++;
      report(error);
    },
    get fallbacks() { return fallbacks; },
  };
}
