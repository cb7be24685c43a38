/**
 * Cache-Control (RFC 9111 §5.2) and the fields that share its syntax (CDN-Cache-Control and other
 * targeted fields, RFC 9213), parsed once into a map. Pure.
 *
 * - "Cache directives are identified by a token, to be compared case-insensitively" (§5.2): names
 *   are lower-cased, so `Private` and `NO-STORE` count.
 * - Several field lines are one comma-separated list (RFC 9110 §5.3); Node hands them over as an
 *   array or already joined.
 * - Values are a token or a quoted-string; a quoted value may hold commas and escaped quotes
 *   (`no-cache="set-cookie, x-a"`), so the list is tokenized, never split on commas.
 * - "When there is more than one value present for a given directive (e.g., two Expires header
 *   field lines or multiple Cache-Control: max-age directives), either the first occurrence should
 *   be used or the response should be considered stale" (§4.2.1): the first value is kept and a
 *   name whose later values differ is listed in `conflicting`, so freshness can take the safe reading.
 */

export type Directives = ReadonlyMap<string, string | true>;

export interface ParsedCacheControl {
  readonly directives: Directives;
  /** Names that appeared again with another value. */
  readonly conflicting: ReadonlySet<string>;
}

export type FieldValue = string | string[] | number | undefined;

const NONE: ParsedCacheControl = { directives: new Map(), conflicting: new Set() };

/** One field value as text: lines joined with commas (RFC 9110 §5.3). */
export function fieldText(value: FieldValue): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.join(', ');
  return String(value);
}

const isSpace = (c: number) => c === 0x20 || c === 0x09;

/**
 * Parsed values by their text. A few values come back on most responses and requests ("public,
 * max-age=300", "no-cache"), and a stored response keeps its parsed directives for as long as it
 * is stored: one shared Map per distinct value instead of a Map and its name strings (~250 B) per
 * stored record. Results are read-only (Directives is a ReadonlyMap). Bounded: values up to
 * MEMO_TEXT characters, and the memo starts over when it holds MEMO_SIZE (a client sending a new
 * value with every request empties it every 1,000 requests; the common values are back at their
 * next use).
 */
const parsedByText = new Map<string, ParsedCacheControl>();
const MEMO_SIZE = 1000;
const MEMO_TEXT = 256;

export function parseCacheControlField(value: FieldValue): ParsedCacheControl {
  const text = fieldText(value);
  if (text === undefined || text === '') return NONE; // most requests: nothing to parse, no allocation
  const known = parsedByText.get(text);
  if (known !== undefined) return known;
  const parsed = parseText(text);
  if (text.length <= MEMO_TEXT) {
    if (parsedByText.size >= MEMO_SIZE) parsedByText.clear();
    parsedByText.set(text, parsed);
  }
  return parsed;
}

function parseText(text: string): ParsedCacheControl {
  const directives = new Map<string, string | true>();
  let conflicting: Set<string> | undefined;
  let i = 0;
  const n = text.length;
  while (i < n) {
    // Skip separators and whitespace between list members.
    while (i < n && (text.charCodeAt(i) === 0x2c || isSpace(text.charCodeAt(i)))) i++;
    if (i >= n) break;
    const nameStart = i;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x3d /* = */ || c === 0x2c || isSpace(c)) break;
      i++;
    }
    const name = text.slice(nameStart, i).toLowerCase();
    // `cache-directive = token [ "=" ( token / quoted-string ) ]`: no whitespace around "=", so
    // `max-age =60` is a max-age without a value (invalid) and `max-age= 60` one with an empty value.
    let value: string | true = true;
    if (i < n && text.charCodeAt(i) === 0x3d) {
      i++;
      if (i < n && text.charCodeAt(i) === 0x22 /* " */) {
        i++;
        let out = '';
        while (i < n && text.charCodeAt(i) !== 0x22) {
          if (text.charCodeAt(i) === 0x5c /* \ */ && i + 1 < n) i++;
          out += text[i];
          i++;
        }
        i++; // closing quote (or end of an unterminated string)
        value = out;
      } else {
        const valueStart = i;
        while (i < n && text.charCodeAt(i) !== 0x2c && !isSpace(text.charCodeAt(i))) i++;
        value = text.slice(valueStart, i);
      }
    }
    // Anything else up to the next comma is junk in this member: skip it.
    while (i < n && text.charCodeAt(i) !== 0x2c) i++;
    if (name === '') continue;
    const prior = directives.get(name);
    if (prior === undefined) directives.set(name, value);
    else if (prior !== value) (conflicting ??= new Set()).add(name);
  }
  return { directives, conflicting: conflicting ?? NONE.conflicting };
}

/** The directives alone (request Cache-Control, where conflicts change nothing). */
export const parseCacheControl = (value: FieldValue): Directives => parseCacheControlField(value).directives;

/**
 * A delta-seconds value (§1.2.2), or undefined when absent or not a non-negative integer.
 * "If a cache receives a delta-seconds value greater than the greatest integer it can represent,
 * or if any of its subsequent calculations overflows, the cache MUST consider the value to be
 * 2147483648 (2^31) or the greatest positive integer it can conveniently represent."
 */
export function seconds(directives: Directives, name: string): number | undefined {
  const value = directives.get(name);
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return undefined;
  return Math.min(Number(value), 2 ** 31);
}

