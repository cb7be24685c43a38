import { disposeBody, type Context, type Reply } from '../pipeline/context.ts';
import { isOutpostError, originError, OutpostError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { parseCacheControl, type Directives } from '../http/cache-control.ts';
import { isServerError } from '../http/status.ts';
import type { StoredView } from './engine.ts';
import { flightKeyOf, type Found } from './entries.ts';
import { mayServeStale, mayServeStaleOnError } from './decide.ts';
import { mergeNotModified, selectedBy304 } from './revalidation.ts';
import { leadFlight } from './flights.ts';
import { detachedContext, errorStatus, fetchContext, staleIfErrorWindow, validatorsOf } from './requests.ts';
import type { Admitting } from './admit.ts';
import type { Collapsing } from './collapse.ts';
import type { CacheRoute } from './route.ts';

/**
 * A stored response that may not be served as it is: validated with the origin (RFC 9111 §4.3),
 * one validation per stored response at a time (per variant), for the node; a 304 refreshes it,
 * a failure may serve it stale (RFC 5861 §4 stale-if-error, or the grace period), and
 * stale-while-revalidate validates in the background (RFC 5861 §3).
 */
export interface Validating {
  /**
   * `reason`: 'stale', or 'request' when the request asked for validation (no-cache, max-age=0).
   * `waited`: this request waited for another worker's fetch already (it validates on its own,
   * without waiting for a turn again).
   */
  revalidate(ctx: Context, request: Directives, found: Found, view: StoredView, reason: 'stale' | 'request', waited?: boolean): Promise<Reply>;
  /** RFC 5861 §3: one background revalidation per stored response at a time. */
  revalidateInBackground(ctx: Context, found: Found, view: StoredView): void;
}

export function createValidating(route: CacheRoute, admitting: Admitting, collapsing: Collapsing): Validating {
  const { engine, status, serve, origin } = route;
  const { stats } = engine;
  const { admit } = admitting;
  const { join, afterNodeTurn } = collapsing;

  async function revalidate(ctx: Context, request: Directives, found: Found, view: StoredView, reason: 'stale' | 'request', waited = false): Promise<Reply> {
    const params = `fwd=${reason}`;
    const flightKey = flightKeyOf(found);
    const flight = engine.flights.get(flightKey);
    if (flight) {
      try {
        return await join(ctx, request, found.primary, flight, params);
      } catch (error) {
        // The validation it waited on failed: this request fails as the leader's did (stale, or
        // 504 for a response that may not be served stale), not with the origin's bare 502.
        return onValidationError(ctx, request, found, view, error, `${params}; collapsed`);
      }
    }
    const { leader, fetchSignal } = leadFlight(engine.flights, ctx.signal, flightKey, true);
    // Another worker may be validating it, or fetching it anew: one request to the origin for the
    // node. Not for a request that asks for validation itself (no-cache, max-age=0): what another
    // worker validated may have been asked for before it was sent (collapse.ts, collapsedElsewhere).
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
      // §4.3.4: the 304 is about another representation: fetch the full response. It is part of
      // this validation: its failure serves the stored response stale as the first request's would.
      try {
        reply = await origin(fetchContext(ctx, fetchSignal));
      } catch (error) {
        leader.settle({ kind: 'error', error });
        return onValidationError(ctx, request, found, view, error, params);
      }
    }
    if (isServerError(reply.status)) {
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
      // A new error each time: the one given may be a flight's, thrown to each of its waiters.
      const failed = !mayServeStale(view.facts.directives) && error.status === 502
        ? originError.gatewayTimeout('Gateway Timeout: the origin could not be reached to revalidate', error)
        : copyOf(error);
      failed.headers = { ...error.headers, 'cache-status': status(`${params}; detail=origin-error`) };
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

  function revalidateInBackground(ctx: Context, found: Found, view: StoredView): void {
    if (engine.flights.get(flightKeyOf(found))) return;
    const detached = detachedContext(ctx);
    revalidate(detached, parseCacheControl(undefined), found, view, 'stale')
      .then((reply) => disposeBody(reply.body))
      .catch((error) => publishError({ ctx, error, where: 'background revalidation' }));
  }

  return { revalidate, revalidateInBackground };
}

/** The same failure as a new error, to carry this request's own fields. */
function copyOf(error: OutpostError): OutpostError {
  const copy = new OutpostError(error.code, error.status, error.message, { cause: error.cause });
  copy.detail = error.detail;
  return copy;
}
