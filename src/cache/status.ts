import type { OutgoingHttpHeaders } from 'node:http';
import type { Reply } from '../pipeline/context.ts';

/**
 * Cache-Status (RFC 9211): one list member per cache, the one nearest the origin first, so ours is
 * appended after whatever the origin's own caches sent.
 *   hit              served from cache without going forward (ttl: seconds of freshness left,
 *                    negative when a stale response was served)
 *   fwd=uri-miss     nothing stored for the URI          fwd=vary-miss  stored, other variant
 *   fwd=request      the request asked to go forward     fwd=stale      stored but stale: validated
 *   fwd=method       the method is not cacheable         fwd=bypass     hit-for-miss: known uncacheable
 *   fwd-status=N     the status the forward answered     stored         the store accepted the response
 *   collapsed        this request waited on another's identical forward
 *   detail=...       ours: why a response was not stored (private, set-cookie, too-large, ...),
 *                    stale-while-revalidate, stale-if-error, grace, origin-error, only-if-cached
 * `stored` is said only once the store has accepted the response; a body still streaming when
 * the headers leave says nothing about it.
 */
export function appendCacheStatus(prior: OutgoingHttpHeaders[string], entry: string): string {
  return prior === undefined ? entry : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${entry}`;
}

export function setCacheStatus(reply: Reply, entry: string): void {
  reply.headers['cache-status'] = appendCacheStatus(reply.headers['cache-status'], entry);
}
