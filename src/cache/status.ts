import type { Reply } from '../pipeline/context.ts';

/**
 * Cache-Status (RFC 9211): one list member per cache, the one nearest the origin first, so ours is
 * appended after whatever the origin's own caches sent.
 *   hit              served from cache without going forward (ttl: seconds of freshness left,
 *                    negative when a stale response was served)
 *   fwd=uri-miss     nothing stored for the URI          fwd=vary-miss  stored, other variant
 *   fwd=request      the request asked to go forward     fwd=stale      stored but stale: validated
 *   fwd=method       the method is not cacheable         fwd=bypass     hit-for-miss: known uncacheable
 *   fwd-status=N     the status the forward answered     stored         the response was stored
 *   collapsed        this request waited on another's identical forward
 *   detail=...       ours: stale-if-error, stale-while-revalidate
 */
export function setCacheStatus(reply: Reply, name: string, params: string): void {
  const entry = `${name}; ${params}`;
  const prior = reply.headers['cache-status'];
  reply.headers['cache-status'] = prior === undefined ? entry : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${entry}`;
}
