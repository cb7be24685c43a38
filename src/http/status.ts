/**
 * Facts about status codes that several stages need. Pure.
 */

/**
 * Statuses that never carry content (RFC 9110 §6.4.1): 1xx, 204 and 304; and any response to HEAD.
 */
export const hasNoContent = (method: string, status: number): boolean =>
  method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);

/** The status alone (a stored response, a decoder that does not know the method). */
export const isNoContentStatus = (status: number): boolean =>
  status === 204 || status === 304 || (status >= 100 && status < 200);

/**
 * "Heuristically cacheable" statuses (RFC 9110 §15.1): a cache may give them a heuristic
 * freshness lifetime when nothing explicit is said. Any other final status is stored only with
 * explicit freshness (RFC 9111 §3: "the response status code is final").
 */
export const HEURISTICALLY_CACHEABLE: ReadonlySet<number> = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** RFC 5861 §4: "an error is any situation that would result in a 500, 502, 503, or 504". */
export const isServerError = (status: number): boolean =>
  status === 500 || status === 502 || status === 503 || status === 504;
