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
  const text = typeof value === 'string' ? value : Array.isArray(value) ? value.join(', ') : String(value);
  // Ours is the last member we appended: the one nearest the client. Searched from there on, no
  // copy of it made (this runs once per response for the access log and the metrics).
  const at = text.lastIndexOf(name === 'Outpost' ? OURS : `${name};`);
  if (at === -1) return 'none';
  if (has(text, at, '; hit')) return has(text, at, 'detail=stale-while-revalidate') ? 'stale' : 'hit';
  if (has(text, at, 'fwd=stale')) {
    if (has(text, at, 'detail=stale-if-error') || has(text, at, 'detail=grace')) return 'stale';
    if (has(text, at, 'fwd-status=304')) return 'revalidated';
  }
  if (has(text, at, 'collapsed')) return 'collapsed';
  if (has(text, at, 'fwd=bypass')) return 'bypass';
  if (has(text, at, 'fwd=method')) return 'pass';
  return 'miss';
}

const OURS = 'Outpost;';
const has = (text: string, from: number, part: string) => text.indexOf(part, from) !== -1;
