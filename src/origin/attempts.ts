import { forwardsBody } from './hygiene.ts';
import type { Readable } from 'node:stream';
import type { Context, Reply } from '../pipeline/context.ts';
import { disposeBody } from '../pipeline/context.ts';
import { originError, type OutpostError } from '../errors.ts';
import type { OriginOptions } from '../config/schema.ts';
import { realTimers, type Timers } from '../timers.ts';
import type { Upstream, UpstreamPool } from './pool.ts';
import { attemptBodies, classifyFailure, mayRetryFailure, mayRetryStatus, type Failure } from './retry.ts';

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

export function createAttempts(options: AttemptsOptions): (ctx: Context, forward: Forward) => Promise<Reply> {
  const { pool, mapError } = options;
  const timers = options.timers ?? realTimers;
  const retryOn: ReadonlySet<number> = new Set(options.retryOn);
  // A retry needs somewhere else to go.
  const retries = pool.upstreams.length > 1 ? options.retries : 0;
  const hashKey = options.hashKey ?? ((ctx: Context) => `${ctx.scheme}://${ctx.authority}${ctx.target}`);

  async function attempt(ctx: Context, upstream: Upstream, body: Readable | undefined, forward: Forward): Promise<Reply> {
    pool.begin(upstream);
    const started = performance.now();
    let reply: Reply;
    try {
      reply = await forward(ctx, upstream, body);
    } catch (err) {
      pool.end(upstream);
      throw err;
    }
    return responded(upstream, started, reply);
  }

  /** An attempt's response is in: its time counted, and the attempt ended once its body has. */
  function responded(upstream: Upstream, started: number, reply: Reply): Reply {
    pool.responded(upstream, performance.now() - started);
    // A body read whole (exchange.ts) has ended already; a stream counts until it closes.
    if (reply.body === null || Buffer.isBuffer(reply.body)) pool.end(upstream);
    else (reply.body as Readable).once('close', () => pool.end(upstream));
    return reply;
  }

  /** The upstream for another attempt, or undefined when the request may not go on. */
  function nextUpstream(ctx: Context, tried: Set<Upstream>, key: string, started: number): Upstream | undefined {
    if (tried.size > retries || timers.now() - started >= options.retryDeadline || ctx.signal.aborted) return undefined;
    return pool.choose(key, tried);
  }

  /** A failed attempt as the client sees it, counted against the upstream unless the client caused it. */
  function failedAttempt(err: unknown, upstream: Upstream): { mapped: OutpostError; failure: Failure | null } {
    const mapped = mapError(err, upstream.name);
    if (mapped.status < 500) return { mapped, failure: null }; // the client's doing (gone, body too large or too slow): not the upstream's
    const failure = classifyFailure(err);
    pool.failed(upstream, (err as { code?: string }).code ?? (err as Error).message, failure === 'unreached');
    return { mapped, failure };
  }

  /**
   * Nothing to fail over to: one attempt, without the retry bookkeeping. Not async: two handlers
   * on the exchange's promise cost about half an async frame.
   */
  function only(ctx: Context, upstream: Upstream, forward: Forward): Promise<Reply> {
    pool.begin(upstream);
    const started = performance.now();
    const failed = (err: unknown): never => {
      pool.end(upstream);
      throw failedAttempt(err, upstream).mapped;
    };
    let sent: Promise<Reply>;
    try {
      sent = forward(ctx, upstream, forwardsBody(ctx) ? ctx.body : undefined);
    } catch (err) {
      sent = Promise.reject(err);
    }
    return sent.then((reply) => responded(upstream, started, reply), failed);
  }

  // Not async itself: one promise layer less per request on the single-upstream path.
  return (ctx, forward) => {
    const key = pool.keyed ? hashKey(ctx) : '';
    const upstream = pool.choose(key);
    if (upstream === undefined) return Promise.reject(originError.unavailable('no healthy upstream: every origin server is down'));
    return retries === 0 ? only(ctx, upstream, forward) : withRetries(ctx, upstream, key, forward);
  };

  async function withRetries(ctx: Context, first: Upstream, key: string, forward: Forward): Promise<Reply> {
    let upstream = first;
    // Only a body that may be needed again gets stand-ins; a single upstream reads the client's directly.
    const bodies = forwardsBody(ctx) && retries > 0 ? attemptBodies(ctx.body) : undefined;
    const started = timers.now();
    const tried = new Set<Upstream>();
    for (;;) {
      tried.add(upstream);
      let reply: Reply;
      let next: Upstream | undefined;
      try {
        reply = await attempt(ctx, upstream, bodies ? bodies.next() : forwardsBody(ctx) ? ctx.body : undefined, forward);
      } catch (err) {
        const { mapped, failure: failed } = failedAttempt(err, upstream);
        if (failed === null) throw mapped;
        // Whether this attempt consumed any of the client's body is known only now.
        if (mayRetryFailure(failed, { method: ctx.method, bodyTouched: bodies?.touched ?? false }) && (next = nextUpstream(ctx, tried, key, started))) {
          upstream = next;
          continue;
        }
        throw mapped;
      }
      if (retryOn.has(reply.status) && mayRetryStatus(reply.status, retryOn, { method: ctx.method, bodyTouched: bodies?.touched ?? false }) &&
        (next = nextUpstream(ctx, tried, key, started))) {
        pool.failed(upstream, `status ${reply.status}`, false);
        disposeBody(reply.body);
        upstream = next;
        continue;
      }
      return reply;
    }
  }
}
