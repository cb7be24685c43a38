import type { OutgoingHttpHeaders } from 'node:http';

/**
 * The fields a 304 carries, in one list for every stage that answers one (files, the cache, the
 * compression stage). RFC 9110 §15.4.5: "The server generating a 304 response MUST generate any
 * of the following header fields that would have been sent in a 200 (OK) response to the same
 * request: Content-Location, Date, ETag, and Vary; Cache-Control and Expires". Last-Modified is
 * not in that list but is metadata a cache may use to update its copy (§15.4.5 "SHOULD NOT
 * generate representation metadata other than the above listed fields unless said metadata exists
 * for the purpose of guiding cache updates"): kept. Age, Via and Cache-Status describe the
 * message path, not the representation, and are added by whoever forwards it.
 */
export const NOT_MODIFIED_FIELDS: readonly string[] = [
  'cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified',
  'age', 'via', 'cache-status', 'strict-transport-security',
];

/** The header block of a 304 made from the 200's. */
export function notModifiedHeaders(headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of NOT_MODIFIED_FIELDS) if (headers[name] !== undefined) out[name] = headers[name];
  return out;
}
