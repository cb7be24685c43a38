import type { Config, OriginOptions, OriginPoolConfig, RouteConfig, SiteConfig } from './config/schema.ts';
import { compose, type Handler, type MappingHandler, type Stage } from './pipeline/compose.ts';
import { textReply } from './pipeline/reply.ts';
import { clientError } from './errors.ts';
import { hostTable, pathTable, routingPath } from './router/match.ts';
import { createStaticStage } from './static/serve.ts';
import { createEncodedStore } from './static/encoded.ts';
import { createFileCache } from './static/file-cache.ts';
import { createCompressStage } from './compress/stage.ts';
import type { HighQualityEncoder } from './compress/fast-variants.ts';
import { createOriginDecode, originAcceptEncoding } from './compress/origin-decode.ts';
import { createProxyHandler, type ProxyHandler } from './origin/proxy.ts';
import { trustList } from './origin/forwarded.ts';
import { publishError, publishUpstream } from './observability/channels.ts';
import { primaryKey } from './cache/key.ts';
import type { Timers } from './timers.ts';
import { createCacheHandler } from './cache/stage.ts';
import { createCacheEngine, type CacheEngine } from './cache/engine.ts';
import { explain } from './cache/explain.ts';
import { createMemoryStore } from './cache/store/memory.ts';
import { createTieredStore } from './cache/store/tiered.ts';
import { createNodeTierStore } from './cache/store/node-tier.ts';
import { createNodeFlightsClient } from './cache/node-flights.ts';
import { sharedWorkers } from './runtime/primary-channel.ts';
import { refusedRecord } from './cache/record-check.ts';
import type { CacheStore } from './cache/store/contract.ts';
import type { AdminActions } from './observability/admin.ts';
import { createGuards } from './guard/guards.ts';
import { addressList } from './net/cidr.ts';
import { frontStats } from './server/counters.ts';

/**
 * The composition root: builds every stage from the validated config and compiles one handler
 * chain per site and route, once. Nothing else imports more than one stage.
 *
 *   every request: HSTS → router; what the chain throws or rejects with becomes a reply where the
 *                  response is written (server/listener.ts calls pipeline/reply.ts replyForError in
 *                  its one promise reaction per request, not one more per stage), which reports
 *                  each response's end
 *   static route:  compress → serve static (falls through to the proxy chain when the site has one)
 *   proxy route:   compress → cache → origin decode → origin
 * One compression stage for the app (one background queue), outermost on each static and proxy
 * chain so a request passes it once. The cache sits between it and the origin decoder: it stores
 * identity bodies plus the encoded variants the compression stage hands back.
 */

export interface App {
  /** The request's chain; it may reject (or throw): whoever writes the response makes the error's reply (pipeline/reply.ts replyForError). */
  handler: Handler;
  /** What the admin API can do: purge and read counters. */
  admin: AdminActions;
  /** Each origin's upstream pool by its place in the config (`sites[0].routes[1]`). */
  readonly proxies: ReadonlyMap<string, ProxyHandler>;
  /** Whether each upstream takes requests (down if any route's pool skips it). */
  upstreams(): Array<{ upstream: string; up: boolean }>;
  /** The node's cache engine; a reload with the same `cache` section hands it to the next app. */
  readonly engine: CacheEngine;
  /** Closes the proxies, the guards' limiters and the engine; `keepEngine`: a reload handed the engine to the next app. */
  close(keepEngine?: boolean): Promise<void>;
}

const VIA_NAME = 'outpost';

function hstsStage(hsts: Config['hsts']): Stage | null {
  if (hsts.maxAge <= 0) return null;
  const value = `max-age=${Math.floor(hsts.maxAge / 1000)}${hsts.includeSubDomains ? '; includeSubDomains' : ''}${hsts.preload ? '; preload' : ''}`;
  // RFC 6797 §7.2: only over secure transport.
  return async (ctx, next) => {
    const reply = await next(ctx);
    if (ctx.scheme === 'https') reply.headers['strict-transport-security'] = value;
    return reply;
  };
}

const notFound: Handler = async () => { throw clientError.notFound(); };

