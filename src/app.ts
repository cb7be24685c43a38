import type { Config, OriginOptions, RouteConfig, SiteConfig } from './config/schema.ts';
import { compose, type Handler, type Stage } from './pipeline/compose.ts';
import { errorReply, textReply } from './pipeline/reply.ts';
import { clientError, isOutpostError } from './errors.ts';
import { hostTable, pathTable } from './router/match.ts';
import { createStaticStage } from './static/serve.ts';
import { createEncodedStore } from './static/encoded.ts';
import { createFileCache } from './static/file-cache.ts';
import { createCompressStage } from './compress/stage.ts';
import { createOriginDecodeStage } from './compress/origin-decode.ts';
import { createProxyHandler, type ProxyHandler } from './origin/proxy.ts';
import { trustList } from './origin/forwarded.ts';
import { publishError, responseChannel } from './observability/channels.ts';
import { createCacheStage, type CacheStage } from './cache/stage.ts';
import { createMemoryStore } from './cache/store/memory.ts';
import { createRedisStore } from './cache/store/redis.ts';
import { createTieredStore } from './cache/store/tiered.ts';
import type { CacheStore } from './cache/store/contract.ts';
import type { AdminActions } from './observability/admin.ts';

/**
 * The composition root: builds every stage from the validated config and compiles one handler
 * chain per site and route, once. Nothing else imports more than one stage.
 *
 *   every request: observe → handle errors → HSTS → router
 *   static route:  compress → serve static (falls through to the proxy chain when the site has one)
 *   proxy route:   compress → cache → origin decode → origin
 * One compression stage for the app (one background queue), outermost on each static and proxy
 * chain so a request passes it once. The cache sits between it and the origin decoder: it stores
 * identity bodies plus the encoded variants the compression stage hands back.
 */

export interface App {
  handler: Handler;
  /** What the admin API can do: purge and read counters. */
  admin: AdminActions;
  close(): Promise<void>;
}

const VIA_NAME = 'outpost';

/** Publishes every response for the access log and metrics. */
const observe: Stage = async (ctx, next) => {
  const reply = await next(ctx);
  if (responseChannel.hasSubscribers) responseChannel.publish({ ctx, reply });
  return reply;
};

/** Turns thrown errors into replies; 5xx are logged with their cause. */
const handleErrors: Stage = async (ctx, next) => {
  try {
    return await next(ctx);
  } catch (error) {
    const status = isOutpostError(error) ? error.status : 500;
    if (status >= 500) publishError({ ctx, error, where: 'request' });
    ctx.notes.set('error', isOutpostError(error) ? error.code : 'INTERNAL');
    return errorReply(error);
  }
};

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
    const rest = ctx.path.slice(route.path.length).replace(/^\//, '');
    const location = to.endsWith('/') ? `${to}${rest}${ctx.query}` : to;
    return textReply(status, `Moved to ${location}`, { location });
  };
}

/** Memory alone, or this process's memory in front of the shared Redis tier. */
async function createStore(cache: Config['cache']): Promise<CacheStore> {
  const near = createMemoryStore({ maxSize: cache.maxSize });
  if (cache.store === 'memory') return near;
  const onError = (error: unknown) => publishError({ ctx: null, error, where: 'redis' });
  return createTieredStore({ near, far: createRedisStore({ url: cache.store, onError }), onError });
}

export async function createApp(config: Config): Promise<App> {
  const trusted = trustList(config.trustedProxies);
  const proxies: ProxyHandler[] = [];
  const store = await createStore(config.cache);
  const caches: CacheStage[] = [];
  const cacheFor = (options: SiteConfig['cache']): Stage[] => {
    if (options?.enabled === false) return [];
    const cache = createCacheStage({ store, maxObjectSize: config.cache.maxObjectSize, grace: config.cache.grace, storeSetCookie: options?.storeSetCookie });
    caches.push(cache);
    return [cache.stage];
  };
  // Compression: one stage (one background queue) for every chain; encoded static files share one store.
  const compress = createCompressStage(config.compression);
  const originDecode = createOriginDecodeStage(config.compression);
  const encoded = config.compression.staticMemory > 0 ? createEncodedStore(config.compression.staticMemory) : undefined;
  const files = config.staticCache.maxSize > 0 ? createFileCache(config.staticCache) : undefined;
  const proxyFor = (upstreams: readonly string[], cacheOptions: SiteConfig['cache'], ...overrides: Array<Partial<OriginOptions> | undefined>): Handler => {
    const proxy = createProxyHandler({ ...config.proxy, ...Object.assign({}, ...overrides), upstreams, trusted, viaName: VIA_NAME });
    proxies.push(proxy);
    return compose([...cacheFor(cacheOptions), originDecode], proxy.handler);
  };

  function siteHandler(site: SiteConfig): Handler {
    const fallback: Handler = site.origin ? proxyFor(site.origin, site.cache, site.proxy) : notFound;
    const root: Handler = compose([compress], site.static
      ? compose([createStaticStage(site.static, { fallthrough: site.origin !== undefined, encoded, files })], fallback)
      : fallback);
    const routes = pathTable(site.routes.map((route) => ({ prefix: route.path, value: routeHandler(site, route) })));
    return (ctx) => (routes.lookup(ctx.path) ?? root)(ctx);
  }

  function routeHandler(site: SiteConfig, route: RouteConfig): Handler {
    if (route.redirect) return redirectHandler(route as RouteConfig & { redirect: NonNullable<RouteConfig['redirect']> });
    if (route.origin) return compose([compress], proxyFor(route.origin, route.cache ?? site.cache, site.proxy, route.proxy));
    return compose([compress, createStaticStage(route.static!, { fallthrough: false, mountPath: route.path, encoded, files })], notFound);
  }

  const sites = hostTable(config.sites.map((site) => ({ hosts: site.hosts, value: siteHandler(site) })));
  const router: Handler = (ctx) => (sites.lookup(ctx.host) ?? notFound)(ctx);
  const hsts = hstsStage(config.hsts);
  const handler = compose([observe, handleErrors, ...(hsts ? [hsts] : [])], router);

  // Every cache stage shares the one store, so purging through any of them purges all.
  const anyCache = caches[0];
  const admin: AdminActions = {
    purgeUrl: (url) => anyCache ? anyCache.purgeUrl(url) : Promise.resolve(0),
    purgeTag: (tag) => anyCache ? anyCache.purgeTag(tag) : Promise.resolve(0),
    purgeAll: () => store.clear(),
    stats: () => ({
      store: store.name,
      hits: caches.reduce((n, c) => n + c.stats.hits, 0),
      misses: caches.reduce((n, c) => n + c.stats.misses, 0),
      storeErrors: caches.reduce((n, c) => n + c.stats.storeErrors, 0),
    }),
  };

  return {
    handler,
    admin,
    close: async () => {
      await Promise.all(proxies.map((p) => p.close()));
      await store.close();
    },
  };
}
