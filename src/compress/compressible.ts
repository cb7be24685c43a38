import compressible from 'compressible';

/**
 * Which responses are worth a content coding, by media type and header. Pure.
 *
 * Types: mime-db's `compressible` flag (the data behind jshttp's `compressible` package, which
 * Express's compression middleware uses), and for types it does not know, `text/*` and the
 * structured syntax suffixes `+json`, `+xml` and `+text` (RFC 6838 §4.2.8). Images, video, audio,
 * fonts in woff/woff2 and archives are already compressed: coding them again only costs CPU.
 */

/**
 * Types mime-db calls compressible that we leave alone:
 * - text/event-stream: events must reach the client as they are written; a compressor holds them back;
 * - application/octet-stream: the type of bytes nobody named (downloads, archives, media served
 *   without a type); mime-db marks it compressible since 1.53, Cloudflare's and Caddy's lists do not.
 */
const EXCLUDED = new Set(['text/event-stream', 'application/octet-stream']);
const ESSENCE = /^\s*([^;\s]+)/;

const cache = new Map<string, boolean>();
const CACHE_ENTRIES = 512;

/** Whether a Content-Type names a compressible media type (parameters and case ignored). */
export function isCompressibleType(contentType: unknown): boolean {
  if (typeof contentType !== 'string') return false;
  const hit = cache.get(contentType);
  if (hit !== undefined) return hit;
  const essence = ESSENCE.exec(contentType)?.[1].toLowerCase() ?? '';
  const result = essence !== '' && !EXCLUDED.has(essence) && compressible(essence) === true;
  if (cache.size >= CACHE_ENTRIES) cache.clear();
  cache.set(contentType, result);
  return result;
}

/** A Content-Encoding other than identity is present: the content is already coded. */
export function hasContentEncoding(value: unknown): boolean {
  if (value === undefined) return false;
  const text = (Array.isArray(value) ? value.join(',') : String(value)).trim().toLowerCase();
  return text !== '' && text !== 'identity';
}
