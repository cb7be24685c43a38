import type { IncomingHttpHeaders } from 'node:http';
import { invalidSeconds, parseCacheControlField, parseSurrogateControl, parseTargetedField, seconds, type Directives, type FieldValue } from '../http/cache-control.ts';
import { parseHttpDate } from '../http/dates.ts';
import { HEURISTICALLY_CACHEABLE } from '../http/status.ts';
import { varyNames } from './key.ts';

/**
 * The cache's policy, pure: what may be stored, for how long it is fresh, how old it is, how long
 * a store keeps it. Functions of the response's header fields, the request, and times passed in
 * (ms since the epoch); nothing here reads a clock.
 *
 * http-cache-semantics used to answer these questions. Every piece Outpost used was wrong for a
 * shared CDN cache, so each is replaced here: directive names compared case-sensitively (a
 * `Private` response was stored), several Cache-Control lines crashed it, only a fixed list of
 * statuses could be stored even with explicit freshness (RFC 9111 §3 allows any final status),
 * Set-Cookie forced max-age 0, Expires and Age were read with Date.parse / parseInt (`UTC`
 * dates and `Age: 7200.0` taken as valid), heuristics applied to requests with cookies, and it
 * knows no targeted fields (RFC 9213).
 */

/** One stored response: what the store keeps next to the body. JSON-able. */
export interface StoredResponse {
  readonly status: number;
  /** Response fields as stored: end-to-end only, without Set-Cookie unless kept, without our Cache-Status. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** When the request that produced it was sent, and when the response arrived (ms; §4.2.3). */
  readonly requestTime: number;
  readonly responseTime: number;
  /** Purge tags (Cache-Tag, Surrogate-Key). */
  readonly tags: readonly string[];
  /** Soft purge: from this time on the response is stale (it may still be revalidated or served stale). */
  readonly invalidatedAt?: number;
}

export interface PolicyOptions {
  /**
   * Targeted cache-control fields this cache obeys, lower-case, first present wins (RFC 9213 §2.2:
   * "select the first (in target list order) field with a valid, non-empty value ... and MUST
   * ignore the Cache-Control and Expires header fields in that response"). Each is a Structured
   * Field Dictionary, parsed strictly, except `surrogate-control`, which has its own older syntax.
   */
  readonly targeted: readonly string[];
  /** Fraction of (Date − Last-Modified) used as a heuristic lifetime (§4.2.2 suggests at most 10 %). */
  readonly heuristicFraction: number;
}

/** Our device token in Surrogate-Control targets and Surrogate-Capability (`max-age=60;outpost`). */
export const SURROGATE_DEVICE = 'outpost';

export type LifetimeSource = 's-maxage' | 'max-age' | 'expires' | 'heuristic' | 'none' | 'invalid';

/** What the policy reads from a response's fields, computed once per stored record. */
export interface ResponseFacts {
  /** The directives that govern this cache: a targeted field's when present, else Cache-Control. */
  readonly directives: Directives;
  /** The field the directives came from (`cache-control`, `cdn-cache-control`, ...). */
  readonly directivesFrom: string;
  /** Freshness lifetime in seconds (§4.2.1) and where it came from. */
  readonly lifetime: number;
  readonly lifetimeSource: LifetimeSource;
  /** Whether the lifetime is explicit (max-age, s-maxage, Expires) rather than heuristic or none. */
  readonly explicit: boolean;
  /** Date in ms (the receipt time when it is missing or invalid). */
  readonly date: number;
  readonly etag: string | undefined;
  /** Last-Modified in ms, when valid. */
  readonly lastModified: number | undefined;
}

/**
 * Reads a response's caching facts. `receivedAt` stands in for a missing or invalid Date
 * (RFC 9110 §6.6.1: a recipient with a clock assigns one).
 */
export interface ResponseInput {
  readonly status: number;
  readonly headers: Readonly<Record<string, FieldValue>>;
  /** When it arrived (ms): stands in for a missing or invalid Date. */
  readonly receivedAt: number;
}

