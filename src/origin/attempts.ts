import { forwardsBody } from './hygiene.ts';
import type { Readable } from 'node:stream';
import type { Context, Reply } from '../pipeline/context.ts';
import { mapReply, type ErrorMap, type ReplyMap } from '../pipeline/compose.ts';
import { disposeBody } from '../pipeline/context.ts';
import { originError, type OutpostError } from '../errors.ts';
import type { OriginOptions } from '../config/schema.ts';
import { realTimers, type Timers } from '../timers.ts';
import type { Upstream, UpstreamPool } from './pool.ts';
import { attemptBodies, classifyFailure, mayRetryFailure, mayRetryStatus, type AttemptBodies, type Failure } from './retry.ts';

/**
 * One client request as attempts on the pool's upstreams: the first on the balancer's choice, more
 * (each on an upstream not yet tried) while retry.ts allows them, at most `retries` more and none
 * started `retryDeadline` after the first. Each attempt counts in flight on its upstream until its
 * response body ends.
 */

/** Sends the request to one upstream with this body (undefined: none). */
export type Forward = (ctx: Context, upstream: Upstream, body: Readable | undefined) => Promise<Reply>;

export interface AttemptsOptions extends Pick<OriginOptions, 'retries' | 'retryOn' | 'retryDeadline'> {
  readonly pool: UpstreamPool;
  /** An origin failure as the client should see it. */
  readonly mapError: (err: unknown, upstream: string) => OutpostError;
  /** The key hash balancing keeps on one upstream. */
  readonly hashKey?: (ctx: Context) => string;
  readonly timers?: Timers;
}

/**
 * Runs one client request's attempts; `after` (the origin decoder), then `then` (the caller's map,
 * compose.ts MappingHandler), map the reply the client gets, in the reaction the attempt has
 * anyway, once (a retried attempt's reply is not mapped); `failed` maps the failure the client
 * gets, the decoder's included.
 */
export type Attempts = (ctx: Context, forward: Forward, after?: ReplyMap, then?: ReplyMap, failed?: ErrorMap) => Promise<Reply>;

