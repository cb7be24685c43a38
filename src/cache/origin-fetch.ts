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

interface PassMaps {
  readonly passed: ReplyMap;
  readonly failed: ErrorMap;
}

/** Pass-through maps kept per Cache-Status params, and Cache-Status values per origin status within each. */
const MAX_KEPT = 64;

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

  /**
   * The two maps of a pass-through with these Cache-Status `params`, made once per value (a
   * handful: `fwd=bypass`, `fwd=uri-miss`, ...) and each Cache-Status value once per origin status,
   * instead of two closures and a string per request. At most MAX_KEPT of either are kept.
   */
  const passMaps = new Map<string, PassMaps>();
  function passMapsFor(params: string): PassMaps {
    const kept = passMaps.get(params);
    if (kept !== undefined) return kept;
    const byStatus = new Map<number, string>();
    const maps: PassMaps = {
      passed: (_ctx, reply) => {
        hide(reply);
        let entry = byStatus.get(reply.status);
        if (entry === undefined) {
          entry = status(`${params}; fwd-status=${reply.status}`);
          if (byStatus.size < MAX_KEPT) byStatus.set(reply.status, entry);
        }
        setCacheStatus(reply, entry);
        return reply;
      },
      failed: (_ctx, error) => withCacheStatus(error, params),
    };
    if (passMaps.size < MAX_KEPT) passMaps.set(params, maps);
    return maps;
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
      const maps = passMapsFor(params);
      try {
        return passOrigin(ctx, maps.passed, maps.failed);
      } catch (error) {
        return Promise.reject(withCacheStatus(error, params));
      }
    },
    hide,
  };
}
