import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/**
 * The configuration schema: every key, its default (with the unit and the reason), and what is
 * accepted. Read once at start into a frozen object; nothing else reads config files or the env.
 */

/** A value with a unit ("16KB", "10s"), parsed to a number; the message says what was expected. */
const withUnit = (parse: (value: unknown) => number | undefined, expected: string) => (fallback: string) =>
  z.unknown().default(fallback).transform((value, ctx) => {
    const parsed = parse(value);
    if (parsed === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return parsed;
  });

const size = withUnit(parseSize, 'a size such as 16KB or 1MB');
const duration = withUnit(parseDuration, 'a duration such as 10s or 500ms');

const port = z.number({ error: (i) => `expected a port number, got ${JSON.stringify(i.input)}` })
  .int().min(0).max(65535);

/** An upstream base URL: http(s), no credentials, query or fragment; trailing slash dropped. */
function originUrl(value: unknown): string | undefined {
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

/** One URL or a list of them (balanced round-robin); each bad entry is reported with its index. */
const origins = z.unknown().transform((value, ctx) => {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) ctx.addIssue({ code: 'custom', message: 'expected at least one http(s) URL' });
  const urls: string[] = [];
  list.forEach((item, i) => {
    const url = originUrl(item);
    if (url !== undefined) urls.push(url);
    else ctx.addIssue({ code: 'custom', path: Array.isArray(value) ? [i] : [], message: `expected an http(s) URL, got ${JSON.stringify(item)}` });
  });
  return urls;
});

// A host pattern: "*", "example.com", "*.example.com" (IDN hosts in their xn-- form).
const hostPattern = z.string().trim().toLowerCase().regex(/^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/,
  { error: (i) => `expected a host name, "*.domain" or "*", got ${JSON.stringify(i.input)}` });

const staticOptions = z.strictObject({
  root: z.string().min(1),
  index: z.string().min(1).default('index.html'),
  /** Cache-Control for ordinary files; none by default, like nginx and Caddy. */
  cacheControl: z.string().nullable().default(null),
  /** Cache-Control for fingerprinted names (app.3f9a8c1b.js): they never change, so a year and immutable. */
  immutableCacheControl: z.string().default('public, max-age=31536000, immutable'),
});
const staticSpec = z.union([z.string().min(1).transform((root) => staticOptions.parse({ root })), staticOptions]);

/** Timeouts and limits for the origin side; defaults here, overridable per site and route. */
const originOptions = z.strictObject({
  /** 5 s: a healthy origin on a LAN connects in milliseconds; fail fast and answer 504. */
  connectTimeout: duration('5s'),
  /** 30 s until the response headers arrive (undici's 300 s is far too long for an edge). */
  headersTimeout: duration('30s'),
  /** 30 s of silence between body chunks. */
  bodyTimeout: duration('30s'),
  /** An upstream that refused or timed out a connection is skipped this long (nginx's fail_timeout). */
  failTimeout: duration('10s'),
  /** Keep-alive connections per upstream: bounded so a burst cannot open thousands of sockets. */
  connections: z.number().int().min(1).max(10_000).default(128),
  /** 60 s idle keep-alive towards the origin; undici lowers it when the origin's Keep-Alive hint says less. */
  keepAliveTimeout: duration('60s'),
  /** Response headers that reveal the origin's software; dropped unless listed as []. */
  hideHeaders: z.array(z.string().toLowerCase()).default(['server', 'x-powered-by']),
});
const originOverrides = originOptions.partial();

/** Per site or route: whether proxied responses are cached, and how cookies are treated. */
const cacheRouteOptions = z.strictObject({
  enabled: z.boolean().default(true),
  /**
   * false (default): a response with Set-Cookie is never stored, as nginx and Varnish do — it is
   * almost always personal. true: it is stored without its Set-Cookie, which only its first
   * requester receives.
   */
  storeSetCookie: z.boolean().default(false),
  /**
   * false (default): a response to a request with Cookie or Authorization is stored only with
   * explicit freshness (max-age, s-maxage, Expires, public), never on a heuristic from
   * Last-Modified: such pages are often personal (cache deception: `/account.php/x.css`).
   */
  heuristicWithCredentials: z.boolean().default(false),
});

const routeSchema = z.strictObject({
  path: z.string().startsWith('/', { error: (i) => `expected a path prefix starting with "/", got ${JSON.stringify(i.input)}` }),
  static: staticSpec.optional(),
  origin: origins.optional(),
  redirect: z.strictObject({
    to: z.string().min(1),
    status: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).default(301),
  }).optional(),
  proxy: originOverrides.optional(),
  cache: cacheRouteOptions.optional(),
}).superRefine((route, ctx) => {
  const kinds = [route.static, route.origin, route.redirect].filter((k) => k !== undefined).length;
  if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'expected exactly one of static, origin or redirect' });
});

