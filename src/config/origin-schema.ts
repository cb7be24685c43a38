import { z } from 'zod';
import { duration, issueMessage, timeout } from './fields.ts';

/**
 * `origin:` of a site or route. The shorthand is one URL or a list of them (or of upstream
 * objects); the long form names the pool's upstreams, how requests are balanced over them and how
 * their health is checked:
 *
 *   origin:
 *     upstreams: [http://10.0.0.1:3000, { url: "https://10.0.0.2:3443", weight: 2, http2: true, tls: { ca: … } }]
 *     balance: round-robin          # round-robin (weighted) | least-connections | hash (consistent, by cache key)
 *     healthCheck: { path: /health, interval: 5s, timeout: 2s, fails: 3, passes: 2, expect: 200-399 }
 *
 * Both forms become one OriginPoolConfig.
 */

/** An upstream base URL: http(s), no credentials, query or fragment; trailing slash dropped. */
export function originUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    const url = new URL(value);
    const ok = (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' &&
      url.search === '' && url.hash === '';
    return ok ? url.origin + url.pathname.replace(/\/$/, '') : undefined;
  } catch {
    return undefined;
  }
}

const hostName = z.string().trim().toLowerCase().regex(/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/,
  { error: (i) => `expected a host name, got ${JSON.stringify(i.input)}` });

/** TLS towards one upstream (files are read at start; `outpost check` reads and matches them). */
const upstreamTls = z.strictObject({
  /** PEM file with the CA certificate(s) the origin's certificate must chain to; default: Node's bundled roots. */
  ca: z.string().min(1).nullable().default(null),
  /** SNI and the name the certificate must carry; default: the URL's host name (none for an IP address). */
  servername: hostName.nullable().default(null),
  /** Our client certificate and its key (PEM files) for origins that require mutual TLS. */
  cert: z.string().min(1).nullable().default(null),
  key: z.string().min(1).nullable().default(null),
  /** On by default; false accepts any certificate (a warning is printed at start). */
  verify: z.boolean().default(true),
}).superRefine((tls, ctx) => {
  if ((tls.cert === null) !== (tls.key === null)) {
    ctx.addIssue({ code: 'custom', path: [tls.cert === null ? 'cert' : 'key'], message: 'expected both cert and key (mutual TLS), or neither' });
  }
});

/** HTTP/2 towards one upstream, with its own limits (one h2 connection carries many requests). */
const http2Limits = z.strictObject({
  /** 2 connections per upstream: each multiplexes up to maxConcurrentStreams requests. */
  connections: z.number().int().min(1).max(64).default(2),
  /** 100 streams per connection (undici's default, and what most servers advertise); the origin's SETTINGS may lower it. */
  maxConcurrentStreams: z.number().int().min(1).max(1000).default(100),
});
const http2Spec = z.union([z.boolean(), http2Limits]).default(false)
  .transform((value) => (value === false ? null : value === true ? http2Limits.parse({}) : value));

