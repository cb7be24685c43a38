import type { Context, Reply } from './context.ts';

/**
 * The stage contract.
 * - A Handler answers: it returns the Reply (or throws an OutpostError). It never calls anything after it.
 * - A Stage wraps what comes after it: it may answer by itself, or call `next` at most once and
 *   return (possibly changing) what `next` answered.
 * Chains are compiled once at start-up by `compose`; the request path never searches for handlers.
 */
export type Handler = (ctx: Context) => Promise<Reply>;
export type Stage = (ctx: Context, next: Handler) => Promise<Reply>;
/**
 * What a handler's reply goes through before it is answered, for a job that only looks at the reply
 * (the origin decoder): given to the handler that makes the reply, which applies it in its own
 * reaction. A stage doing the same job costs a promise, a reaction and a closure more per request.
 * May throw or reject: the reply fails as the stage's would.
 */
export type ReplyMap = (ctx: Context, reply: Reply) => Reply | Promise<Reply>;
/** What a handler's failure goes through before it rejects: the error to reject with (beside a ReplyMap). */
export type ErrorMap = (ctx: Context, error: unknown) => unknown;
/**
 * A handler that applies `after` to its reply and `failed` to its failure in the reaction it has
 * anyway: a stage whose only job on the way back is to look at the reply (the cache's Cache-Status
 * on a pass-through) hands them down instead of a `.then` of its own.
 */
export type MappingHandler = (ctx: Context, after: ReplyMap, failed: ErrorMap) => Promise<Reply>;

/** A plain handler as a MappingHandler: its maps in a reaction of their own (tests, an origin without one). */
export function mappingOf(handler: Handler): MappingHandler {
  return (ctx, after, failed) => chainReply(handler, ctx).then((reply) => after(ctx, reply), (error: unknown) => { throw failed(ctx, error); });
}

/**
 * `reply` through `first` (may be absent, may be async), then `then`; what `first` throws or rejects
 * with goes through `failed`, as a stage's `.then(…, failed)` around `first`'s handler would have
 * had it. One reaction more only when `first` is async.
 */
export function mapReply(ctx: Context, reply: Reply, first: ReplyMap | undefined, then?: ReplyMap, failed?: ErrorMap): Reply | Promise<Reply> {
  if (first === undefined) return then === undefined ? reply : then(ctx, reply);
  if (then === undefined && failed === undefined) return first(ctx, reply);
  let mapped: Reply | Promise<Reply>;
  try {
    mapped = first(ctx, reply);
  } catch (error) {
    throw failed === undefined ? error : failed(ctx, error);
  }
  if (!(mapped instanceof Promise)) return then === undefined ? mapped : then(ctx, mapped);
  return mapped.then(
    (next) => (then === undefined ? next : then(ctx, next)),
    (error: unknown) => { throw failed === undefined ? error : failed(ctx, error); },
  );
}

export function compose(stages: readonly Stage[], last: Handler): Handler {
  let handler = last;
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i];
    const inner = handler;
    // `next` is the inner handler itself: calling it at most once is the stage's to keep (a wrapper
    // per request that refused a second call cost two closures per stage on every request).
    handler = (ctx) => stage(ctx, inner);
  }
  return handler;
}

/**
 * The chain's reply for `ctx`, a rejection where it threw. Stages are not all async (an async frame
 * per stage costs allocation on every request), so a handler may throw as well as reject; whoever
 * writes the response turns either into a reply in the one reaction it attaches
 * (pipeline/reply.ts replyForError), where a stage doing it would cost a promise, a reaction and a
 * closure more per request.
 */
export function chainReply(handler: Handler, ctx: Context): Promise<Reply> {
  try {
    return handler(ctx);
  } catch (error) {
    return Promise.reject(error);
  }
}
