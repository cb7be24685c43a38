import { z } from 'zod';
import { byteRate, duration, hostPattern, issueMessage, port, size, timeout } from './fields.ts';
import { originSpec } from './origin-schema.ts';
import { passthroughRoute } from './passthrough-schema.ts';
import { cidr, guardSchema } from './guard-schema.ts';
import { FIELD_NAME } from '../http/field-syntax.ts';
import { parseDuration, parseSize } from './units.ts';

/** A header field name, lower-cased. */
const fieldName = z.string().trim().toLowerCase().regex(FIELD_NAME, { error: (i) => `expected a header field name, got ${JSON.stringify(i.input)}` });

/**
 * The configuration schema: every key, its default (with the unit and the reason), and what is
 * accepted. Read once at start into a frozen object; nothing else reads config files or the env.
 */

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
  connectTimeout: timeout('5s'),
  /** 30 s until the response headers arrive (undici's 300 s is far too long for an edge). */
  headersTimeout: timeout('30s'),
  /** 30 s of silence between body chunks. */
  bodyTimeout: duration('30s'),
  /** An upstream that refused or timed out a connection is skipped this long (nginx's fail_timeout). */
  failTimeout: duration('10s'),
  /** Keep-alive connections per upstream: bounded so a burst cannot open thousands of sockets. */
  connections: z.number().int().min(1).max(10_000).default(128),
  /**
   * A streamed response its client takes more slowly than the origin sends it goes on into a
   * temporary file, up to this size, so the origin's connection is let go instead of being held at
   * the client's pace (nginx's proxy_max_temp_file_size, 1 GB); 0: the client paces the origin.
   */
  maxTempFileSize: size('1GB'),
  /** Where those files go (each is unlinked as soon as it is open): the system's temporary directory unless set. */
  tempPath: z.string().min(1).nullable().default(null),
  /** 60 s idle keep-alive towards the origin; undici lowers it when the origin's Keep-Alive hint says less. */
  keepAliveTimeout: duration('60s'),
  /** Response headers that reveal the origin's software; dropped unless listed as []. */
  hideHeaders: z.array(z.string().toLowerCase()).default(['server', 'x-powered-by']),
  /**
   * Request fields towards the origin: `set` adds or replaces, `remove` drops. On routes that
   * cache, fields frameworks read as URL/host/scheme/method overrides (X-Original-URL,
   * X-Forwarded-Prefix, X-HTTP-Method-Override, ...: src/origin/hygiene.ts) are dropped too, since
   * they are not in the cache key (cache poisoning); `keep` lets named ones through.
   */
  requestHeaders: z.strictObject({
    set: z.record(fieldName,
      z.string().regex(/^[^\r\n\0]*$/, { error: 'a header value cannot hold CR, LF or NUL' })).default({}),
    remove: z.array(z.string().trim().toLowerCase()).default([]),
    keep: z.array(z.string().trim().toLowerCase()).default([]),
  }).prefault({}),
  /**
   * Further attempts on other upstreams: 2, so a pool of three can lose two. Idempotent requests
   * retry connect failures, resets before any response byte and the `retryOn` statuses; any other
   * request only when it provably never reached an upstream (connection refused).
   */
  retries: z.number().int().min(0).max(10).default(2),
  /** Origin statuses an idempotent request is retried on, on another upstream (nginx's proxy_next_upstream http_502 …). */
  retryOn: z.array(z.number().int().min(500).max(599)).default([502, 503, 504]),
  /** No new attempt starts this long after the first began (nginx's proxy_next_upstream_timeout): a retry must not double a long wait. */
  retryDeadline: duration('10s'),
});
/**
 * Per site or route: only the keys given. (zod 4 fills defaults in even inside `.partial()`, so a
 * route that set one timeout silently reset every other origin option to its default.)
 */
const originOverrides = z.unknown().transform((value, ctx): Partial<z.output<typeof originOptions>> => {
  const parsed = originOptions.partial().safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issueMessage(issue) });
    return z.NEVER;
  }
  const given = new Set(Object.keys(value as object));
  return Object.fromEntries(Object.entries(parsed.data).filter(([key]) => given.has(key)));
});

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
  origin: originSpec.optional(),
  redirect: z.strictObject({
    to: z.string().min(1),
    status: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).default(301),
  }).optional(),
  proxy: originOverrides.optional(),
  cache: cacheRouteOptions.optional(),
  guard: guardSchema.optional(),
}).superRefine((route, ctx) => {
  const kinds = [route.static, route.origin, route.redirect].filter((k) => k !== undefined).length;
  if (kinds !== 1) ctx.addIssue({ code: 'custom', message: 'expected exactly one of static, origin or redirect' });
});

