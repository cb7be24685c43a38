import type { ErrorMap, Handler, MappingHandler, ReplyMap } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { isOutpostError } from '../errors.ts';
import { setCacheStatus } from './status.ts';
import { ageValue } from './policy.ts';

/**
 * The cache stage's requests to its origin, with this cache's Cache-Status (RFC 9211) on what
 * comes back, failures included, and the fields only this cache should see removed.
 */
export interface OriginFetch {
  /** The origin's response to `ctx`; a 5xx failure carries `<params>; detail=origin-error`. */
  fetch(ctx: Context, params: string): Promise<Reply>;
  /** The client's own request, as it sent it (Range, conditionals, HEAD, Accept-Encoding), nothing stored, to `passOrigin`: `<params>; fwd-status=N`. */
  passThrough(ctx: Context, params: string): Promise<Reply>;
  /**
   * Removes the fields only this cache should see (targeted Cache-Control, Cache-Tag, ...), and
   * passes on an Age as this cache read it (§5.1): of a list the first value, an invalid one not at all.
   */
  hide(reply: Reply): Reply;
}

export function createOriginFetch(origin: Handler, passOrigin: MappingHandler, hidden: ReadonlySet<string>, status: (params: string) => string): OriginFetch {
  function withCacheStatus(error: unknown, params: string): unknown {
    if (isOutpostError(error) && error.status >= 500) {
      error.headers = { ...error.headers, 'cache-status': status(`${params}; detail=origin-error`) };
    }
    return error;
  }

  function hide(reply: Reply): Reply {
    const headers = reply.headers;
    for (const field of hidden) if (headers[field] !== undefined) delete headers[field];
    if (headers.age !== undefined) {
      const age = ageValue(headers.age);
      if (age === undefined) delete headers.age;
      else headers.age = age;
    }
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
    // Not async, and no reaction of its own: passOrigin applies the two maps in the reaction its
    // attempt has anyway (compose.ts MappingHandler; a `.then` here cost a promise, a reaction and
    // 1-2k instructions per pass-through request, callgrind 2026-12-04).
    passThrough(ctx, params) {
      const passed: ReplyMap = (_ctx, reply) => {
        hide(reply);
        setCacheStatus(reply, status(`${params}; fwd-status=${reply.status}`));
        return reply;
      };
      const failed: ErrorMap = (_ctx, error) => withCacheStatus(error, params);
      try {
        return passOrigin(ctx, passed, failed);
      } catch (error) {
        return Promise.reject(withCacheStatus(error, params));
      }
    },
    hide,
  };
}
