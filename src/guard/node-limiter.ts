import { createLocalLimiter, localFallback, type RateDecision, type RateLimiter, type RateSpec, type SharedLimiter } from './rate-limit.ts';
import { primaryChannel, type Service, type WorkerChannel } from '../runtime/primary-channel.ts';

/**
 * Rate limits for the node, not per worker. With `workers: N` and the memory store the cluster
 * primary keeps the limits' counters and each worker asks it (runtime/primary-channel.ts), as
 * nginx's limit_req counts in one shared zone for all its workers: a client is held to `rate`
 * however its connections are spread, where a counter per worker let a client with several
 * connections through at up to N times the rate. The primary not answering within 250 ms: this
 * worker decides alone (counted as a fallback and reported, as with Redis).
 */

const SERVICE = 'limits';

/** The primary's side: a local limiter per limit (its guard block's id and spec). */
export function createNodeLimits(options: { now?: () => number } = {}): Service & { close(): Promise<void> } {
  const limiters = new Map<string, RateLimiter>();
  return {
    handle(_from, op, args) {
      if (op !== 'take') throw new Error(`rate limits: unknown operation ${op}`);
      const [id, rate, burst, key] = args;
      if (typeof id !== 'string' || typeof key !== 'string' || !(Number(rate) > 0) || !(Number(burst) >= 1)) throw new Error('rate limits: a malformed request');
      const name = `${id} ${rate} ${burst}`;
      let limiter = limiters.get(name);
      if (limiter === undefined) limiters.set(name, limiter = createLocalLimiter({ rate: Number(rate), burst: Number(burst) }, { now: options.now }));
      return limiter.take(key);
    },
    async close() {
      await Promise.all([...limiters.values()].map((limiter) => limiter.close()));
      limiters.clear();
    },
  };
}

export interface NodeLimiterOptions {
  /** The limit's namespace (its guard block), as the Redis limiter's prefix. */
  readonly id: string;
  readonly channel?: WorkerChannel;
  /** A slower answer counts as a failure (the request goes on with this worker's own limiter). */
  readonly timeoutMs?: number;
  readonly onError?: (error: unknown) => void;
  readonly now?: () => number;
}

/** A worker's limiter that asks the primary. */
export function createNodeLimiter(spec: RateSpec, options: NodeLimiterOptions): SharedLimiter {
  const channel = options.channel ?? primaryChannel();
  const timeoutMs = options.timeoutMs ?? 250;
  const fallback = localFallback(spec, options);
  return {
    spec,
    get fallbacks() { return fallback.fallbacks; },
    async take(key) {
      try {
        return await channel.callWithin<RateDecision>(timeoutMs, SERVICE, 'take', options.id, spec.rate, spec.burst, key);
      } catch (error) {
        fallback.failed(error);
        return fallback.local.take(key);
      }
    },
    close: () => fallback.local.close(),
  };
}
