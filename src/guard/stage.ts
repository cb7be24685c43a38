import type { Handler } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { textReply } from '../pipeline/reply.ts';
import type { AddressList } from '../net/cidr.ts';
import { clientAddress } from './client.ts';
import { type RateDecision, type RateLimiter } from './rate-limit.ts';
import { clientKey } from '../net/client-key.ts';
import type { CompiledRule } from './rules.ts';

/**
 * The guard: first in a site's or route's chain, before static files and the cache, so what it
 * refuses never reaches the origin, a file or the cache. In order:
 *   1. the client's address on the deny list, or not on the allow list (when there is one) → 403
 *   2. the first matching rule that denies → 403
 *   3. over its rate → 429 with Retry-After
 * Its answers are short, `no-store`, and carry RateLimit headers where a limit applies.
 */

export interface GuardParts {
  readonly trusted: AddressList;
  readonly allow?: AddressList;
  readonly deny?: AddressList;
  readonly rules: readonly CompiledRule[];
  readonly limiter?: RateLimiter;
  /** Counters for /stats. */
  readonly stats: GuardStats;
}

export interface GuardStats {
  forbidden: number;
  limited: number;
}

function notReusable(reply: Reply): Reply {
  reply.reuse = undefined;
  return reply;
}

const forbidden = (): Reply => textReply(403, 'Forbidden', { 'cache-control': 'no-store' });

/**
 * The guard in front of `inner`. Without a rate limit it is a plain check before the call (no
 * stage layer, no promise of its own on the hit path); with one, it awaits the limiter and adds
 * the RateLimit fields to the answer.
 */
export function createGuard(parts: GuardParts, inner: Handler): Handler {
  const { trusted, allow, deny, rules, limiter, stats } = parts;

  /** 403 for a refused address or a denying rule, else null. */
  function refused(ctx: Context): Reply | null {
    const client = clientAddress(ctx, trusted);
    if ((deny !== undefined && deny.has(client)) || (allow !== undefined && !allow.has(client))) {
      stats.forbidden++;
      return forbidden();
    }
    for (const rule of rules) {
      if (!rule.matches(ctx)) continue;
      if (rule.action === 'deny') {
        stats.forbidden++;
        return forbidden();
      }
      break;
    }
    return null;
  }

  // An answer that passed an address check or a rate limit is this client's: never reused for
  // another (Reuse); rules read only the method and path, which a reused reply's key includes.
  if (limiter === undefined && allow === undefined && deny === undefined) {
    return (ctx) => {
      const refusal = refused(ctx);
      return refusal !== null ? Promise.resolve(refusal) : inner(ctx);
    };
  }
  if (limiter === undefined) {
    return async (ctx) => refused(ctx) ?? notReusable(await inner(ctx));
  }
  const policy = rateLimitPolicy(limiter);
  return async (ctx) => {
    const refusal = refused(ctx);
    if (refusal !== null) return refusal;
    const decision = await limiter.take(clientKey(clientAddress(ctx, trusted)));
    if (!decision.allowed) {
      stats.limited++;
      // RFC 6585 §4; Retry-After in whole seconds (RFC 9110 §10.2.3), never 0.
      const retryAfter = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
      return textReply(429, 'Too Many Requests', { 'cache-control': 'no-store', 'retry-after': retryAfter, ...rateLimitHeaders(policy, decision) });
    }
    const reply = notReusable(await inner(ctx));
    Object.assign(reply.headers, rateLimitHeaders(policy, decision));
    return reply;
  };
}

/**
 * IETF httpapi RateLimit fields (draft-ietf-httpapi-ratelimit-headers): the policy as quota `q`
 * over window `w` seconds, and this client's remaining quota `r` with `t` seconds until it is full.
 */
function rateLimitPolicy(limiter: RateLimiter): string {
  const window = Math.max(1, Math.round(limiter.spec.burst / limiter.spec.rate));
  return `"default";q=${limiter.spec.burst};w=${window}`;
}

function rateLimitHeaders(policy: string, decision: RateDecision): Record<string, string> {
  return { 'ratelimit-policy': policy, ratelimit: `"default";r=${decision.remaining};t=${Math.ceil(decision.resetMs / 1000)}` };
}