/** `to` ending in '/' keeps the rest of the path after the prefix, and the query. */
function redirectHandler(route: RouteConfig & { redirect: NonNullable<RouteConfig['redirect']> }): Handler {
  const { to, status } = route.redirect;
  return async (ctx) => {
    const rest = routingPath(ctx.path).slice(route.path.length).replace(/^\//, '');
    const location = to.endsWith('/') ? `${to}${rest}${ctx.query}` : to;
    return textReply(status, `Moved to ${location}`, { location });
  };
}

/** Whether the cache is the node tier: the workers' memory, shared through the cluster primary (node-tier.ts). */
const onNodeTier = (cache: Config['cache']) => cache.store === 'memory' && sharedWorkers() > 1;

/** The bytes this process's memory cache may hold: in a cluster worker, its share of maxSize. */
export function memoryCacheBytes(cache: Config['cache']): number {
  return onNodeTier(cache) ? Math.max(1, Math.floor(cache.maxSize / sharedWorkers())) : cache.maxSize;
}

/**
 * Memory alone; in a cluster worker, this worker's memory shared with the others through the
 * primary's directory (node-tier.ts); or this process's memory in front of the shared Redis tier
 * or of this node's SQLite file.
 */
async function createStore(cache: Config['cache'], now: () => number): Promise<CacheStore> {
  if (onNodeTier(cache)) {
    // Each worker holds what it stored or served, its share of maxSize; the primary knows who holds what.
    const local = createMemoryStore({ maxSize: memoryCacheBytes(cache), now });
    return createNodeTierStore({ local, section: JSON.stringify(cache), maxSize: cache.maxSize });
  }
  const near = createMemoryStore({ maxSize: cache.maxSize, now });
  if (cache.store === 'memory') return near;
  const where = cache.store.startsWith('sqlite:') ? 'sqlite' : 'redis';
  const onError = (error: unknown) => publishError({ ctx: null, error, where });
  // Loaded only when configured: the Redis client alone is about 25 MB of heap and code in every
  // process that never talks to Redis.
  const far = where === 'sqlite'
    ? (await import('./cache/store/sqlite.ts')).createSqliteStore({ url: cache.store, onError })
    : (await import('./cache/store/redis.ts')).createRedisStore({ url: cache.store, onError });
  return createTieredStore({ near, far, onError, refuse: refusedRecord });
}

export interface AppDependencies {
  /** The clock (ms since the epoch) the cache judges freshness by; tests inject one. */
  readonly now?: () => number;
  /** The timers origin health checks run on; tests move them by hand. */
  readonly timers?: Timers;
  /** In [0, 1): the health checks' jitter. */
  readonly random?: () => number;
  /** An engine to reuse: a reload with the same `cache` section keeps the cache. */
  readonly engine?: CacheEngine;
  /** The background high-quality encoder (compress/background.ts); tests hold it to see what is sent while an upgrade waits. */
  readonly encodeHigh?: HighQualityEncoder;
}

export async function createApp(config: Config, deps: AppDependencies = {}): Promise<App> {
  const now = deps.now ?? Date.now;
  const trusted = trustList(config.trustedProxies);
  const proxies = new Map<string, ProxyHandler>();
  // One cache engine for the node: every route's cache and the admin API share its store and state.
  const engine: CacheEngine = deps.engine ?? createCacheEngine({
    store: await createStore(config.cache, now),
    now,
    maxObjectSize: config.cache.maxObjectSize,
    grace: config.cache.grace,
    targeted: config.cache.targeted,
    hideHeaders: config.cache.hideHeaders,
    onError: (error, where) => publishError({ ctx: null, error, where }),
    nodeFlights: onNodeTier(config.cache) ? createNodeFlightsClient() : undefined,
  });
  /** The cache in front of `storing`, passing what it will not store to `passMapped`; without a cache nothing is stored, and every request goes to `passing`. */
  const cached = (options: SiteConfig['cache'], storing: Handler, passing: Handler, passMapped: MappingHandler): Handler => options?.enabled === false
    ? passing
    : createCacheHandler(engine, storing, { storeSetCookie: options?.storeSetCookie ?? false, heuristicWithCredentials: options?.heuristicWithCredentials ?? false, passMapped });
  // Compression: one stage (one background queue) for every chain; encoded static files share one store.
  const compress = createCompressStage(config.compression, deps.encodeHigh);
  const decode = createOriginDecode(config.compression);
  const decodePassing = createOriginDecode({ ...config.compression, passAccepted: true });
  const encoded = config.compression.staticMemory > 0 ? createEncodedStore(config.compression.staticMemory) : undefined;
  const files = config.staticCache.maxSize > 0 ? createFileCache({ ...config.staticCache, now }) : undefined;
  /** One upstream pool per site or route that has an origin, named by its place in the config. */
  const proxyFor = (name: string, pool: OriginPoolConfig, cacheOptions: SiteConfig['cache'], ...overrides: Array<Partial<OriginOptions> | undefined>): Handler => {
    const proxy = createProxyHandler({
      ...config.proxy, ...Object.assign({}, ...overrides), pool, trusted, viaName: VIA_NAME, tempFileSpace: config.limits.tempFileSpace,
      caching: cacheOptions?.enabled !== false,
      hashKey: primaryKey,
      acceptEncoding: originAcceptEncoding, // what decode can decode
      decode,
      decodePassing,
      timers: deps.timers,
      random: deps.random,
      onHealthChange: (upstream, up, why) => publishUpstream({ pool: name, upstream: upstream.name, up, why }),
    });
    proxies.set(name, proxy);
    return cached(cacheOptions, proxy.handler, proxy.passHandler, proxy.passMapped);
  };

  // The guard runs first in every site's and route's chain: what it refuses reaches nothing else.
  const guards = createGuards({
    trusted: addressList(config.trustedProxies),
    defaultStore: config.cache.store.startsWith('redis') ? config.cache.store : 'memory',
    onError: (error) => publishError({ ctx: null, error, where: 'rate limit store (local limits meanwhile)' }),
    now,
  });

  function siteHandler(site: SiteConfig, i: number): Handler {
    const siteGuard = site.guard ?? config.guard;
    const siteGuardId = site.guard ? `s${i}` : 'all';
    const fallback: Handler = site.origin ? proxyFor(`sites[${i}]`, site.origin, site.cache, site.proxy) : notFound;
    const root: Handler = guards.guard(siteGuard, siteGuardId, compose([compress], site.static
      ? compose([createStaticStage(site.static, { fallthrough: site.origin !== undefined, encoded, files, now })], fallback)
      : fallback));
    const routes = pathTable(site.routes.map((route, j) => ({
      prefix: route.path,
      value: {
        route,
        handler: route.guard
          ? guards.guard(route.guard, `s${i}r${j}`, routeHandler(site, route, `sites[${i}].routes[${j}]`))
          : guards.guard(siteGuard, siteGuardId, routeHandler(site, route, `sites[${i}].routes[${j}]`)),
      },
    })));
    return (ctx) => {
      // Context says so: the router sets them (the access log and metrics label by them).
      ctx.site = site;
      const matched = routes.lookup(routingPath(ctx.path));
      if (matched === undefined) return root(ctx);
      ctx.route = matched.route;
      return matched.handler(ctx);
    };
  }

  function routeHandler(site: SiteConfig, route: RouteConfig, name: string): Handler {
    if (route.redirect) return redirectHandler(route as RouteConfig & { redirect: NonNullable<RouteConfig['redirect']> });
    if (route.origin) return compose([compress], proxyFor(name, route.origin, route.cache ?? site.cache, site.proxy, route.proxy));
    return compose([compress, createStaticStage(route.static!, { fallthrough: false, mountPath: route.path, encoded, files, now })], notFound);
  }

  const sites = hostTable(config.sites.map((site, i) => ({ hosts: site.hosts, value: siteHandler(site, i) })));
  const router: Handler = (ctx) => (sites.lookup(ctx.host) ?? notFound)(ctx);
  const hsts = hstsStage(config.hsts);
  const handler = hsts ? compose([hsts], router) : router;

  const admin: AdminActions = {
    purge: (target, soft) => engine.purge(target, soft),
    explain: (url, headers) => explain(engine, { url, headers }),
    stats: () => ({
      store: engine.storeName, ...engine.stats, hitForMiss: engine.hitForMiss.size, inFlight: engine.flights.size,
      guard: guards.stats, front: frontStats(),
      origins: Object.fromEntries([...proxies].map(([name, proxy]) => [name, proxy.stats()])),
    }),
  };

  return {
    handler,
    admin,
    proxies,
    engine,
    upstreams: () => {
      const health = new Map<string, boolean>();
      for (const proxy of proxies.values()) for (const { upstream, up } of proxy.health()) health.set(upstream, (health.get(upstream) ?? true) && up);
      return [...health].map(([upstream, up]) => ({ upstream, up }));
    },
    close: async (keepEngine = false) => {
      await Promise.all([...proxies.values()].map((p) => p.close()));
      await guards.close();
      if (!keepEngine) await engine.close();
    },
  };
}