const upstreamObject = z.strictObject({
  url: z.unknown().transform((value, ctx) => {
    const url = originUrl(value);
    if (url === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected an http(s) URL, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return url;
  }),
  /** Share of requests under round-robin and hash, and the divisor of in-flight requests under least-connections. */
  weight: z.number().int().min(1).max(1000).default(1),
  /** Used only when no primary upstream is healthy. */
  backup: z.boolean().default(false),
  http2: http2Spec,
  tls: upstreamTls.nullable().default(null),
}).superRefine((upstream, ctx) => {
  if (upstream.tls !== null && upstream.url.startsWith('http:')) {
    ctx.addIssue({ code: 'custom', path: ['tls'], message: 'only for an https:// upstream' });
  }
});

/** Statuses that count as healthy: `200-399`, `200,204`, `[200, "300-399"]`. */
const statusRanges = z.unknown().default('200-399').transform((value, ctx) => {
  const parts = (Array.isArray(value) ? value : [value]).flatMap((p) => (typeof p === 'string' ? p.split(',') : [p]));
  const ranges: Array<readonly [number, number]> = [];
  for (const part of parts) {
    const match = /^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$/.exec(String(part));
    const low = match ? Number(match[1]) : NaN;
    const high = match?.[2] !== undefined ? Number(match[2]) : low;
    if (!match || (typeof part !== 'string' && typeof part !== 'number') || high < low) {
      ctx.addIssue({ code: 'custom', message: `expected statuses such as 200-399 or "200,204", got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    ranges.push([low, high]);
  }
  if (ranges.length === 0) ctx.addIssue({ code: 'custom', message: 'expected at least one status' });
  return ranges;
});

/** Active health checks: each upstream probed on its own jittered timer, one probe in flight at a time. */
const healthCheck = z.strictObject({
  /** What is requested (GET); `/` like nginx and HAProxy unless the origin has a health endpoint. */
  path: z.string().regex(/^\/[\x21-\x7e]*$/, { error: (i) => `expected an absolute path such as /health, got ${JSON.stringify(i.input)}` }).default('/'),
  /** Host header of the probe; default: the upstream's host and port. */
  host: z.string().regex(/^[a-z0-9_.:[\]-]+$/i, { error: (i) => `expected a host name, got ${JSON.stringify(i.input)}` }).nullable().default(null),
  /** 5 s between probes of one upstream (±10 % jitter, so a fleet of edges does not probe in step). */
  interval: duration('5s').refine((ms) => ms >= 100, { error: 'expected at least 100ms' }),
  /** 2 s for the probe's response headers; longer counts as a failure. */
  timeout: timeout('2s'),
  /** 3 consecutive failed probes take an upstream out of rotation (nginx and HAProxy's fall). */
  fails: z.number().int().min(1).max(100).default(3),
  /** 2 consecutive good probes bring it back (HAProxy's rise). */
  passes: z.number().int().min(1).max(100).default(2),
  expect: statusRanges,
});

const poolObject = z.strictObject({
  upstreams: z.array(z.unknown()).min(1, { error: 'expected at least one upstream' }),
  balance: z.enum(['round-robin', 'least-connections', 'hash']).default('round-robin'),
  healthCheck: healthCheck.nullable().default(null),
});

export type UpstreamConfig = z.output<typeof upstreamObject>;
export type UpstreamTlsConfig = z.output<typeof upstreamTls>;
export type HealthCheckConfig = z.output<typeof healthCheck>;
export type BalanceKind = z.output<typeof poolObject>['balance'];
export interface OriginPoolConfig {
  readonly upstreams: readonly UpstreamConfig[];
  readonly balance: BalanceKind;
  readonly healthCheck: HealthCheckConfig | null;
}

type IssueSink = { addIssue(issue: { code: 'custom'; path?: PropertyKey[]; message: string }): void };

function report(issues: readonly z.core.$ZodIssue[], ctx: IssueSink, prefix: PropertyKey[]): void {
  for (const issue of issues) ctx.addIssue({ code: 'custom', path: [...prefix, ...issue.path], message: issueMessage(issue) });
}

/** One upstream: a URL (the message names the bad value where the entry is) or an object. */
function upstream(item: unknown, ctx: IssueSink, path: PropertyKey[]): UpstreamConfig | undefined {
  if (typeof item === 'object' && item !== null && !Array.isArray(item)) {
    const parsed = upstreamObject.safeParse(item);
    if (parsed.success) return parsed.data;
    report(parsed.error.issues, ctx, path);
    return undefined;
  }
  const url = originUrl(item);
  if (url !== undefined) return upstreamObject.parse({ url });
  ctx.addIssue({ code: 'custom', path, message: `expected an http(s) URL, got ${JSON.stringify(item)}` });
  return undefined;
}

/** `origin:` in either form, as one pool. */
export const originSpec = z.unknown().transform((value, ctx): OriginPoolConfig => {
  const long = typeof value === 'object' && value !== null && !Array.isArray(value);
  let pool: z.output<typeof poolObject>;
  if (long) {
    const parsed = poolObject.safeParse(value);
    if (!parsed.success) {
      report(parsed.error.issues, ctx, []);
      // Every problem at once: the upstreams are checked too.
      const list = (value as { upstreams?: unknown }).upstreams;
      if (Array.isArray(list)) list.forEach((item, i) => upstream(item, ctx, ['upstreams', i]));
      return z.NEVER;
    }
    pool = parsed.data;
  } else {
    const list = Array.isArray(value) ? value : [value];
    if (list.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'expected at least one http(s) URL' });
      return z.NEVER;
    }
    pool = { upstreams: list, balance: 'round-robin', healthCheck: null };
  }
  const at = (i: number): PropertyKey[] => (long ? ['upstreams', i] : Array.isArray(value) ? [i] : []);
  const upstreams = pool.upstreams.map((item, i) => upstream(item, ctx, at(i)));
  if (upstreams.some((u) => u === undefined)) return z.NEVER;
  if (upstreams.every((u) => u!.backup)) {
    ctx.addIssue({ code: 'custom', path: long ? ['upstreams'] : [], message: 'expected at least one upstream that is not a backup' });
    return z.NEVER;
  }
  return { upstreams: upstreams as UpstreamConfig[], balance: pool.balance, healthCheck: pool.healthCheck };
});
