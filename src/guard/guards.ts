import type { GuardConfig } from '../config/schema.ts';
import type { Handler } from '../pipeline/compose.ts';
import { addressList, type AddressList } from '../net/cidr.ts';
import { createLocalLimiter, type RateLimiter } from './rate-limit.ts';
import { createRedisLimiter } from './redis-limiter.ts';
import { createNodeLimiter } from './node-limiter.ts';
import { sharedWorkers } from '../runtime/primary-channel.ts';
import { compileRules } from './rules.ts';
import { createGuard, type GuardParts, type GuardStats } from './stage.ts';

/**
 * Builds the guards of an app: one set of parts per guard block (a block shared by several sites
 * shares one limiter), and owns their limiters' connections.
 */
export interface Guards {
  /** `inner` behind a guard block; `id` names its rate-limit namespace (stable across nodes). */
  guard(config: GuardConfig, id: string, inner: Handler): Handler;
  readonly stats: GuardStats & { rateLimitFallbacks: number };
  close(): Promise<void>;
}

export interface GuardsOptions {
  readonly trusted: AddressList;
  /** The Redis URL rate limits share when a block does not name a store (the cache's, if it is Redis). */
  readonly defaultStore: string;
  readonly onError: (error: unknown) => void;
  readonly now?: () => number;
}

export function createGuards(options: GuardsOptions): Guards {
  const stats = { forbidden: 0, limited: 0 };
  // One set of parts (one limiter) per guard block, however many chains it guards.
  const built = new Map<GuardConfig, GuardParts>();
  const limiters: RateLimiter[] = [];
  let sharedFallbacks: () => number = () => 0;

  /** Memory: this process's counters, or with several workers the node's (the primary's); else Redis's. */
  function limiterFor(config: NonNullable<GuardConfig['rateLimit']>, id: string): RateLimiter {
    const spec = { rate: config.rate, burst: config.burst ?? Math.max(1, Math.ceil(config.rate)) };
    const store = config.store ?? options.defaultStore;
    if (store === 'memory' && sharedWorkers() === 0) return createLocalLimiter(spec, { now: options.now });
    const limiter = store === 'memory'
      ? createNodeLimiter(spec, { id, onError: options.onError, now: options.now })
      : createRedisLimiter(spec, { url: store, prefix: `outpost:rl:${id}:`, onError: options.onError, now: options.now });
    const before = sharedFallbacks;
    sharedFallbacks = () => before() + limiter.fallbacks;
    return limiter;
  }

  return {
    guard(config, id, inner) {
      let parts = built.get(config);
      if (parts === undefined) {
        const limiter = config.rateLimit === undefined ? undefined : limiterFor(config.rateLimit, id);
        if (limiter !== undefined) limiters.push(limiter);
        parts = {
          trusted: options.trusted,
          allow: config.allow === undefined ? undefined : addressList(config.allow),
          deny: config.deny.length === 0 ? undefined : addressList(config.deny),
          rules: compileRules(config.rules),
          limiter,
          stats,
        };
        built.set(config, parts);
      }
      return createGuard(parts, inner);
    },
    get stats() { return { ...stats, rateLimitFallbacks: sharedFallbacks() }; },
    close: async () => { await Promise.all(limiters.map((l) => l.close())); },
  };
}
