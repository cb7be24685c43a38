import type { OutgoingHttpHeaders } from 'node:http';

/**
 * One word for what the cache did with a response, read from our Cache-Status member (RFC 9211,
 * see src/cache/status.ts), for the access log and the metrics' `cache` label:
 *   hit          served from the cache, fresh (or stale and acceptable to the client)
 *   stale        served stale: stale-while-revalidate, stale-if-error or grace
 *   revalidated  stored, stale, validated with the origin (304) and served
 *   collapsed    waited on another request's identical origin fetch
 *   miss         went to the origin (nothing stored, another variant, stale and replaced, or the
 *                request asked for it), stored or not
 *   bypass       hit-for-miss: known uncacheable, straight to the origin
 *   pass         a method the cache does not answer (POST, ...)
 *   none         no cache involved (static files, redirects, refused requests)
 * A small fixed set: safe as a metrics label.
 */
export type CacheResult = 'hit' | 'stale' | 'revalidated' | 'collapsed' | 'miss' | 'bypass' | 'pass' | 'none';

export const CACHE_RESULTS: readonly CacheResult[] = ['hit', 'stale', 'revalidated', 'collapsed', 'miss', 'bypass', 'pass', 'none'];

export function cacheResult(value: OutgoingHttpHeaders[string], name = 'Outpost'): CacheResult {
  if (value === undefined) return 'none';
  const text = Array.isArray(value) ? value.join(', ') : String(value);
  // Ours is the last member we appended: the one nearest the client.
  const at = text.lastIndexOf(`${name};`);
  if (at === -1) return 'none';
  const ours = text.slice(at);
  if (ours.includes('; hit')) return ours.includes('detail=stale-while-revalidate') ? 'stale' : 'hit';
  if (ours.includes('fwd=stale')) {
    if (ours.includes('detail=stale-if-error') || ours.includes('detail=grace')) return 'stale';
    if (ours.includes('fwd-status=304')) return 'revalidated';
  }
  if (ours.includes('collapsed')) return 'collapsed';
  if (ours.includes('fwd=bypass')) return 'bypass';
  if (ours.includes('fwd=method')) return 'pass';
  return 'miss';
}
