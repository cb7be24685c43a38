import type { OutgoingHttpHeaders } from 'node:http';
import { parseHttpDate } from '../http/dates.ts';
import type { StoredResponse } from './policy.ts';
import { tagsOf } from './entries.ts';
import { storedValue } from './shared-values.ts';

/**
 * What a 304 does to a stored response (RFC 9111 §4.3.4 and §3.2), pure.
 */

/**
 * §3.2: the cache "MUST add each header field in the provided response to the stored response,
 * replacing field values that are already present, with the following exceptions": framing and
 * coding fields the stored body depends on, the Content-Length, and our own per-response fields.
 */
const NOT_UPDATED: ReadonlySet<string> = new Set([
  'content-length', 'content-encoding', 'transfer-encoding', 'cache-status', 'set-cookie',
]);

const opaque = (tag: string) => tag.replace(/^W\//, '');

/**
 * §4.3.4: whether the 304 is about this stored response.
 * - "If the new response contains a strong validator ... then that strong validator identifies
 *   the selected representation for update": the stored ETag must be the same strong tag.
 * - A weak ETag or a Last-Modified selects the stored response whose validators correspond (weak comparison).
 * - No validator at all: our own conditional request named this response, so it is the one.
 */
export function selectedBy304(stored: StoredResponse, notModified: OutgoingHttpHeaders): boolean {
  const tag = notModified.etag;
  const storedTag = stored.headers.etag;
  if (typeof tag === 'string') {
    if (!tag.startsWith('W/')) return storedTag === tag;
    return typeof storedTag === 'string' && opaque(storedTag) === opaque(tag);
  }
  const lastModified = parseHttpDate(notModified['last-modified']);
  if (lastModified !== undefined) return lastModified === parseHttpDate(stored.headers['last-modified']);
  return true;
}

/** The stored response with the 304's fields merged in and the times of the validating exchange. */
export function mergeNotModified(stored: StoredResponse, notModified: OutgoingHttpHeaders, times: { requestTime: number; responseTime: number }): StoredResponse {
  const headers: Record<string, string | string[]> = { ...stored.headers };
  for (const name in notModified) {
    const value = notModified[name];
    if (value !== undefined && !NOT_UPDATED.has(name)) headers[name] = typeof value === 'number' ? String(value) : storedValue(name, value);
  }
  // An Age on the 304 is about the 304; a stored one from the first response would now be wrong.
  if (notModified.age === undefined) delete headers.age;
  return { status: stored.status, headers, requestTime: times.requestTime, responseTime: times.responseTime, tags: tagsOf(headers) };
}
