import type { IncomingHttpHeaders } from 'node:http';
import { parseHttpDate } from './dates.ts';

export { httpDate, parseHttpDate } from './dates.ts';

/**
 * Validators, preconditions and byte ranges for a file, pure: literal header values in, a decision
 * out. RFC 9110 §8.8 (validators), §13 (conditional requests), §14 (range requests).
 */

export interface Validators {
  /** A strong entity-tag, quoted: `"1a2b-18c3f0e2a41"`. */
  readonly etag: string;
  /** Last-Modified in ms since the epoch, whole seconds (what the HTTP-date carries). */
  readonly lastModified: number;
}

/**
 * Validators for a file. The ETag is `"<size hex>-<mtime ms hex>"`: strong, because the bytes
 * change with size or mtime. No inode, so identical copies on several nodes share it (Apache 2.4
 * dropped INode from its default for this; nginx never used it). Last-Modified is never later than
 * `now`: "An origin server with a clock MUST NOT generate a Last-Modified date that is later than
 * the server's time of message origination" (RFC 9110 §8.8.2.1).
 */
export function fileValidators(size: number, mtimeMs: number, now: number): Validators {
  const mtime = Math.floor(mtimeMs);
  return {
    etag: `"${size.toString(16)}-${mtime.toString(16)}"`,
    lastModified: Math.floor(Math.min(mtime, now) / 1000) * 1000,
  };
}

export type Precondition = 'proceed' | 'not-modified' | 'failed';

/** What a stored or generated representation offers to compare against; either may be missing. */
export interface ConditionalTarget {
  readonly etag?: string;
  /**
   * Last-Modified in ms. A cache evaluating If-Modified-Since without one uses the stored
   * response's Date, or when it was received (RFC 9111 §4.3.2): pass that here.
   */
  readonly lastModified?: number;
}

/**
 * RFC 9110 §13.2.2, for GET and HEAD (the only methods answered from files or the cache):
 * 1. If-Match present: false → 412 (strong comparison, §13.1.1);
 * 2. else If-Unmodified-Since present: false → 412 (§13.1.4);
 * 3. If-None-Match present: false → 304 for GET/HEAD (weak comparison, §13.1.2);
 * 4. else If-Modified-Since present: false → 304 (§13.1.3).
 * A date that does not parse is ignored ("MUST ignore ... not a valid HTTP-date"), and so is a
 * date condition when there is no date to compare with. Only for a representation that exists
 * with a 2xx: "A server MUST ignore all received preconditions if its response to the same request
 * without those conditions ... would have been a status code other than a 2xx" (§13.2.1) — the
 * caller checks that.
 */
export function evaluatePreconditions(headers: IncomingHttpHeaders, v: ConditionalTarget): Precondition {
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) {
    if (!matchesTagList(ifMatch, v.etag, true)) return 'failed';
  } else if (v.lastModified !== undefined) {
    const since = parseHttpDate(headers['if-unmodified-since']);
    if (since !== undefined && v.lastModified > since) return 'failed';
  }
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (matchesTagList(ifNoneMatch, v.etag, false)) return 'not-modified';
  } else if (v.lastModified !== undefined) {
    const since = parseHttpDate(headers['if-modified-since']);
    if (since !== undefined && v.lastModified <= since) return 'not-modified';
  }
  return 'proceed';
}

const ENTITY_TAG = /(W\/)?"([^"]*)"/g;

/**
 * Whether an If-Match / If-None-Match value (`*` or a list of entity-tags) matches `etag`.
 * `*` matches any current representation, and there is one. Strong comparison: both tags strong
 * and equal; weak comparison: the opaque tags equal (§8.8.3.2). Junk between tags is skipped.
 */
export function matchesTagList(value: string | string[], etag: string | undefined, strong: boolean): boolean {
  const text = Array.isArray(value) ? value.join(', ') : value;
  if (text.trim() === '*') return true;
  if (etag === undefined) return false;
  const weak = etag.startsWith('W/');
  if (strong && weak) return false;
  // An origin's malformed tag (unquoted, `w/"x"`) still matches itself byte for byte.
  if (!etag.endsWith('"') || !(weak || etag.startsWith('"'))) return text.split(',').some((t) => t.trim() === etag) && !(strong && /^w\//i.test(etag));
  const opaque = etag.slice(weak ? 3 : 1, -1);
  for (const m of text.matchAll(ENTITY_TAG)) {
    if (m[2] === opaque && !(strong && m[1] !== undefined)) return true;
  }
  return false;
}

export type RangeDecision =
  /** Send the whole representation (no Range, malformed, several ranges, another unit). */
  | { readonly kind: 'full' }
  /** One satisfiable range, `end` inclusive: 206. */
  | { readonly kind: 'partial'; readonly start: number; readonly end: number }
  /** 416, with Content-Range naming the size (unsatisfied-range, §14.4). */
  | { readonly kind: 'unsatisfiable' };

const FULL: RangeDecision = { kind: 'full' };
const UNSATISFIABLE: RangeDecision = { kind: 'unsatisfiable' };
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * A Range header against a representation of `size` bytes (RFC 9110 §14.1.1, §14.2):
 * - `a-b`, `a-`, `-n`; last-pos beyond the end is clamped;
 * - "A byte-range-spec is invalid if the last-pos value is present and less than the first-pos":
 *   the header is ignored, like any that does not parse ("A server MAY ignore the Range header");
 * - unsatisfiable when first-pos ≥ size or the suffix length is 0 → 416;
 * - several ranges: the whole 200. Allowed by §14.2, and it leaves no multipart/byteranges
 *   amplification to abuse; clients that ask for several ranges accept a 200.
 * - an empty file and `-n`: the whole (empty) 200, since no 206 can describe zero bytes.
 */
export function parseRange(value: string | undefined, size: number): RangeDecision {
  if (value === undefined) return FULL;
  const eq = value.indexOf('=');
  // range-unit is case-insensitive (§14.1).
  if (eq === -1 || value.slice(0, eq).trim().toLowerCase() !== 'bytes') return FULL;
  // Empty list elements are allowed (§5.6.1): `bytes=0-1,` is one range.
  const specs = value.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length !== 1) return FULL;
  const m = RANGE_SPEC.exec(specs[0]);
  if (m === null || (m[1] === '' && m[2] === '')) return FULL;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return UNSATISFIABLE;
    if (size === 0) return FULL;
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const last = m[2] === '' ? Infinity : Number(m[2]);
  if (last < start) return FULL;
  if (start >= size) return UNSATISFIABLE;
  return { kind: 'partial', start, end: Math.min(last, size - 1) };
}

/**
 * If-Range (§13.1.5): the range applies only when the validator still matches; else send the whole
 * 200. An entity-tag must match strongly (a weak tag never does); a date must equal Last-Modified
 * exactly. Absent: true.
 */
export function ifRangeHolds(value: string | undefined, v: ConditionalTarget): boolean {
  if (value === undefined) return true;
  const trimmed = value.trim();
  // "A valid entity-tag can be distinguished from a valid HTTP-date by examining the first three
  // characters for a DQUOTE."
  // A weak entity-tag never matches: If-Range needs the strong comparison.
  if (trimmed.startsWith('W/"')) return false;
  if (trimmed.startsWith('"')) return v.etag !== undefined && trimmed === v.etag;
  const date = parseHttpDate(trimmed);
  return date !== undefined && date === v.lastModified;
}

