import type { OutgoingHttpHeaders } from 'node:http';
import type { Context, Reply, Variants } from '../pipeline/context.ts';
import { textReply } from '../pipeline/reply.ts';
import { evaluatePreconditions, ifRangeHolds, parseRange } from '../http/conditional.ts';
import { notModifiedHeaders } from '../http/not-modified.ts';
import { contentRange, unsatisfiableRange } from '../http/range.ts';
import type { Found } from './entries.ts';
import type { StoredView } from './engine.ts';
import { appendCacheStatus } from './status.ts';

export interface ServeInput {
  readonly ctx: Context;
  readonly found: Found;
  readonly view: StoredView;
  /** Current age in seconds; undefined for a response just received from the origin for this request. */
  readonly age: number | undefined;
  /** Our Cache-Status entry. */
  readonly cacheStatus: string;
  /** Encoded forms of the body, for the compression stage (stored 200s, GET and HEAD). */
  readonly variants?: Variants;
}

/**
 * A response just stored, answered with the stored bytes in one piece instead of the origin's
 * stream, with the record's variants (asked of `variantsOf` for a 200 only), so the compression
 * stage encodes once, whole, and keeps the encoding for the next request.
 */
export function justStoredReply(saved: Found, clientHeaders: OutgoingHttpHeaders, cacheStatus: string, variantsOf: (found: Found) => Variants): Reply {
  const status = saved.meta.status;
  return { status, headers: { ...clientHeaders, 'content-length': saved.body.length, 'cache-status': cacheStatus }, body: saved.body, variants: status === 200 ? variantsOf(saved) : undefined };
}

/**
 * The reply made from a stored response: its fields (hidden ones removed), Age (RFC 9111 §5.1:
 * the current age in whole seconds) and Cache-Status; then, as the origin would have, the
 * client's own preconditions (RFC 9110 §13.2.2, evaluated only on a 2xx, §13.2.1), HEAD, and a
 * single byte range from a stored 200 (RFC 9110 §14).
 */
export function storedReply({ ctx, found, view, age, cacheStatus, variants }: ServeInput): Reply {
  const body = found.body;
  const status = found.meta.status;
  const headers: OutgoingHttpHeaders = { ...view.clientHeaders };
  // §5.1: "The presence of an Age header field implies that the response was not generated or
  // validated by the origin server for this request."
  if (age !== undefined) headers.age = String(Math.floor(age));
  headers['cache-status'] = appendCacheStatus(headers['cache-status'], cacheStatus);

  if (status >= 200 && status < 300 && hasPreconditions(ctx.headers)) {
    // §4.3.2: If-Modified-Since is compared with Last-Modified, or with Date when there is none.
    const precondition = evaluatePreconditions(ctx.headers, view.validators);
    if (precondition === 'not-modified') return { status: 304, headers: notModifiedHeaders(headers), body: null, variants };
    if (precondition === 'failed') return textReply(412, 'Precondition Failed', { 'cache-status': headers['cache-status'] as string });
  }

  // RFC 9110 §8.6: no Content-Length on a 204.
  if (status !== 204) headers['content-length'] = body.length;
  if (ctx.method === 'HEAD') return { status, headers, body: null, variants };
  const range = ctx.headers.range;
  const ifRange = ctx.headers['if-range'];
  if (status === 200 && range !== undefined && ifRangeHolds(Array.isArray(ifRange) ? ifRange[0] : ifRange, view.facts)) {
    const decision = parseRange(range, body.length);
    if (decision.kind === 'partial') {
      headers['content-range'] = contentRange(decision.start, decision.end, body.length);
      headers['content-length'] = decision.end - decision.start + 1;
      return { status: 206, headers, body: body.subarray(decision.start, decision.end + 1) };
    }
    if (decision.kind === 'unsatisfiable') return unsatisfiableRange(body.length, { 'cache-status': headers['cache-status'] as string });
  }
  return { status, headers, body, variants };
}

/** Whether the request carries any precondition (most hits carry none: no evaluation, no allocation). */
const hasPreconditions = (h: Context['headers']): boolean =>
  h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined || h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined;

/** §5.2.1.7 only-if-cached with nothing usable stored: "respond ... with a 504 (Gateway Timeout)". */
export function onlyIfCachedReply(cacheStatus: string): Reply {
  return textReply(504, 'Gateway Timeout: not in cache (only-if-cached)', { 'cache-status': cacheStatus });
}