/** Whether `name` is present with something other than a valid delta-seconds (`max-age=-1`, `max-age=x`). */
export function invalidSeconds(directives: Directives, name: string): boolean {
  return directives.has(name) && seconds(directives, name) === undefined;
}

const MENTIONS_NO_TRANSFORM = /no-transform/i;

/**
 * Whether a Cache-Control value lists `no-transform` (RFC 9111 §5.2.1.6, §5.2.2.6). Asked on every
 * compressible response: a substring test first, the full parse only when the word is there.
 */
export function hasNoTransform(value: FieldValue): boolean {
  const text = fieldText(value);
  return text !== undefined && MENTIONS_NO_TRANSFORM.test(text) && parseCacheControl(text).has('no-transform');
}

/**
 * A targeted cache-control field (RFC 9213 §2.1: CDN-Cache-Control and the like): a Structured
 * Field Dictionary (RFC 8941 §4.2.2), parsed strictly. "If a targeted field ... cannot be parsed
 * ... [the cache] MUST ignore that field" (§2.2): any syntax error gives null, and the cache falls
 * back to Cache-Control. A member whose value has the wrong type for its directive (a string
 * `max-age`) is dropped; booleans are directives without a value (`?0` means absent); parameters
 * are ignored.
 */
export function parseTargetedField(value: FieldValue): ParsedCacheControl | null {
  const text = fieldText(value);
  if (text === undefined) return null;
  const directives = new Map<string, string | true>();
  let i = 0;
  const n = text.length;
  const skipOws = () => { while (i < n && isSpace(text.charCodeAt(i))) i++; };
  skipOws();
  while (i < n) {
    const key = /^[a-z*][a-z0-9_\-.*]*/.exec(text.slice(i, i + 256))?.[0];
    if (key === undefined) return null;
    i += key.length;
    let item: string | true | null = true; // null: a value of no use to a cache-control directive
    let integer = false;
    if (text[i] === '=') {
      i++;
      const rest = text.slice(i);
      const m = /^(-?\d{1,15}(?:\.\d{1,3})?)|^("(?:[^"\\]|\\["\\])*")|^([A-Za-z*][!#$%&'*+\-.^_`|~:/\w]*)|^(\?[01])|^(:[A-Za-z0-9+/=]*:)/.exec(rest);
      if (m === null) return null; // inner lists and anything else: not a cache directive
      i += m[0].length;
      if (m[1] !== undefined) {
        integer = !m[1].includes('.');
        item = integer ? m[1] : null;
      } else if (m[2] !== undefined) item = m[2].slice(1, -1).replace(/\\(["\\])/g, '$1');
      else if (m[3] !== undefined) item = m[3];
      else if (m[4] !== undefined) item = m[4] === '?1' ? true : null;
      else item = null;
    }
    // Parameters (;a=1) belong to the member and say nothing to this cache.
    while (text[i] === ';') {
      i++;
      skipOws();
      const param = /^[a-z*][a-z0-9_\-.*]*(?:=(?:-?\d{1,15}(?:\.\d{1,3})?|"(?:[^"\\]|\\["\\])*"|[A-Za-z*][!#$%&'*+\-.^_`|~:/\w]*|\?[01]|:[A-Za-z0-9+/=]*:))?/.exec(text.slice(i));
      if (param === null) return null;
      i += param[0].length;
    }
    // Delta-seconds directives must be integers (RFC 9213 §2.1: "a String ... MUST be ignored").
    const numeric = key === 'max-age' || key === 's-maxage' || key === 'stale-while-revalidate' || key === 'stale-if-error';
    if (numeric && !(integer && typeof item === 'string' && /^\d+$/.test(item))) item = null;
    if (item !== null) directives.set(key, item); // "the last instance wins" in a Dictionary (RFC 8941 §4.2.2)
    else directives.delete(key);
    skipOws();
    if (i >= n) break;
    if (text[i] !== ',') return null;
    i++;
    skipOws();
    if (i >= n) return null; // a trailing comma is a parse error
  }
  return { directives, conflicting: NONE.conflicting };
}

/**
 * Surrogate-Control (W3C Edge Architecture 1.0): Cache-Control-like directives for surrogates,
 * each optionally targeted (`max-age=60;outpost`). Only untargeted directives and those targeted
 * at `device` count. `max-age=N+M` grants N seconds of freshness and M more in which the stale
 * response may be served when the origin fails (read as stale-if-error=M).
 */
export function parseSurrogateControl(value: FieldValue, device: string): ParsedCacheControl {
  const text = fieldText(value);
  if (text === undefined) return NONE;
  const kept: string[] = [];
  for (const member of text.split(',')) {
    const semicolon = member.indexOf(';');
    if (semicolon !== -1 && member.slice(semicolon + 1).trim().toLowerCase() !== device) continue;
    const directive = (semicolon === -1 ? member : member.slice(0, semicolon)).trim();
    const plus = /^max-age\s*=\s*(\d+)\+(\d+)$/i.exec(directive);
    if (plus !== null) kept.push(`max-age=${plus[1]}`, `stale-if-error=${plus[2]}`);
    else if (directive !== '') kept.push(directive);
  }
  return parseCacheControlField(kept.join(', '));
}
