import type { OutgoingHttpHeaders } from 'node:http';
import type { Context } from '../pipeline/context.ts';
import { primaryKey } from './key.ts';

/**
 * RFC 9111 §4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status
 * code in response to an unsafe request method (including methods whose safety is unknown)", and
 * "MAY invalidate other URIs ... Location and Content-Location ... [but] MUST NOT invalidate a URI
 * ... if its origin differs from the target URI's origin".
 */

/** Methods defined as safe (RFC 9110 §9.2.1, WebDAV's PROPFIND/REPORT/SEARCH, QUERY); every other method is unsafe. */
const SAFE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'REPORT', 'SEARCH', 'QUERY']);

export const isUnsafeMethod = (method: string): boolean => !SAFE.has(method);

/** "non-error status code": 2xx and 3xx. */
export const invalidates = (status: number): boolean => status >= 200 && status < 400;

/** The primary keys a successful unsafe request invalidates: its target, same-origin Location and Content-Location. */
export function invalidationTargets(ctx: Pick<Context, 'scheme' | 'authority' | 'target'>, headers: OutgoingHttpHeaders): string[] {
  const target = primaryKey(ctx);
  const targets = new Set([target]);
  const base = new URL(`${ctx.scheme}://${ctx.authority}${ctx.target}`);
  for (const field of ['location', 'content-location']) {
    const value = headers[field];
    if (typeof value !== 'string') continue;
    try {
      const url = new URL(value, base);
      if (url.origin === base.origin) targets.add(primaryKey({ scheme: ctx.scheme, authority: ctx.authority, target: url.pathname + url.search }));
    } catch { /* not a URI: nothing to invalidate */ }
  }
  return [...targets];
}