export function createAttempts(options: AttemptsOptions): Attempts {
  const { pool, mapError } = options;
  const timers = options.timers ?? realTimers;
  const retryOn: ReadonlySet<number> = new Set(options.retryOn);
  // A retry needs somewhere else to go.
  const retries = pool.upstreams.length > 1 ? options.retries : 0;
  const hashKey = options.hashKey ?? ((ctx: Context) => `${ctx.scheme}://${ctx.authority}${ctx.target}`);

  /** An attempt's response is in: its time counted, and the attempt ended once its body has. */
  function responded(upstream: Upstream, started: number, reply: Reply): Reply {
    pool.responded(upstream, performance.now() - started);
    // A body read whole (exchange.ts) has ended already; a stream counts until it closes, and so
    // does a tunnel (a WebSocket: least-connections balancing sees it as the connection it is).
    if (reply.tunnel !== undefined) reply.tunnel.once('close', () => pool.end(upstream));
    else if (reply.body === null || Buffer.isBuffer(reply.body)) pool.end(upstream);
    else (reply.body as Readable).once('close', () => pool.end(upstream));
    return reply;
  }

  /** A failed attempt as the client sees it, counted against the upstream unless the client caused it. */
  function failedAttempt(err: unknown, upstream: Upstream): { mapped: OutpostError; failure: Failure | null } {
    const mapped = mapError(err, upstream.name);
    if (mapped.status < 500) return { mapped, failure: null }; // the client's doing (gone, body too large or too slow): not the upstream's
    const failure = classifyFailure(err);
    pool.failed(upstream, (err as { code?: string }).code ?? (err as Error).message, failure === 'unreached');
    return { mapped, failure };
  }

  /** Sends one attempt to `upstream`, counted in flight there from now until it ends (see responded). */
  function send(ctx: Context, upstream: Upstream, body: Readable | undefined, forward: Forward): Promise<Reply> {
    pool.begin(upstream);
    try {
      return forward(ctx, upstream, body);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Nothing to fail over to: one attempt, without the retry bookkeeping. Not async: two handlers
   * on the exchange's promise cost about half an async frame.
   */
  function only(ctx: Context, upstream: Upstream, forward: Forward, after: ReplyMap | undefined, then: ReplyMap | undefined, failed: ErrorMap | undefined): Promise<Reply> {
    const started = performance.now();
    const attemptFailed = (err: unknown): never => {
      pool.end(upstream);
      const mapped = failedAttempt(err, upstream).mapped;
      throw failed === undefined ? mapped : failed(ctx, mapped);
    };
    return send(ctx, upstream, forwardsBody(ctx) ? ctx.body : undefined, forward).then((reply) => {
      responded(upstream, started, reply);
      return mapReply(ctx, reply, after, then, failed);
    }, attemptFailed);
  }

  // Not async itself: one promise layer less per request on the single-upstream path.
  return (ctx, forward, after, then, failed) => {
    const key = pool.keyed ? hashKey(ctx) : '';
    const upstream = pool.choose(key);
    if (upstream === undefined) {
      const unavailable = originError.unavailable('no healthy upstream: every origin server is down');
      return Promise.reject(failed === undefined ? unavailable : failed(ctx, unavailable));
    }
    return retries === 0 ? only(ctx, upstream, forward, after, then, failed) : withRetries(ctx, upstream, key, forward, after, then, failed);
  };

  /**
   * Failover, without an async frame: each attempt's outcome decides the next (retry.ts), and the
   * set of upstreams tried is made only when a retry is considered. (An async loop with an async
   * attempt and that set per request allocated 0.8 KB more per pass-through request to a pool of
   * two: 18.75 against 17.94 KB, the inspector's sampling heap profile, 2026-12-02.)
   */
  function withRetries(ctx: Context, first: Upstream, key: string, forward: Forward, after: ReplyMap | undefined, then: ReplyMap | undefined, failed: ErrorMap | undefined): Promise<Reply> {
    // Only a body that may be needed again gets stand-ins; a single upstream reads the client's directly.
    const bodies = forwardsBody(ctx) ? attemptBodies(ctx.body) : undefined;
    return attemptOn({ ctx, key, forward, after, then, failed, bodies, started: timers.now(), tried: null }, first);
  }

  function attemptOn(request: Retrying, upstream: Upstream): Promise<Reply> {
    const started = performance.now();
    return send(request.ctx, upstream, request.bodies?.next(), request.forward).then(
      (reply) => {
        const next = afterReply(request, upstream, responded(upstream, started, reply));
        // A retry's attempt maps its own reply: only the one answered here is mapped here.
        return next === reply ? mapReply(request.ctx, reply, request.after, request.then, request.failed) : next;
      },
      (err: unknown) => {
        pool.end(upstream);
        return afterFailure(request, upstream, err);
      },
    );
  }

  function afterReply(request: Retrying, upstream: Upstream, reply: Reply): Reply | Promise<Reply> {
    if (!retryOn.has(reply.status) || !mayRetryStatus(reply.status, retryOn, retryFacts(request))) return reply;
    const next = nextUpstream(request, upstream);
    if (next === undefined) return reply;
    pool.failed(upstream, `status ${reply.status}`, false);
    disposeBody(reply.body);
    return attemptOn(request, next);
  }

  function afterFailure(request: Retrying, upstream: Upstream, err: unknown): Promise<Reply> {
    const { mapped, failure } = failedAttempt(err, upstream);
    // Whether this attempt consumed any of the client's body is known only now.
    const next = failure !== null && mayRetryFailure(failure, retryFacts(request)) ? nextUpstream(request, upstream) : undefined;
    if (next === undefined) throw request.failed === undefined ? mapped : request.failed(request.ctx, mapped);
    return attemptOn(request, next);
  }

  /** The upstream for another attempt after one on `last`, or undefined when the request may not go on. */
  function nextUpstream(request: Retrying, last: Upstream): Upstream | undefined {
    const tried = (request.tried ??= new Set());
    tried.add(last);
    if (tried.size > retries || timers.now() - request.started >= options.retryDeadline || request.ctx.signal.aborted) return undefined;
    return pool.choose(request.key, tried);
  }
}

/** A request that may go to another upstream: what each attempt needs, and the upstreams tried so far. */
interface Retrying {
  readonly ctx: Context;
  readonly key: string;
  readonly forward: Forward;
  readonly after: ReplyMap | undefined;
  readonly then: ReplyMap | undefined;
  readonly failed: ErrorMap | undefined;
  /** Stand-ins for the client's body, one per attempt (undefined: no body). */
  readonly bodies: AttemptBodies | undefined;
  readonly started: number;
  /** Made when a retry is first considered. */
  tried: Set<Upstream> | null;
}

const retryFacts = ({ ctx, bodies }: Retrying) => ({ method: ctx.method, bodyTouched: bodies?.touched ?? false });
