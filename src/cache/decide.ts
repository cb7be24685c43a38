/**
 * The cache's decisions, pure: directives and ages in, a tagged verdict out (RFC 9111 §4, RFC 5861).
 * Ages and lifetimes are in seconds, as the protocol counts them.
 */

import { seconds, type Directives } from '../http/cache-control.ts';
import { isServerError } from '../http/status.ts';

export interface Freshness {
  /** Current age of the stored response (§4.2.3). */
  readonly age: number;
  /** Its freshness lifetime (§4.2.1): s-maxage, max-age, Expires, or a heuristic; 0 for no-cache. */
  readonly lifetime: number;
}

export type Verdict =
  /** Fresh and acceptable to this request: serve it. */
  | { readonly kind: 'fresh' }
  /** Stale, but the client said it accepts that (max-stale): serve it. */
  | { readonly kind: 'stale-acceptable' }
  /** Stale within stale-while-revalidate: serve it now, revalidate in the background. */
  | { readonly kind: 'stale-while-revalidate' }
  /** Validate with the origin first. */
  | { readonly kind: 'revalidate'; readonly reason: 'stale' | 'request' };

const FRESH: Verdict = { kind: 'fresh' };
const STALE_ACCEPTABLE: Verdict = { kind: 'stale-acceptable' };
const SWR: Verdict = { kind: 'stale-while-revalidate' };
const REVALIDATE_STALE: Verdict = { kind: 'revalidate', reason: 'stale' };
const REVALIDATE_REQUEST: Verdict = { kind: 'revalidate', reason: 'request' };

export const isStale = (f: Freshness) => f.age >= f.lifetime;
const staleness = (f: Freshness) => f.age - f.lifetime;

/**
 * §4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an explicit
 * in-protocol directive (e.g., by a no-cache response directive, a must-revalidate response
 * directive, or an applicable s-maxage or proxy-revalidate response directive)."
 */
export function mayServeStale(response: Directives): boolean {
  return !(response.has('no-cache') || response.has('must-revalidate') || response.has('proxy-revalidate') || response.has('s-maxage'));
}

/**
 * May this stored response answer this request without contacting the origin (§4)?
 */
/** The directives a decision reads: the stored response's (the governing ones), the request's. */
export interface DecisionInput {
  readonly response: Directives;
  readonly request: Directives;
  /** A request with `Pragma: no-cache` and no Cache-Control (§5.4). */
  readonly pragmaNoCache?: boolean;
  /** Seconds a stale response may still be served when the origin fails, where no stale-if-error says otherwise. */
  readonly graceSeconds?: number;
}

export function decide(f: Freshness, { response, request, pragmaNoCache = false }: DecisionInput): Verdict {
  // §5.2.1.4: request no-cache: "a cache MUST NOT use a stored response to satisfy the request
  // without successfully validating it on the origin server".
  if (request.has('no-cache') || (pragmaNoCache && request.size === 0)) return REVALIDATE_REQUEST;
  // §5.2.1.1: max-age: the client does not want a response older than this.
  const maxAge = seconds(request, 'max-age');
  if (maxAge !== undefined && f.age > maxAge) return REVALIDATE_REQUEST;
  // §5.2.1.3: min-fresh: it must stay fresh for at least this long.
  const minFresh = seconds(request, 'min-fresh');
  if (minFresh !== undefined && f.lifetime - f.age < minFresh) return REVALIDATE_REQUEST;
  if (!isStale(f)) return FRESH;
  if (!mayServeStale(response)) return REVALIDATE_STALE;
  // §5.2.1.2: max-stale with no value: any staleness; with a value: at most that much.
  const maxStale = request.get('max-stale');
  if (maxStale === true) return STALE_ACCEPTABLE;
  const maxStaleSeconds = seconds(request, 'max-stale');
  if (maxStaleSeconds !== undefined && staleness(f) <= maxStaleSeconds) return STALE_ACCEPTABLE;
  // RFC 5861 §3: stale-while-revalidate=N: serve stale for up to N seconds while revalidating.
  const swr = seconds(response, 'stale-while-revalidate');
  if (swr !== undefined && staleness(f) <= swr) return SWR;
  return REVALIDATE_STALE;
}

/**
 * After the origin failed (5xx, refused, timed out), may the stale response be served (RFC 5861 §4)?
 * The response's or the request's stale-if-error window, or, when neither gives one, the configured
 * grace period.
 */
export function mayServeStaleOnError(f: Freshness, { response, request, graceSeconds = 0 }: DecisionInput): boolean {
  if (!mayServeStale(response)) return false;
  const late = staleness(f);
  const explicit = [seconds(response, 'stale-if-error'), seconds(request, 'stale-if-error')].filter((w) => w !== undefined);
  // An explicit stale-if-error window is the limit; the grace period applies only where none is given.
  const windows = explicit.length > 0 ? explicit : [graceSeconds];
  return windows.some((w) => w > 0 && late <= w);
}

export const isErrorStatus = isServerError;