const siteSchema = z.strictObject({
  hosts: z.array(hostPattern).min(1).default(['*']),
  /** Files served first; what is not found here falls through to `origin` when one is set. */
  static: staticSpec.optional(),
  origin: origins.optional(),
  proxy: originOverrides.optional(),
  cache: cacheRouteOptions.optional(),
  routes: z.array(routeSchema).default([]),
});

const certificate = z.strictObject({
  hosts: z.array(hostPattern).min(1),
  cert: z.string().min(1),
  key: z.string().min(1),
});

export const configSchema = z.strictObject({
  /**
   * Serving processes: "auto" = one per available core (like nginx's worker_processes auto), or a
   * number; 1 keeps one process without a supervising primary.
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)], { error: (i) => `expected "auto" or a number of processes from 1 to 256, got ${JSON.stringify(i.input)}` }).default('auto'),
  listen: z.strictObject({
    /** Address to bind the public listeners to; "::" accepts IPv4 and IPv6. */
    host: z.string().default('::'),
    https: port.default(8443),
    /** Plain HTTP: redirects to HTTPS (308) unless `httpMode` is `serve`. null disables it. */
    http: port.nullable().default(8080),
    httpMode: z.enum(['redirect', 'serve']).default('redirect'),
  }).prefault({}),
  tls: z.strictObject({
    /** intermediate: TLS 1.2 + 1.3 with ECDHE + AEAD only (Mozilla). modern: TLS 1.3 only. */
    profile: z.enum(['intermediate', 'modern']).default('intermediate'),
    certificates: z.array(certificate).default([]),
    /** Where the development certificate is kept when no certificate is configured. */
    devCertDir: z.string().default('.outpost'),
  }).prefault({}),
  /** Strict-Transport-Security on HTTPS responses; 0 turns it off (the default: opt in, like nginx). */
  hsts: z.strictObject({
    maxAge: duration('0s'),
    includeSubDomains: z.boolean().default(false),
    preload: z.boolean().default(false),
  }).prefault({}),
  limits: z.strictObject({
    /** 16 KB of request headers, Node's default; HTTP/2 gets the same header-list limit. */
    maxHeaderSize: size('16KB'),
    /** 10 s to send the request headers: a trickling client is cut off (nginx client_header_timeout is 60 s). */
    headersTimeout: duration('10s'),
    /** 60 s for a whole request, body included (nginx client_body_timeout is per read; this is a deadline). */
    requestTimeout: duration('60s'),
    /** 1 GB request bodies at most (413 beyond). */
    maxBodySize: size('1GB'),
    /** 75 s keep-alive between HTTP/1.1 requests, nginx's keepalive_timeout. */
    keepAliveTimeout: duration('75s'),
    /** 120 s of inactivity closes an HTTP/2 session or an idle socket. */
    idleTimeout: duration('120s'),
    /** Concurrent streams per HTTP/2 session: 128 like nginx (Node's default is practically unlimited). */
    maxConcurrentStreams: z.number().int().min(1).max(1000).default(128),
    /** Open client connections per listener; more are refused (nginx's worker_connections, per process). */
    maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
    /** 10 s for in-flight requests to finish on SIGTERM before connections are closed. */
    shutdownTimeout: duration('10s'),
  }).prefault({}),
  /** Peers whose X-Forwarded-For / Forwarded we keep and extend instead of replacing. */
  trustedProxies: z.array(z.string()).default([]),
  proxy: originOptions.prefault({}),
  /** Small static files kept in memory, re-checked with one stat() a second (nginx open_file_cache with the bytes). */
  staticCache: z.strictObject({
    /** 64 MB of file bytes; 0 turns it off (every request opens its file). */
    maxSize: size('64MB'),
    /** Files up to 256 KB are kept; larger ones stream from disk. */
    maxFileSize: size('256KB'),
  }).prefault({}),
  cache: z.strictObject({
    /** memory (per process, LRU by bytes), a redis:// URL for a tier shared by several nodes, or a sqlite:// file for a disk tier that survives restarts. */
    store: z.string().default('memory').refine((v) => v === 'memory' || /^rediss?:\/\/[^\s]+$/.test(v) || /^sqlite:\/\/[^\s?#]+$/.test(v),
      { error: (i) => `expected "memory", a redis:// URL, sqlite:///absolute/path.db or sqlite://relative/path.db, got ${JSON.stringify(i.input)}` }),
    /** 512 MB of bodies and variants in memory. */
    maxSize: size('512MB'),
    /** Larger responses stream through uncached. */
    maxObjectSize: size('16MB'),
    /**
     * Serve stale for this long when the origin is down or failing (on top of stale-if-error):
     * 10 s like Varnish's default grace. RFC 9111 §4.2.4 allows stale when disconnected; never
     * where must-revalidate, proxy-revalidate, s-maxage or no-cache forbid it.
     */
    grace: duration('10s'),
    /**
     * RFC 9213 targeted fields this cache obeys instead of Cache-Control and Expires, first present
     * wins: the origin can tell its CDN one lifetime and browsers another.
     */
    targeted: z.array(z.string().trim().toLowerCase().regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, { error: (i) => `expected a header field name, got ${JSON.stringify(i.input)}` }))
      .default(['outpost-cache-control', 'cdn-cache-control', 'surrogate-control']),
    /**
     * Response fields for this cache only, never sent to clients: our own targeted field, the
     * surrogate directives and the purge tags. CDN-Cache-Control is passed on (RFC 9213 §3: other
     * CDNs in a chain act on it too); list it here when Outpost is the last CDN before browsers.
     */
    hideHeaders: z.array(z.string().trim().toLowerCase()).default(['outpost-cache-control', 'surrogate-control', 'cache-tag', 'surrogate-key']),
  }).prefault({}),
  compression: z.strictObject({
    /** Our preference when the client's q-values tie. */
    encodings: z.array(z.enum(['br', 'zstd', 'gzip'])).min(1).default(['br', 'zstd', 'gzip']),
    /** Bodies smaller than this are not worth a coding (headers and CPU cost more than they save). */
    minSize: size('1KB'),
    /** An origin body may decode to this much, then it is cut off: a 1 MB gzip of zeros is 1 GB (a decompression bomb). */
    maxDecodedSize: size('1GB').refine((v) => v > 0, { error: 'expected a size greater than 0' }),
    /** Encoded static files kept in memory (LRU by bytes) when they have no precompressed sibling; 0 turns it off. */
    staticMemory: size('32MB'),
  }).prefault({}),
  admin: z.strictObject({
    /** The admin API (purge, stats) listens here; keep it on loopback. null turns it off. */
    listen: z.string().regex(/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i, { error: (i) => `expected host:port, got ${JSON.stringify(i.input)}` })
      .nullable().default('127.0.0.1:9090'),
    /** Bearer token every admin request must carry; without one the admin API does not start. */
    token: z.string().min(16, { error: 'expected a token of at least 16 characters' }).nullable().default(null),
  }).prefault({}),
  log: z.strictObject({
    /** Access log: "stdout", "off", or a file path (reopened on SIGUSR1 for logrotate). */
    access: z.string().min(1).default('stdout'),
    /** text: combined-log style plus duration and cache result; json: one object per response. */
    format: z.enum(['text', 'json']).default('text'),
  }).prefault({}),
  sites: z.array(siteSchema).prefault([{ hosts: ['*'], static: 'public' }]),
});

export type Config = z.output<typeof configSchema>;
export type SiteConfig = Config['sites'][number];
export type RouteConfig = SiteConfig['routes'][number];
export type StaticOptions = z.output<typeof staticOptions>;
export type OriginOptions = z.output<typeof originOptions>;
