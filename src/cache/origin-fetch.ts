import type { Handler } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { isOutpostError } from '../errors.ts';
import { setCacheStatus } from './status.ts';

/**
 * The cache stage's requests to its origin, with this cache's Cache-Status (RFC 9211) on what
 * comes back, failures included, and the fields only this cache should see removed.
 */
export interface OriginFetch {
  /** The origin's response to `ctx`; a 5xx failure carries `<params>; detail=origin-error`. */
  fetch(ctx: Context, params: string): Promise<Reply>;
  /** The client's own request, as it sent it (Range, conditionals, HEAD, Accept-Encoding), nothing stored, to `passOrigin`: `<params>; fwd-status=N`. */
  passThrough(ctx: Context, params: string): Promise<Reply>;
  /** Removes the fields only this cache should see (targeted Cache-Control, Cache-Tag, ...). */
  hide(reply: Reply): Reply;
}

export function createOriginFetch(origin: Handler, passOrigin: Handler, hidden: ReadonlySet<string>, status: (params: string) => string): OriginFetch {
  function withCacheStatus(error: unknown, params: string): unknown {
    if (isOutpostError(error) && error.status >= 500) {
      error.headers = { ...error.headers, 'cache-status': status(`${params}; detail=origin-error`) };
    }
    return error;
  }

  function hide(reply: Reply): Reply {
    for (const field of hidden) if (reply.headers[field] !== undefined) delete reply.headers[field];
    return reply;
  }

  return {
    async fetch(ctx, params) {
      try {
        return await origin(ctx);
      } catch (error) {
        throw withCacheStatus(error, params);
      }
    },
    // Not async: the promise of an uncacheable request is handed on with handlers (an async frame
    // per request costs about twice as much).
    passThrough(ctx, params) {
      let fetched: Promise<Reply>;
      try {
        fetched = passOrigin(ctx);
      } catch (error) {
        fetched = Promise.reject(error);
      }
      return fetched.then((reply) => {
        hide(reply);
        setCacheStatus(reply, status(`${params}; fwd-status=${reply.status}`));
        return reply;
      }, (error: unknown) => { throw withCacheStatus(error, params); });
    },
    hide,
  };
}
