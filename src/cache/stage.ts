import { Readable } from 'node:stream';
import type { Handler } from '../pipeline/compose.ts';
import { disposeBody, type Context, type Reply } from '../pipeline/context.ts';
import { isOutpostError, originError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { parseCacheControl, type Directives } from '../http/cache-control.ts';
import { httpDate } from '../http/dates.ts';
import { isServerError } from '../http/status.ts';
import { declaredLength } from '../http/content-length.ts';
import type { CacheEngine, StoredView } from './engine.ts';
import { primaryKey, secondaryKey, varyNames } from './key.ts';
import { flightKeyOf, objectKey, tagsOf, type Found, type Lookup } from './entries.ts';
import { decide, mayServeStale, mayServeStaleOnError } from './decide.ts';
import { initialAge, currentAge, responseFacts, retentionMs, whyNotStorable, type StoreRules, type StoredResponse } from './policy.ts';
import { invalidates, invalidationTargets, isUnsafeMethod } from './invalidation.ts';
import { mergeNotModified, selectedBy304 } from './revalidation.ts';
import { SharedBody } from './shared-body.ts';
import { awaitFlight, leadFlight, type Flight, type Leader } from './flights.ts';
import { releaseTurnWhenLanded } from './node-flights.ts';
import { justStoredReply, onlyIfCachedReply, storedReply } from './serve.ts';
import { appendCacheStatus, setCacheStatus } from './status.ts';
import { hitReuse } from './reuse.ts';
import { createOriginFetch } from './origin-fetch.ts';
import {
  describesTarget, detachedContext, EMPTY_BODY, errorStatus, fetchContext, pragmaNoCache, readUpTo,
  settledWithin, staleIfErrorWindow, storedFields, validatorsOf, wantsLess,
} from './requests.ts';

/**
 * The cache for one route: a Handler in front of that route's origin handler. It asks the engine
 * (one per node) what is stored, the pure policy what it may do with it, and then:
 *
 *   fresh (or stale and acceptable)  → the stored response (serve.ts)
 *   stale within stale-while-revalidate → the stored response; one background revalidation
 *   stale, or the request insists    → a conditional request; a 304 refreshes the stored copy
 *   nothing stored                   → one collapsed fetch per URI (flights.ts); the body streams
 *                                      to every waiter while it is stored (shared-body.ts)
 *   unsafe method                    → forwarded; on success its URIs are invalidated (§4.4)
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
}

/** How long a miss may wait for a small body to be complete and stored, so Cache-Status can say `stored`. */
const STORED_WAIT_MS = 20;

/** 8 MiB: how far one reader of a shared body may fall behind the fastest before it is cut off. */
const MAX_LAG = 8 * 1024 * 1024;

export function createCacheHandler(engine: CacheEngine, origin: Handler, options: CacheRouteOptions): Handler {
  const rules: StoreRules = { storeSetCookie: options.storeSetCookie, heuristicWithCredentials: options.heuristicWithCredentials };
  const { name, stats } = engine;
  const status = (params: string) => `${name}; ${params}`;

  const { fetch: fetchOrigin, passThrough, hide } = createOriginFetch(origin, options.passOrigin ?? origin, engine.hidden, status);

  // Not async: a lookup the memory store answers at once goes on in the same turn, and a request
  // for an uncacheable URI reaches the origin without an async frame of this stage (there were
  // four: ~400 B of allocation each per request).
  return function cache(ctx) {
    try {
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return forwardMethod(ctx);
      const primary = primaryKey(ctx);
      const now = engine.lookupNow(primary, ctx.headers);
      if (now !== undefined) return answer(ctx, primary, now);
      // A miss that took a round trip (to the primary, to Redis) is checked again against what this
      // process holds now: a fetch of its own may have landed meanwhile, and leading would fetch the
      // URI a second time (with 2 workers, 8 clients asking for the same 500 URIs in turn made 677-694
      // origin requests before this, 500 after).
      const answered = engine.lookup(primary, ctx.headers).then((lookup) => answer(ctx, primary, lookup.kind === 'found' ? lookup : engine.lookupNow(primary, ctx.headers) ?? lookup));
      // Across workers: the turn at fetching it, asked with the lookup (node-flights.ts).
      const { nodeFlights } = engine;
      const ahead = nodeFlights !== undefined && engine.flights.get(primary) === undefined && !engine.hitForMiss.has(primary) ? nodeFlights.ahead(primary) : undefined;
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
      if (request.has('only-if-cached')) return Promise.resolve(onlyIfCachedReply(status('fwd=miss; detail=only-if-cached')));
      return miss(ctx, request, primary, lookup);
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
        if (request.has('only-if-cached')) return Promise.resolve(onlyIfCachedReply(status('fwd=miss; detail=only-if-cached')));
        stats.misses++;
        return revalidate(ctx, request, found, view, verdict.reason === 'request' ? 'request' : 'stale', waited);
    }
  }

  function serve(ctx: Context, found: Found, view: StoredView, age: number, params: string): Reply {
    return storedReply({ ctx, found, view, age, cacheStatus: status(params), variants: found.meta.status === 200 ? engine.variants(found) : undefined });
  }

  // ---- methods the cache does not answer -------------------------------------------------------

  async function forwardMethod(ctx: Context): Promise<Reply> {
    const requestTime = engine.now();
    const reply = await fetchOrigin(ctx, 'fwd=method');
    if (isUnsafeMethod(ctx.method) && invalidates(reply.status)) await engine.invalidate(invalidationTargets(ctx, reply.headers));
    // RFC 9110 §9.3.3: a POST response with explicit freshness and a Content-Location equal to the
    // target URI is a representation of that resource, which later GETs may reuse.
    if (ctx.method === 'POST' && (reply.status === 200 || reply.status === 203) && describesTarget(ctx, reply.headers['content-location'])) {
      const request = parseCacheControl(ctx.headers['cache-control']);
      return admit({ ctx, request, primary: primaryKey(ctx), reply, requestTime, params: 'fwd=method', learn: false });
    }
    hide(reply);
    setCacheStatus(reply, status(`fwd=method; fwd-status=${reply.status}`));
    return reply;
  }

  // ---- nothing stored ---------------------------------------------------------------------------

  function miss(ctx: Context, request: Directives, primary: string, lookup: Exclude<Lookup, { kind: 'found' }>): Promise<Reply> {
    stats.misses++;
    if (engine.hitForMiss.has(primary)) return passThrough(ctx, 'fwd=bypass');
    // Once the URI's Vary is known (RFC 9111 §4.1), each variant has its flight: a request for
    // another variant neither waits on this one's fetch nor goes without storing.
    const flightKey = lookup.kind === 'vary-miss' ? lookup.key : primary;
    const flight = engine.flights.get(flightKey);
    if (flight) return join(ctx, request, primary, flight, `fwd=${lookup.kind}`);
    return lead(ctx, request, primary, `fwd=${lookup.kind}`, flightKey);
  }

  /** Fetches the URI for this request and the requests that join it; `flightKey`: the URI, or the variant it is known to vary into. */
  async function lead(ctx: Context, request: Directives, primary: string, params: string, flightKey = primary): Promise<Reply> {
    const { leader, fetchSignal } = leadFlight(engine.flights, ctx.signal, flightKey);
    const collapsed = engine.nodeFlights === undefined ? undefined : await afterNodeTurn(ctx, primary, params, leader, flightKey);
    if (collapsed !== undefined) return collapsed;
    const requestTime = engine.now();
    let reply: Reply;
    try {
      reply = await fetchOrigin(fetchContext(ctx, fetchSignal), params);
    } catch (error) {
      leader.settle({ kind: 'error', error });
      throw error;
    }
    return admit({ ctx, request, primary, reply, requestTime, params, leader });
  }

  /**
   * With several workers: waits for this worker's turn at fetching the URI (node-flights.ts).
   * Undefined: fetch it (the turn is released when the flight lands); else the reply another
   * worker's fetch made.
   */
  async function afterNodeTurn(ctx: Context, primary: string, params: string, leader: Leader, turnKey = primary): Promise<Reply | undefined> {
    const turn = await engine.nodeFlights!.turn(turnKey);
    if (turn !== 'lead') return collapsedElsewhere(ctx, primary, params, leader, turn, turnKey);
    releaseTurnWhenLanded(engine.nodeFlights!, turnKey, leader);
    return undefined;
  }

  /**
   * Another worker fetched the URI while this one waited: the response it stored, shared with this
   * worker's own waiters (they look again), or the origin alone when it is not storable.
   * Undefined: nothing stored for this request (another variant, gone already): fetch it here.
   */
  async function collapsedElsewhere(ctx: Context, primary: string, params: string, leader: Leader, turn: 'look' | 'pass', turnKey: string): Promise<Reply | undefined> {
    if (turn === 'pass') {
      leader.settle({ kind: 'pass' });
      return passThrough(ctx, 'fwd=bypass; collapsed');
    }
    const again = await engine.lookup(primary, ctx.headers);
    // The other worker stored another variant: this one's own turn (its fetch, or another worker's).
    if (again.kind === 'vary-miss' && again.key !== turnKey) return afterNodeTurn(ctx, primary, params, leader, again.key);
    if (again.kind !== 'found') return undefined;
    stats.coalesced++;
    leader.settle({ kind: 'refreshed' });
    const view = engine.view(again.found);
    const age = engine.age(again.found, view);
    // It was stored before this request may have been sent (the other worker's client may have had
    // it already): a request that asks for validation (no-cache, max-age=0) gets it (RFC 9111 §5.2.1).
    const request = parseCacheControl(ctx.headers['cache-control']);
    const verdict = decide({ age, lifetime: view.lifetime }, { response: view.facts.directives, request, pragmaNoCache: pragmaNoCache(ctx, request) });
    if (verdict.kind !== 'fresh') return answer(ctx, primary, again, true);
    return serve(ctx, again.found, view, age, `${params}; collapsed; fwd-status=${again.found.meta.status}`);
  }

  /** Waits on the leader's fetch, then reads its body (or looks again, or goes alone). */
  async function join(ctx: Context, request: Directives, primary: string, flight: Flight, params: string): Promise<Reply> {
    stats.coalesced++;
    const result = await awaitFlight(ctx.signal, flight);
    const collapsed = `${params}; collapsed`;
    switch (result.kind) {
      case 'error':
        throw result.error;
      case 'pass':
        return passThrough(ctx, 'fwd=bypass; collapsed');
      case 'refreshed': {
        const again = await engine.lookup(primary, ctx.headers);
        if (again.kind === 'found') {
          const view = engine.view(again.found);
          return serve(ctx, again.found, view, engine.age(again.found, view), `${collapsed}; fwd-status=304`);
        }
        return passThrough(ctx, params);
      }
      case 'shared': {
        const secondary = secondaryKey(result.vary, ctx.headers);
        if (secondary !== result.secondary) {
          // Another variant: its own flight, which the others asking for it join.
          const variant = objectKey(primary, secondary);
          const own = engine.flights.get(variant);
          return own !== undefined ? join(ctx, request, primary, own, params) : lead(ctx, request, primary, params, variant);
        }
        const fwd = `${collapsed}; fwd-status=${result.meta.status}`;
        if (wantsLess(ctx)) {
          const body = await result.completed;
          if (body === null) return passThrough(ctx, params);
          return fromBuffer(ctx, primary, result.meta, body, fwd);
        }
        const cacheStatus = appendCacheStatus(result.clientHeaders['cache-status'], status(fwd));
        if (ctx.method === 'GET' && result.body.complete) {
          // The body came whole: once stored, every waiter gets the stored bytes as the leader does,
          // and one encoding is made for all (a stream each before: 200 br waiters, 1.9 ms of CPU each).
          const saved = await settledWithin(result.stored, STORED_WAIT_MS);
          if (saved !== undefined) return justStoredReply(saved, result.clientHeaders, cacheStatus, (record) => engine.variants(record));
        }
        const reader = result.body.attach();
        if (reader === null) return passThrough(ctx, params);
        return { status: result.meta.status, headers: { ...result.clientHeaders, 'cache-status': cacheStatus }, body: reader };
      }
    }
  }

  interface Admission {
    readonly ctx: Context;
    readonly request: Directives;
    readonly primary: string;
    /** The origin's full response to a fetch meant for storing. */
    readonly reply: Reply;
    readonly requestTime: number;
    /** Cache-Status parameters so far (`fwd=uri-miss`). */
    readonly params: string;
    readonly leader?: Leader;
    /** The stale response this fetch replaces, if any. */
    readonly replaces?: Found;
    /** false: an answer that is not storable says nothing about later GETs (a POST's). */
    readonly learn?: boolean;
  }

  /** A full response from the origin: store it when allowed, and answer the client from it. */
  async function admit(a: Admission): Promise<Reply> {
    const { ctx, reply, primary, leader } = a;
    const responseTime = engine.now();
    // RFC 9110 §6.6.1: a response without Date gets the time it was received.
    if (reply.headers.date === undefined) reply.headers.date = httpDate(responseTime);
    const facts = responseFacts({ status: reply.status, headers: reply.headers, receivedAt: responseTime }, engine.policy);
    const fwdStatus = `${a.params}; fwd-status=${reply.status}`;
    const meta: StoredResponse = { status: reply.status, headers: storedFields(reply.headers, rules), requestTime: a.requestTime, responseTime, tags: tagsOf(reply.headers) };
    const age = currentAge(initialAge(meta, facts.date), responseTime, responseTime);
    const reason = whyNotStorable({ requestHeaders: ctx.headers, requestDirectives: a.request, status: reply.status, headers: reply.headers, facts }, rules)
      ?? (declaredLength(reply.headers) > engine.maxObjectSize ? 'too-large' : null)
      ?? (retentionMs({ facts, age, graceSeconds: engine.graceSeconds }) <= 0 ? 'no-lifetime' : null);

    if (reason !== null) {
      if (reason !== 'request-no-store' && a.learn !== false) engine.hitForMiss.remember(primary, reason);
      leader?.settle({ kind: 'pass' });
      // A stale copy superseded by a response that may not be stored must not be served again
      // (unless it was only this request that asked for nothing to be stored).
      if (a.replaces !== undefined && reason !== 'request-no-store') await engine.invalidate([primary]);
      if (wantsLess(ctx) && reply.status === 200) {
        // This fetch left out the client's Range / conditionals / HEAD. A Range goes to the origin
        // as the client sent it (the origin's 206, not a slice of a body read in full); HEAD and
        // conditionals are answered from this response when it is small enough to read, so the
        // origin is not asked twice.
        const readable = ctx.headers.range === undefined && declaredLength(reply.headers) <= engine.maxObjectSize;
        const whole = readable ? await readUpTo(reply.body, engine.maxObjectSize) : null;
        if (whole !== null) return fromBuffer(ctx, primary, meta, whole, `${fwdStatus}; detail=${reason}`);
        disposeBody(reply.body);
        return passThrough(ctx, a.params);
      }
      hide(reply);
      setCacheStatus(reply, status(`${fwdStatus}; detail=${reason}`));
      return reply;
    }

    engine.hitForMiss.forget(primary);
    const expected = declaredLength(reply.headers);
    let completed!: (body: Buffer | null) => void;
    const completion = new Promise<Buffer | null>((resolve) => { completed = resolve; });
    let accepted!: (stored: Found | undefined) => void;
    const stored = new Promise<Found | undefined>((resolve) => { accepted = resolve; });
    // A body that came whole (exchange.ts) and complete is no stream to tee: readers start on it ended.
    const whole = Buffer.isBuffer(reply.body) && (expected === -1 || reply.body.length === expected) ? reply.body : null;
    const source = whole ?? (reply.body === null ? EMPTY_BODY() : Buffer.isBuffer(reply.body) ? Readable.from([reply.body]) : 'kind' in reply.body ? null : reply.body);
    if (source === null) throw new TypeError('cache: the origin handler answered with a file body');
    const body = new SharedBody(source, {
      maxKept: engine.maxObjectSize,
      maxLag: Math.max(engine.maxObjectSize, MAX_LAG),
      onDone: (whole) => {
        // A truncated response is never stored (its Content-Length did not match).
        const complete = whole !== null && (expected === -1 || whole.length === expected) ? whole : null;
        completed(complete);
        if (complete === null) {
          if (whole === null && body.received > engine.maxObjectSize) engine.hitForMiss.remember(primary, 'too-large');
          accepted(undefined);
          leader?.land();
          return;
        }
        engine.save(primary, ctx.headers, meta, complete).then((saved) => {
          accepted(saved);
          leader?.land();
        }, () => { accepted(undefined); leader?.land(); });
      },
    });
    const vary = varyNames(meta.headers.vary);
    const names = vary === '*' ? [] : vary;
    const clientHeaders = hide({ status: reply.status, headers: { ...reply.headers }, body: null }).headers;
    leader?.settle({ kind: 'shared', meta, body, completed: completion, stored, clientHeaders, vary: names, secondary: secondaryKey(names, ctx.headers) });

    if (wantsLess(ctx)) {
      const whole = await completion;
      if (whole === null) return passThrough(ctx, a.params);
      const saved = await stored;
      return fromBuffer(ctx, primary, meta, whole, saved !== undefined ? `${fwdStatus}; stored` : fwdStatus);
    }
    // A whole body needs no reader of the tee: it is sent as it is, or as stored.
    const reader = whole === null ? body.attach() : null;
    if (whole === null && reader === null) return passThrough(ctx, a.params);
    // Small bodies are usually complete by now: wait a moment so Cache-Status can tell the truth.
    const saved = await settledWithin(stored, STORED_WAIT_MS);
    const cacheStatus = appendCacheStatus(clientHeaders['cache-status'], status(saved !== undefined ? `${fwdStatus}; stored` : fwdStatus));
    if (saved !== undefined && ctx.method === 'GET') {
      reader?.destroy();
      return justStoredReply(saved, clientHeaders, cacheStatus, (record) => engine.variants(record, true, true));
    }
    return { status: reply.status, headers: { ...clientHeaders, 'cache-status': cacheStatus }, body: reader ?? whole };
  }

  /** Answers from a complete body that is (or was meant to be) stored: conditionals, ranges, HEAD. */
  function fromBuffer(ctx: Context, primary: string, meta: StoredResponse, body: Buffer, params: string): Reply {
    const found: Found = { key: '', primary, meta, body };
    return storedReply({ ctx, found, view: engine.view(found), age: undefined, cacheStatus: status(params) });
  }

  // ---- stale: validate with the origin -----------------------------------------------------------

  async function revalidate(ctx: Context, request: Directives, found: Found, view: StoredView, reason: 'stale' | 'request', waited = false): Promise<Reply> {
    const params = `fwd=${reason}`;
    const flightKey = flightKeyOf(found);
    const flight = engine.flights.get(flightKey);
    if (flight) {
      try {
        return await join(ctx, request, found.primary, flight, params);
      } catch (error) {
        const stale = staleOnError(ctx, request, found, view, errorStatus(error));
        if (stale) return stale;
        throw error;
      }
    }
    const { leader, fetchSignal } = leadFlight(engine.flights, ctx.signal, flightKey);
    // Another worker may be validating it, or fetching it anew: one request to the origin for the
    // node. Not for a request that asks for validation itself (no-cache, max-age=0): what another
    // worker validated may have been asked for before it was sent (see collapsedElsewhere).
    const wait = engine.nodeFlights !== undefined && !waited && reason === 'stale';
    const collapsed = wait ? await afterNodeTurn(ctx, found.primary, params, leader, flightKey) : undefined;
    if (collapsed !== undefined) return collapsed;
    stats.revalidations++;
    const requestTime = engine.now();
    const conditional = fetchContext(ctx, fetchSignal, validatorsOf(view));
    let reply: Reply;
    try {
      reply = await origin(conditional);
    } catch (error) {
      leader.settle({ kind: 'error', error });
      return onValidationError(ctx, request, found, view, error, params);
    }
    if (reply.status === 304) {
      disposeBody(reply.body);
      if (selectedBy304(found.meta, reply.headers)) {
        const merged = mergeNotModified(found.meta, reply.headers, { requestTime, responseTime: engine.now() });
        const refreshed = await engine.refresh(found, merged);
        leader.settle({ kind: 'refreshed' });
        const refreshedView = engine.view(refreshed);
        return serve(ctx, refreshed, refreshedView, engine.age(refreshed, refreshedView), `${params}; fwd-status=304`);
      }
      // §4.3.4: the 304 is about another representation: fetch the full response.
      try {
        reply = await fetchOrigin(fetchContext(ctx, fetchSignal), params);
      } catch (error) {
        leader.settle({ kind: 'error', error });
        throw error;
      }
    } else if (isServerError(reply.status)) {
      const stale = staleOnError(ctx, request, found, view, reply.status);
      if (stale) {
        disposeBody(reply.body);
        leader.settle({ kind: 'error', error: originError.badGateway(`origin answered ${reply.status}`) });
        return stale;
      }
    }
    return admit({ ctx, request, primary: found.primary, reply, requestTime, params, leader, replaces: found });
  }

  /** The origin could not be reached or timed out while a stale response was stored. */
  function onValidationError(ctx: Context, request: Directives, found: Found, view: StoredView, error: unknown, params: string): Reply {
    const stale = staleOnError(ctx, request, found, view, errorStatus(error));
    if (stale) return stale;
    if (isOutpostError(error) && error.status >= 500) {
      // §5.2.2.2: must-revalidate (and proxy-revalidate, s-maxage, no-cache): "if a cache is
      // disconnected, the cache MUST generate an error response rather than reuse the stale
      // response. The generated status code SHOULD be 504 (Gateway Timeout)".
      const failed = !mayServeStale(view.facts.directives) && error.status === 502
        ? originError.gatewayTimeout('Gateway Timeout: the origin could not be reached to revalidate', error)
        : error;
      failed.headers = { ...failed.headers, 'cache-status': status(`${params}; detail=origin-error`) };
      throw failed;
    }
    throw error;
  }

  /** RFC 5861 §4 stale-if-error, or the grace period: the stored response instead of an origin failure. */
  function staleOnError(ctx: Context, request: Directives, found: Found, view: StoredView, failedStatus: number | undefined): Reply | null {
    if (failedStatus === undefined || !isServerError(failedStatus)) return null;
    const age = engine.age(found, view);
    if (!mayServeStaleOnError({ age, lifetime: view.lifetime }, { response: view.facts.directives, request, graceSeconds: engine.graceSeconds })) return null;
    stats.staleServed++;
    const ttl = Math.floor(view.lifetime - age);
    const why = staleIfErrorWindow(view.facts.directives, request) ? 'stale-if-error' : 'grace';
    return serve(ctx, found, view, age, `fwd=stale; fwd-status=${failedStatus}; ttl=${ttl}; detail=${why}`);
  }

  /** RFC 5861 §3: one background revalidation per stored response at a time. */
  function revalidateInBackground(ctx: Context, found: Found, view: StoredView): void {
    if (engine.flights.get(flightKeyOf(found))) return;
    const detached = detachedContext(ctx);
    revalidate(detached, parseCacheControl(undefined), found, view, 'stale')
      .then((reply) => disposeBody(reply.body))
      .catch((error) => publishError({ ctx, error, where: 'background revalidation' }));
  }
}