export function responseFacts({ status, headers, receivedAt }: ResponseInput, options: PolicyOptions): ResponseFacts {
  let governing = parseCacheControlField(headers['cache-control']);
  let directivesFrom = 'cache-control';
  let targeted = false;
  for (const name of options.targeted) {
    const value = headers[name];
    if (value === undefined) continue;
    const parsed = name === 'surrogate-control' ? parseSurrogateControl(value, SURROGATE_DEVICE) : parseTargetedField(value);
    if (parsed === null || parsed.directives.size === 0) continue; // "a valid, non-empty value"
    governing = parsed;
    directivesFrom = name;
    targeted = true;
    break;
  }
  const cc = governing.directives;
  const date = parseHttpDate(headers.date) ?? receivedAt;
  const etag = typeof headers.etag === 'string' ? headers.etag : undefined;
  const lastModified = parseHttpDate(headers['last-modified']);
  // One literal with every field: the facts are kept with each stored record, and a spread of the
  // common fields would put the ones it adds in a property array of their own (40 B more per record).
  const facts = (lifetime: number, lifetimeSource: LifetimeSource, explicit: boolean): ResponseFacts =>
    ({ directives: cc, directivesFrom, date, etag, lastModified, lifetime, lifetimeSource, explicit });

  // §5.2.2.4 no-cache: "MUST NOT use the response to satisfy a subsequent request without
  // successful validation": stored with no freshness. A qualified no-cache="field" is treated the
  // same (§5.2.2.4 allows it: "a cache MAY ... treat as unqualified").
  const explicit = cc.has('s-maxage') || cc.has('max-age') || (!targeted && headers.expires !== undefined);
  if (cc.has('no-cache')) return facts(0, 'none', explicit);

  // §4.2.1: contradicting values ("more than one value present for a given directive") or a value
  // that is not a delta-seconds: the response is stale.
  const conflicting = governing.conflicting.has('s-maxage') || governing.conflicting.has('max-age') ||
    invalidSeconds(cc, 's-maxage') || invalidSeconds(cc, 'max-age');
  if (conflicting) return facts(0, 'invalid', explicit);

  // "If the cache is shared and the s-maxage response directive is present, use its value"
  const sMaxAge = seconds(cc, 's-maxage');
  if (sMaxAge !== undefined) return facts(sMaxAge, 's-maxage', explicit);
  // "If the max-age response directive is present, use its value"
  const maxAge = seconds(cc, 'max-age');
  if (maxAge !== undefined) return facts(maxAge, 'max-age', explicit);
  // "If the Expires response header field is present, use its value minus the value of the Date
  // response header field": targeted fields replace Expires too.
  if (!targeted && headers.expires !== undefined) {
    // §5.3: "A cache recipient MUST interpret invalid date formats, especially the value "0", as
    // representing a time in the past (i.e., "already expired")". Two different Expires lines are
    // no valid date either.
    const expires = parseHttpDate(headers.expires);
    const lifetime = expires === undefined ? 0 : Math.max(0, Math.floor((expires - date) / 1000));
    return facts(lifetime, expires === undefined ? 'invalid' : 'expires', explicit);
  }
  // §4.2.2: heuristic freshness, only for heuristically cacheable statuses (or `public`), from
  // Last-Modified: a fraction of the time since it last changed.
  if ((HEURISTICALLY_CACHEABLE.has(status) || cc.has('public')) && lastModified !== undefined && lastModified < date) {
    const lifetime = Math.floor(((date - lastModified) / 1000) * options.heuristicFraction);
    return facts(lifetime, 'heuristic', false);
  }
  return facts(0, 'none', false);
}

/**
 * The response's age when it arrived (§4.2.3), in seconds:
 *   apparent_age = max(0, response_time - date_value)
 *   response_delay = response_time - request_time
 *   corrected_age_value = age_value + response_delay
 *   corrected_initial_age = max(apparent_age, corrected_age_value)
 * An Age that is not a non-negative integer is ignored ("Age: 7200.0" is not one, §5.1); of a list,
 * the first member counts.
 */
export function initialAge(stored: Pick<StoredResponse, 'headers' | 'requestTime' | 'responseTime'>, date: number): number {
  const age = ageValue(stored.headers.age);
  const ageSeconds = age !== undefined ? Math.min(Number(age), 2 ** 31) : 0;
  const apparent = Math.max(0, (stored.responseTime - date) / 1000);
  const delay = Math.max(0, (stored.responseTime - stored.requestTime) / 1000);
  return Math.max(apparent, ageSeconds + delay);
}

/**
 * The Age a cache reads from `field` (§5.1): of several values (`Age: 7200, 0` or two lines) the
 * first, parameters ignored; undefined when that is no non-negative integer ("-5", "7200.0").
 */
export function ageValue(field: string | readonly string[] | number | undefined): string | undefined {
  const line = Array.isArray(field) ? field[0] : field;
  const first = typeof line === 'string' ? line.split(/[,;]/, 1)[0].trim() : undefined;
  return first !== undefined && /^\d+$/.test(first) ? first : undefined;
}

/** current_age = corrected_initial_age + resident_time (§4.2.3), in seconds. */
export const currentAge = (initial: number, responseTime: number, now: number): number =>
  initial + Math.max(0, now - responseTime) / 1000;

/** Statuses whose caching requirements this cache understands (for must-understand, §5.2.2.3). */
const UNDERSTOOD: ReadonlySet<number> = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501]);

