import { z } from 'zod';
import { cidrProblem } from '../net/cidr.ts';

/** An IP address or CIDR range; the message names the entry. */
export const cidr = z.string().trim().superRefine((value, ctx) => {
  const problem = cidrProblem(value);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

/** `100/s`, `6000/m`, `50000/h`: requests per second. */
const rate = z.unknown().transform((value, ctx) => {
  const m = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/.exec(value) : null;
  const perSecond = m === null ? NaN : Number(m[1]) / { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
    ctx.addIssue({ code: 'custom', message: `expected a rate such as 100/s, 6000/m or 50000/h, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return perSecond;
});

const regex = z.string().superRefine((value, ctx) => {
  try { new RegExp(value); } catch (error) { ctx.addIssue({ code: 'custom', message: `not a regular expression: ${(error as Error).message}` }); }
});

/**
 * The guard: address lists, a rate limit per client and a small rule list, checked before static
 * files, the cache and the origin (src/guard/). Top level for every site, or per site or route
 * (the most specific block applies, whole).
 */
export const guardSchema = z.strictObject({
  /** When present, only these addresses or ranges are served; everyone else gets 403. */
  allow: z.array(cidr).optional(),
  /** Addresses or ranges that get 403. */
  deny: z.array(cidr).default([]),
  /** Per client (IPv4 address, IPv6 /64): `rate` sustained, `burst` at once; 429 with Retry-After beyond. */
  rateLimit: z.strictObject({
    rate,
    /** Requests at once; default: one second's worth of the rate. */
    burst: z.number().int().min(1).max(1_000_000).optional(),
    /**
     * Where the counters live: `memory` (this process), or a redis:// URL shared by every node
     * (one atomic round trip per request). Default: the cache's Redis when cache.store is one.
     */
    store: z.string().refine((v) => v === 'memory' || /^rediss?:\/\/[^\s]+$/.test(v),
      { error: (i) => `expected "memory" or a redis:// URL, got ${JSON.stringify(i.input)}` }).optional(),
  }).optional(),
  /**
   * Ordered; the first match decides (deny → 403, allow → stop here). The default denies version
   * control and environment files (`/.git/config`, `/.env`) that should never be served from an
   * origin's document root, at any depth (`/app/.git/HEAD`) and in any case (`/.GIT/config`: an
   * origin on a case-insensitive file system serves the same file); /.well-known/ is untouched.
   */
  rules: z.array(z.strictObject({
    path: regex.optional(),
    method: z.array(z.string().toUpperCase()).min(1).optional(),
    action: z.enum(['deny', 'allow']),
  }).refine((r) => r.path !== undefined || r.method !== undefined, { error: 'a rule needs a path or a method' }))
    .default([{ path: '(^|/)\\.(?i:git|svn|hg|bzr|env|htaccess|htpasswd|ds_store)(/|$)', action: 'deny' }]),
});
