import type { Context, Reply } from '../pipeline/context.ts';
import { parseCacheControl, type Directives } from '../http/cache-control.ts';
import { secondaryKey } from './key.ts';
import { objectKey, type Lookup } from './entries.ts';
import { decide } from './decide.ts';
import { awaitFlight, leadFlight, type Flight, type Leader } from './flights.ts';
import { releaseTurnWhenLanded, type Turn } from './node-flights.ts';
import { justStoredReply } from './serve.ts';
import { appendCacheStatus } from './status.ts';
import { fetchContext, pragmaNoCache, settledWithin, wantsLess } from './requests.ts';
import { STORED_WAIT_MS, type Admitting } from './admit.ts';
import type { CacheRoute } from './route.ts';

/**
 * Collapsed forwarding: nothing stored for a request, so one fetch per URI (per variant once the
 * URI is known to vary) goes to the origin and the requests that come meanwhile wait for it
 * (flights.ts); with several workers, one fetch for the node (node-flights.ts).
 */
export interface Collapsing {
  /** Nothing stored for this request: join the fetch under way, or lead one. */
  miss(ctx: Context, request: Directives, primary: string, lookup: Exclude<Lookup, { kind: 'found' }>): Promise<Reply>;
  /** Waits on the leader's fetch, then reads its body (or looks again, or goes alone). */
  join(ctx: Context, request: Directives, primary: string, flight: Flight, params: string): Promise<Reply>;
  /**
   * With several workers: waits for this worker's turn at fetching `turnKey` (the URI, or the
   * variant it is known to vary into). Undefined: fetch it (the turn is released when the flight
   * lands); else the reply another worker's fetch made.
   */
  afterNodeTurn(ctx: Context, primary: string, params: string, leader: Leader, turnKey?: string): Promise<Reply | undefined>;
}

/**
 * @param answer what a lookup calls for (stage.ts): a request whose wait for another worker ended
 *   with a response it may not use as it is (it asked for validation) is answered as a lookup is,
 *   having waited (`waited`).
 */
export function createCollapsing(route: CacheRoute, admitting: Admitting, answer: (ctx: Context, primary: string, lookup: Lookup, waited: boolean) => Promise<Reply>): Collapsing {
  const { engine, status, serve, passThrough, fetch: fetchOrigin } = route;
  const { admit, fromBuffer } = admitting;
  const { stats } = engine;

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

  /** `looked`: told to look once already, and found nothing. */
  async function afterNodeTurn(ctx: Context, primary: string, params: string, leader: Leader, turnKey = primary, looked = false): Promise<Reply | undefined> {
    const turn = await engine.nodeFlights!.turn(turnKey, looked, primary);
    if (turn !== 'lead') return collapsedElsewhere(ctx, primary, params, leader, turn, turnKey, looked);
    releaseTurnWhenLanded(engine.nodeFlights!, turnKey, leader, primary);
    return undefined;
  }

  /**
   * Another worker fetched the URI while this one waited: the response it stored, shared with this
   * worker's own waiters (they look again), or the origin alone when it is not storable.
   * Nothing stored for this request (dropped since it was stored: a POST, a purge): a turn for
   * real, so the fetch this worker makes holds it as any other. Undefined: fetch it here.
   */
  async function collapsedElsewhere(ctx: Context, primary: string, params: string, leader: Leader, turn: Exclude<Turn, 'lead'>, turnKey: string, looked: boolean): Promise<Reply | undefined> {
    if (turn === 'uncacheable' || turn === 'bypass') engine.hitForMiss.remember(primary, 'uncacheable (learnt by another worker)');
    if (turn !== 'look') {
      leader.settle({ kind: 'pass' });
      return passThrough(ctx, turn === 'bypass' ? 'fwd=bypass' : 'fwd=bypass; collapsed');
    }
    const again = await engine.lookup(primary, ctx.headers);
    // The other worker stored another variant: this one's own turn (its fetch, or another worker's).
    if (again.kind === 'vary-miss' && again.key !== turnKey) return afterNodeTurn(ctx, primary, params, leader, again.key);
    if (again.kind !== 'found') return looked ? undefined : afterNodeTurn(ctx, primary, params, leader, turnKey, true);
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

  return { miss, join, afterNodeTurn };
}