export interface StoreRules {
  /** Store responses that set cookies (without the Set-Cookie field). */
  readonly storeSetCookie: boolean;
  /** Give heuristic freshness to responses for requests with Cookie or Authorization. */
  readonly heuristicWithCredentials: boolean;
}

export interface StorableInput {
  readonly requestHeaders: IncomingHttpHeaders;
  readonly requestDirectives: Directives;
  readonly status: number;
  readonly headers: Readonly<Record<string, FieldValue>>;
  readonly facts: ResponseFacts;
}

/**
 * Why a response to a GET must not be stored, or null when it may be (RFC 9111 §3, clause by
 * clause, plus the shared-cache rules of §3.5 and Outpost's own choices, each marked).
 */
export function whyNotStorable(input: StorableInput, rules: StoreRules): string | null {
  const { status, headers, facts, requestHeaders } = input;
  const cc = facts.directives;
  // §5.2.2.3 must-understand: store only statuses whose requirements are understood, and then
  // no-store is to be ignored.
  const mustUnderstand = cc.has('must-understand');
  if (mustUnderstand && !UNDERSTOOD.has(status)) return 'must-understand';
  // "the response status code is final" — and we do not store partial content (§3.3 is optional).
  if (status < 200) return 'interim';
  // RFC 9110 §15: a status outside 100-599 is invalid (treated like a 5xx by recipients).
  if (status > 599) return 'invalid-status';
  if (status === 206) return 'partial';
  if (status === 304) return 'not-modified';
  // "the no-store request directive is not present" (§5.2.1.5)
  if (input.requestDirectives.has('no-store')) return 'request-no-store';
  // "the no-store cache directive is not present in the response"
  if (cc.has('no-store') && !mustUnderstand) return 'no-store';
  // "if the cache is shared: the private response directive is either not present or allows a
  // shared cache to store a modified response" — a qualified private is treated as unqualified.
  if (cc.has('private')) return 'private';
  // §3.5: "if the cache is shared: the Authorization header field is not present in the request
  // ... or a response directive is present that explicitly allows shared caching"
  if (requestHeaders.authorization !== undefined && !(cc.has('public') || cc.has('s-maxage') || cc.has('must-revalidate'))) return 'authorization';
  // §4.1: "A stored response with a Vary header field value containing a member "*" always fails to match".
  if (varyNames(headers.vary as string | string[] | undefined) === '*') return 'vary-star';
  // Ours: a response that sets a cookie is personal unless the route says otherwise.
  if (headers['set-cookie'] !== undefined && !rules.storeSetCookie) return 'set-cookie';
  // "the response contains at least one of: a public response directive; ... an Expires header
  // field; a max-age response directive; ... an s-maxage response directive; ... a status code
  // that is defined as heuristically cacheable"
  if (!(facts.explicit || cc.has('public') || HEURISTICALLY_CACHEABLE.has(status))) return 'no-explicit-freshness';
  // Ours: heuristics never apply to what a client's credentials may have personalised
  // (`/account.php/x.css` with Last-Modified and no Cache-Control is cache deception bait).
  if (!facts.explicit && !cc.has('public') && !rules.heuristicWithCredentials &&
    (requestHeaders.cookie !== undefined || requestHeaders.authorization !== undefined)) return 'heuristic-with-credentials';
  return null;
}

/** Directives that add time a stored response stays useful after it is stale. */
export interface RetentionInput {
  readonly facts: ResponseFacts;
  /** Current age in seconds. */
  readonly age: number;
  /** Grace period in seconds (Varnish's grace: stale served while the origin is down). */
  readonly graceSeconds: number;
}

/** Kept past freshness for revalidation with validators: a 304 is cheaper than a full fetch. */
export const KEEP_WITH_VALIDATORS_S = 3600;

/**
 * How long a store keeps a response, in ms: what is left of its freshness, plus the longest of
 * the windows in which it may still be used stale (stale-while-revalidate, stale-if-error, grace)
 * and, when it has validators, an hour for conditional revalidation. 0: not worth storing.
 */
export function retentionMs({ facts, age, graceSeconds }: RetentionInput): number {
  const cc = facts.directives;
  const freshLeft = Math.max(0, facts.lifetime - age);
  const validators = facts.etag !== undefined || facts.lastModified !== undefined;
  const windows = Math.max(seconds(cc, 'stale-while-revalidate') ?? 0, seconds(cc, 'stale-if-error') ?? 0);
  // Immediately stale, nothing to validate with, no stale window of its own: every request goes
  // to the origin anyway, so storing it would only keep memory busy.
  if (freshLeft === 0 && !validators && windows === 0) return 0;
  return (freshLeft + Math.max(windows, graceSeconds, validators ? KEEP_WITH_VALIDATORS_S : 0)) * 1000;
}