const siteSchema = z.strictObject({
  hosts: z.array(hostPattern).min(1).default(['*']),
  /** Files served first; what is not found here falls through to `origin` when one is set. */
  static: staticSpec.optional(),
  origin: originSpec.optional(),
  proxy: originOverrides.optional(),
  cache: cacheRouteOptions.optional(),
  guard: guardSchema.optional(),
  routes: z.array(routeSchema).default([]),
}).superRefine((site, ctx) => {
  // Routes match by longest prefix: a second route with the same path would never be used.
  const seen = new Map<string, number>();
  site.routes.forEach((route, i) => {
    const first = seen.get(route.path);
    if (first === undefined) seen.set(route.path, i);
    else ctx.addIssue({ code: 'custom', path: ['routes', i, 'path'], message: `${JSON.stringify(route.path)} is already routes[${first}]'s: this route would never be used` });
  });
});

/** Sites match by host: a name a second site lists too would never reach it (nginx warns "conflicting server name"). */
const sitesSchema = z.array(siteSchema).superRefine((sites, ctx) => {
  const seen = new Map<string, string>();
  sites.forEach((site, i) => site.hosts.forEach((host, j) => {
    const first = seen.get(host);
    if (first === undefined) seen.set(host, `sites[${i}].hosts[${j}]`);
    else ctx.addIssue({ code: 'custom', path: [i, 'hosts', j], message: `${JSON.stringify(host)} is already ${first}: this site would never get its requests` });
  }));
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
    /**
     * PROXY protocol v1/v2 (behind an L4 balancer): connections from `trustedProxies` must begin with
     * a header naming the real client, which logs, X-Forwarded-For and the guard then see. Off by default.
     */
    proxyProtocol: z.boolean().default(false),
  }).prefault({}),
  tls: z.strictObject({
    /** intermediate: TLS 1.2 + 1.3 with ECDHE + AEAD only (Mozilla). modern: TLS 1.3 only. */
    profile: z.enum(['intermediate', 'modern']).default('intermediate'),
    certificates: z.array(certificate).default([]),
    /** Where the development certificate is kept when no certificate is configured. */
    devCertDir: z.string().default('.outpost'),
    /** Hosts passed through by SNI to their own backend, not terminated here. */
    passthrough: z.array(passthroughRoute).default([]),
  }).prefault({}),
  /** Strict-Transport-Security on HTTPS responses; 0 turns it off (the default: opt in, like nginx). */
  hsts: z.strictObject({
    maxAge: duration('0s'),
    includeSubDomains: z.boolean().default(false),
    preload: z.boolean().default(false),
  }).prefault({}),
  limits: z.strictObject({
    /** 16 KB of request headers, Node's default; HTTP/2 gets the same header-list limit. */
    maxHeaderSize: size('16KB').refine((bytes) => bytes >= 1024, { error: 'expected at least 1KB' }),
    /** 10 s to send the request headers: a trickling client is cut off (nginx client_header_timeout is 60 s). */
    headersTimeout: timeout('10s'),
    /** 60 s for a whole request, body included (nginx client_body_timeout is per read; this is a deadline). */
    requestTimeout: timeout('60s'),
    /** 1 GB request bodies at most (413 beyond). */
    maxBodySize: size('1GB'),
    /** 75 s keep-alive between HTTP/1.1 requests, nginx's keepalive_timeout. */
    keepAliveTimeout: timeout('75s'),
    /** 120 s without a byte closes an HTTP/2 session or an HTTPS connection (src/server/idle-watch.ts: within 1.25x). */
    idleTimeout: timeout('120s'),
    /**
     * 60 s without a byte of a streamed response body taken by the client cuts that response off
     * (nginx's send_timeout): the origin response it paces, and the origin connection it holds, are
     * let go (checked as idleTimeout is: within 1.25x).
     */
    sendTimeout: timeout('60s'),
    /**
     * Disk space this process's proxy temp files may take together (proxy.maxTempFileSize is per
     * response): past it, clients that read slowly pace their origins again, so clients that read
     * nothing cannot fill the disk. 0: no temp files.
     */
    tempFileSpace: size('4GB'),
    /** Concurrent streams per HTTP/2 session: 128 like nginx (Node's default is practically unlimited). */
    maxConcurrentStreams: z.number().int().min(1).max(1000).default(128),
    /** Open client connections per listener; more are refused (nginx's worker_connections, per process). */
    maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
    /** 10 s for in-flight requests to finish on SIGTERM before connections are closed. */
    shutdownTimeout: duration('10s'),
    /**
     * Open connections from one client address, on the HTTPS and plain-HTTP listeners together;
     * more are closed before their TLS handshake (nginx's limit_conn, which has no default). 256:
     * a browser opens one HTTP/2 connection per host, or six over HTTP/1.1, so 256 leaves room for
     * 40 busy HTTP/1.1 users behind one NAT address, while one client cannot hold more than 2.5 %
     * of `maxConnections`. Peers in `trustedProxies` (a load balancer speaks for many) are exempt.
     */
    connectionsPerClient: z.number().int().min(1).max(1_000_000).default(256),
    /**
     * 500 B/s: after `bodyGrace`, a request body must have arrived at this average rate, or 408
     * (Apache mod_reqtimeout's MinRate default). A client trickling its upload is cut off soon
     * after the grace instead of holding the request until `requestTimeout`. 0 turns it off.
     */
    minBodyRate: byteRate('500B/s'),
    /** 10 s before the body rate counts: room for a slow start (TCP, a phone waking its radio). */
    bodyGrace: duration('10s'),
  }).prefault({}),
  /** For every site unless a site or route has its own (see guardSchema). */
  guard: guardSchema.prefault({}),
  /** Peers whose X-Forwarded-For / Forwarded we keep and extend instead of replacing. */
  trustedProxies: z.array(cidr).default([]),
  proxy: originOptions.prefault({}),
  /** Small static files kept in memory, re-checked with one stat() a second (nginx open_file_cache with the bytes). */
  staticCache: z.strictObject({
    /** 64 MB of file bytes; 0 turns it off (every request opens its file). */
    maxSize: size('64MB'),
    /**
     * Files up to 2 MB are kept; larger ones stream from disk. A kept file is sent from memory
     * with no read per request (TLS leaves no sendfile to lean on), measured 2-3x the throughput
     * of streaming a 1 MiB file; maxSize bounds the total.
     */
    maxFileSize: size('2MB'),
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
    targeted: z.array(fieldName)
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
    /**
     * An origin body may decode to this much (a decompression bomb: 64 KiB of gzip can be 64 MiB);
     * 16 MB like cache.maxObjectSize: a larger body could not be stored decoded anyway. Bodies
     * that expand beyond 100:1 are refused however large this is (src/compress/origin-decode.ts).
     */
    maxDecodedSize: size('16MB').refine((v) => v > 0, { error: 'expected a size greater than 0' }),
    /** Encoded static files kept in memory (LRU by bytes) when they have no precompressed sibling; 0 turns it off. */
    staticMemory: size('32MB'),
  }).prefault({}),
  memory: z.strictObject({
    /**
     * Give glibc's free heap pages back to the system after 30 s without load (after 2 min with a
     * full collection first), and under load at most once a minute when 16 MiB or more are free
     * (malloc_trim; src/runtime/malloc-trim.ts).
     * Needs the native helper built at install; with jemalloc (OUTPOST_MALLOC) it is not needed.
     */
    trim: z.boolean().default(true),
    /**
     * With trim on, when to tell V8 that memory is short (native/heap-pressure.cc): its next full
     * collection then reduces memory and gives back the pages V8 keeps pooled after a regular one,
     * which otherwise stay resident until the load stops. "auto" (the default): whenever 32 MiB
     * or more are pooled (a heap that grew and fell); a duration of at least 1s: that often under
     * load as well (a trade, measured in src/runtime/malloc-trim.ts: the soak's RSS 140-169 MiB
     * against 203-209 with "10s", for 15-40 % more CPU per pass-through response); "off": never.
     */
    pressure: z.unknown().default('auto').transform((value, ctx) => {
      if (value === 'off') return null;
      if (value === 'auto') return 'auto';
      const ms = parseDuration(value);
      if (ms === undefined || ms < 1000) {
        ctx.addIssue({ code: 'custom', message: `expected "auto", "off" or a duration of at least 1s such as 10s, got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return ms;
    }),
    /**
     * The RSS this process aims to stay under: as it nears it, V8 collects its heap sooner (a
     * soft limit like Go's GOMEMLIMIT; nothing is refused or evicted; src/runtime/heap-budget.ts).
     * "auto": what this process's memory cache may hold (cache.maxSize; a worker's share of it;
     * none in the cluster primary) + 224MB; "off", or a size.
     */
    limit: z.unknown().default('auto').transform((value, ctx) => {
      if (value === 'auto' || value === 'off') return value;
      const bytes = parseSize(value);
      if (bytes === undefined || bytes < 64 * 1024 * 1024) {
        ctx.addIssue({ code: 'custom', message: `expected "auto", "off" or a size of at least 64MB such as 1GB, got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return bytes;
    }),
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
  sites: sitesSchema.prefault([{ hosts: ['*'], static: 'public' }]),
});

export type Config = z.output<typeof configSchema>;
export type SiteConfig = Config['sites'][number];
export type RouteConfig = SiteConfig['routes'][number];
export type StaticOptions = z.output<typeof staticOptions>;
export type OriginOptions = z.output<typeof originOptions>;
export type GuardConfig = z.output<typeof guardSchema>;
export type { PassthroughConfig } from './passthrough-schema.ts';
export type { OriginPoolConfig, UpstreamConfig, UpstreamTlsConfig, HealthCheckConfig, BalanceKind } from './origin-schema.ts';
