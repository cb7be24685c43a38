import { mappingOf, type Handler, type MappingHandler } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { parseCacheControl } from '../http/cache-control.ts';
import type { CacheEngine, StoredView } from './engine.ts';
import { primaryKey } from './key.ts';
import { URI_MISS, type Found, type Lookup } from './entries.ts';
import { decide } from './decide.ts';
import type { StoreRules } from './policy.ts';
import { invalidates, invalidationTargets, isUnsafeMethod } from './invalidation.ts';
import { onlyIfCachedReply, storedReply } from './serve.ts';
import { setCacheStatus } from './status.ts';
import { hitReuse } from './reuse.ts';
import { createOriginFetch } from './origin-fetch.ts';
import { describesTarget, pragmaNoCache } from './requests.ts';
import type { CacheRoute } from './route.ts';
import { createAdmitting } from './admit.ts';
import { createCollapsing } from './collapse.ts';
import { createValidating } from './validate.ts';

/**
 * The cache for one route: a Handler in front of that route's origin handler. It asks the engine
 * (one per node) what is stored, the pure policy what it may do with it, and then:
 *
 *   fresh (or stale and acceptable)  → the stored response (serve.ts)
 *   stale within stale-while-revalidate → the stored response; one background revalidation
 *   stale, or the request insists    → a conditional request; a 304 refreshes the stored copy
 *                                      (validate.ts)
 *   nothing stored                   → one collapsed fetch per URI (collapse.ts, flights.ts),
 *                                      stored when allowed (admit.ts); the body streams to every
 *                                      waiter while it is stored (shared-body.ts)
 *   unsafe method                    → forwarded; on success its URIs are invalidated (§4.4)
 *   a WebSocket upgrade              → forwarded, nothing looked up or stored
 *
 * It is a Handler rather than a Stage because it may send several requests to the origin for one
 * client request (a validation, then a full fetch when the 304 is for another representation; a
 * background revalidation that outlives the client) — which the stage contract forbids.
 */

export interface CacheRouteOptions extends StoreRules {
  /**
   * The origin for requests whose answer will not be stored (hit-for-miss, the waiters an
   * uncacheable answer released, Range or conditionals on what is not stored): it may hand the
   * origin's coding on as it came (proxy.ts `passHandler`). `origin` when absent.
   */
  readonly passOrigin?: Handler;
  /** `passOrigin` applying the cache's maps in its own reaction (proxy.ts `passMapped`): preferred when given. */
  readonly passMapped?: MappingHandler;
}

