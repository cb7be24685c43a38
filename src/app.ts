import type { Config, OriginOptions, RouteConfig, SiteConfig } from './config/schema.ts';
import { compose, type Handler, type Stage } from './pipeline/compose.ts';
import { errorReply, textReply } from './pipeline/reply.ts';
import { clientError, isOutpostError } from './errors.ts';
import { hostTable, pathTable } from './router/match.ts';
import { createStaticStage } from './static/serve.ts';
import { createProxyHandler, type ProxyHandler } from './origin/proxy.ts';
import { trustList } from './origin/forwarded.ts';
import { publishError, responseChannel } from './observability/channels.ts';
import { createCacheStage, type CacheStage } from './cache/stage.ts';
import { createMemoryStore } from './cache/store/memory.ts';
import { createRedisStore } from './cache/store/redis.ts';
import type { CacheStore } from './cache/store/contract.ts';
import type { AdminActions } from './observability/admin.ts';

/**
 * The composition root: builds every stage from the validated config and compiles one handler
 * chain per site and route, once. Nothing else imports more than one stage.
 *
 *   every request: observe → handle errors → HSTS → router
 *   static route:  serve static (falls through to the origin when the site has one)
 *   proxy route:   cache → origin
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

function createStore(cache: Config['cache']): CacheStore {
  if (cache.store === 'memory') return createMemoryStore({ maxSize: cache.maxSize });
  return createRedisStore({ url: cache.store, onError: (error) => publishError({ ctx: null, error, where: 'redis' }) });
}

export function createApp(config: Config): App {
  const trusted = trustList(config.trustedProxies);
  const proxies: ProxyHandler[] = [];
  const store = createStore(config.cache);
  const caches: CacheStage[] = [];
  const cacheFor = (options: SiteConfig['cache']): Stage[] => {
    if (options?.enabled === false) return [];
    const cache = createCacheStage({ store, maxObjectSize: config.cache.maxObjectSize, grace: config.cache.grace, storeSetCookie: options?.storeSetCookie });
    caches.push(cache);
    return [cache.stage];
  };
  const proxyFor = (upstreams: readonly string[], cacheOptions: SiteConfig['cache'], ...overrides: Array<Partial<OriginOptions> | undefined>): Handler => {
    const proxy = createProxyHandler({ ...config.proxy, ...Object.assign({}, ...overrides), upstreams, trusted, viaName: VIA_NAME });
    proxies.push(proxy);
    return compose(cacheFor(cacheOptions), proxy.handler);
  };

  function siteHandler(site: SiteConfig): Handler {
    const fallback: Handler = site.origin ? proxyFor(site.origin, site.cache, site.proxy) : notFound;
    const root: Handler = site.static
      ? compose([createStaticStage(site.static, { fallthrough: site.origin !== undefined })], fallback)
      : fallback;
    const routes = pathTable(site.routes.map((route) => ({ prefix: route.path, value: routeHandler(site, route) })));
    return (ctx) => (routes.lookup(ctx.path) ?? root)(ctx);
  }

  function routeHandler(site: SiteConfig, route: RouteConfig): Handler {
    if (route.redirect) return redirectHandler(route as RouteConfig & { redirect: NonNullable<RouteConfig['redirect']> });
    if (route.origin) return proxyFor(route.origin, route.cache ?? site.cache, site.proxy, route.proxy);
    return compose([createStaticStage(route.static!, { fallthrough: false, mountPath: route.path })], notFound);
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