export function createCacheHandler(engine: CacheEngine, origin: Handler, options: CacheRouteOptions): Handler {
  const rules: StoreRules = { storeSetCookie: options.storeSetCookie, heuristicWithCredentials: options.heuristicWithCredentials };
  const { name, stats } = engine;
  const status = (params: string) => `${name}; ${params}`;
  /** §5.2.1.7 only-if-cached with nothing usable stored: a 504 that went nowhere (no fwd member). */
  const notCached = () => Promise.resolve(onlyIfCachedReply(status('detail=only-if-cached')));
  const route: CacheRoute = { engine, rules, origin, status, serve, ...createOriginFetch(origin, options.passMapped ?? mappingOf(options.passOrigin ?? origin), engine.hidden, status) };
  const admitting = createAdmitting(route);
  const collapsing = createCollapsing(route, admitting, answer);
  const { revalidate, revalidateInBackground } = createValidating(route, admitting, collapsing);

  // Not async: a lookup the memory store answers at once goes on in the same turn, and a request
  // for an uncacheable URI reaches the origin without an async frame of this stage (there were
  // four: ~400 B of allocation each per request).
  return function cache(ctx) {
    try {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return forwardMethod(ctx);
      // A WebSocket upgrade is a GET whose answer is a connection, not a representation: never
      // answered from here, never stored (a 101 is not a final response, RFC 9110 §15.2).
      if (ctx.upgrade !== undefined) return route.passThrough(ctx, 'fwd=bypass');
      const primary = primaryKey(ctx);
      const now = engine.lookupNow(primary, ctx.headers);
      if (now !== undefined) return answer(ctx, primary, now);
      // This process is fetching the URI already (a burst for a cold URL): the request waits for
      // that fetch as it would with a memory store, without asking the far side of the store first
      // (with workers a round trip to the cluster primary per waiting request, with Redis a read).
      // Not while a stored response is being validated: a waiter of that one must find the stale
      // response, to fall back on it if the validation fails (stale-if-error, grace).
      const inFlight = engine.flights.get(primary);
      if (inFlight?.validating === false) return answer(ctx, primary, URI_MISS);
      // A miss that took a round trip (to the primary, to Redis) is checked again against what this
      // process holds now: a fetch of its own may have landed meanwhile, and leading would fetch the
      // URI a second time (with 2 workers, 8 clients asking for the same 500 URIs in turn made 677-694
      // origin requests before this, 500 after).
      const answered = engine.lookup(primary, ctx.headers).then((lookup) => answer(ctx, primary, lookup.kind === 'found' ? lookup : engine.lookupNow(primary, ctx.headers) ?? lookup));
      // Across workers: the turn at fetching it, asked with the lookup (node-flights.ts).
      const { nodeFlights } = engine;
      const ahead = nodeFlights !== undefined && inFlight === undefined && !engine.hitForMiss.has(primary) ? nodeFlights.ahead(primary) : undefined;
      return ahead === undefined ? answered : answered.finally(() => nodeFlights!.giveBack(primary, ahead));
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /**
   * What the lookup calls for: the stored response, a revalidation, or the origin. May throw (the
   * callers reject). `waited`: this request waited for another worker's fetch already (it validates
   * on its own, without waiting for a turn again).
   */
  function answer(ctx: Context, primary: string, lookup: Lookup, waited = false): Promise<Reply> {
    const request = parseCacheControl(ctx.headers['cache-control']);
    if (lookup.kind !== 'found') {
      // §5.2.1.7 only-if-cached: "respond using a stored response ... or respond with a 504".
      if (request.has('only-if-cached')) return notCached();
      return collapsing.miss(ctx, request, primary, lookup);
    }
    const found = lookup.found;
    const view = engine.view(found);
    const age = engine.age(found, view);
    const verdict = decide({ age, lifetime: view.lifetime }, { response: view.facts.directives, request, pragmaNoCache: pragmaNoCache(ctx, request) });
    const ttl = Math.floor(view.lifetime - age);
    switch (verdict.kind) {
      case 'fresh': {
        stats.hits++;
        const reply = serve(ctx, found, view, age, `hit; ttl=${ttl}`);
        if (reply.status === found.meta.status) reply.reuse = hitReuse({ engine, found, view, age, cacheStatus: status });
        return Promise.resolve(reply);
      }
      case 'stale-acceptable':
        stats.hits++;
        return Promise.resolve(serve(ctx, found, view, age, `hit; ttl=${ttl}`));
      case 'stale-while-revalidate':
        stats.hits++;
        revalidateInBackground(ctx, found, view);
        return Promise.resolve(serve(ctx, found, view, age, `hit; ttl=${ttl}; detail=stale-while-revalidate`));
      case 'revalidate':
        if (request.has('only-if-cached')) return notCached();
        stats.misses++;
        return revalidate(ctx, request, found, view, verdict.reason === 'request' ? 'request' : 'stale', waited);
    }
  }

  function serve(ctx: Context, found: Found, view: StoredView, age: number, params: string): Reply {
    return storedReply({ ctx, found, view, age, cacheStatus: status(params), variants: found.meta.status === 200 ? engine.variants(found) : undefined });
  }

  /** Methods the cache does not answer: forwarded; an unsafe one invalidates what it changed (RFC 9111 §4.4). */
  async function forwardMethod(ctx: Context): Promise<Reply> {
    const requestTime = engine.now();
    const reply = await route.fetch(ctx, 'fwd=method');
    if (isUnsafeMethod(ctx.method) && invalidates(reply.status)) await engine.invalidate(invalidationTargets(ctx, reply.headers));
    // RFC 9110 §9.3.3: a POST response with explicit freshness and a Content-Location equal to the
    // target URI is a representation of that resource, which later GETs may reuse.
    if (ctx.method === 'POST' && (reply.status === 200 || reply.status === 203) && describesTarget(ctx, reply.headers['content-location'])) {
      const request = parseCacheControl(ctx.headers['cache-control']);
      return admitting.admit({ ctx, request, primary: primaryKey(ctx), reply, requestTime, params: 'fwd=method', learn: false });
    }
    route.hide(reply);
    setCacheStatus(reply, status(`fwd=method; fwd-status=${reply.status}`));
    return reply;
  }
}
