import type { Encoding } from '../pipeline/context.ts';

/**
 * Accept-Encoding negotiation, RFC 9110 §12.5.3. Pure: a header value in, a choice out.
 *
 * - "A server tests whether a content coding for a given representation is acceptable using these
 *   rules: 1. If no Accept-Encoding header field is in the request, any content coding is
 *   considered acceptable" — we still send identity then, like every server and CDN: a client that
 *   says nothing may decode nothing.
 * - "2. If the representation has no content coding, then it is acceptable by default unless
 *   specifically excluded by the Accept-Encoding header field stating either "identity;q=0" or
 *   "*;q=0" without a more specific entry for "identity"."
 * - "3. If the representation's content coding is one of the content codings listed in the
 *   Accept-Encoding field value, then it is acceptable unless it is accompanied by a qvalue of 0."
 *   `*` stands for every coding not listed (§12.5.3: "matches any available content coding not
 *   explicitly listed").
 * - "the acceptable content coding with the highest non-zero qvalue is preferred"; equal q-values
 *   are broken by our own order (config `compression.encodings`).
 * - "An Accept-Encoding header field with a field value that is empty implies that the user agent
 *   does not want any content coding in response."
 * - Identity listed with a higher q than every coding wins (`identity, gzip;q=0.5`); identity that
 *   is only acceptable by default loses every tie, so `gzip;q=0.1` still gets gzip.
 * - Codings are case-insensitive tokens (§8.4.1); "x-gzip" is gzip (§8.4.1.3: "A recipient SHOULD
 *   consider "x-gzip" to be equivalent to "gzip""). Codings we do not make (deflate, compress) are
 *   ignored. An element whose weight is not a qvalue (§12.4.2) is ignored as a whole: we do not act
 *   on what we cannot read. The first of duplicate entries counts.
 */

export interface Choice {
  /** The coding to send, or null: identity is preferred, or nothing we make is acceptable. */
  readonly coding: Encoding | null;
  /** Whether a response without content coding is acceptable (false with identity;q=0 or *;q=0). */
  readonly identity: boolean;
}

/** Identity acceptable only by default: below any qvalue a client can write (the least is 0.001). */
const DEFAULT_IDENTITY = 0.0001;
const IDENTITY_ONLY: Choice = Object.freeze({ coding: null, identity: true });
// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (§12.4.2)
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;
const ALIASES: Readonly<Record<string, string>> = { 'x-gzip': 'gzip' };

/** Parses one Accept-Encoding value into coding → q (lower-case names, '*' and 'identity' included). */
export function parseAcceptEncoding(value: string): Map<string, number> {
  const weights = new Map<string, number>();
  for (const element of value.split(',')) {
    const semi = element.indexOf(';');
    const raw = (semi === -1 ? element : element.slice(0, semi)).trim().toLowerCase();
    if (raw === '') continue; // empty list elements are allowed (§5.6.1)
    const name = ALIASES[raw] ?? raw;
    let q = 1;
    if (semi !== -1) {
      const weight = qParameter(element.slice(semi + 1));
      if (weight === undefined) continue;
      q = weight;
    }
    if (!weights.has(name)) weights.set(name, q);
  }
  return weights;
}

/** The `q` parameter of `;q=0.5;foo=bar` (case-insensitive name), 1 without one, undefined when invalid. */
function qParameter(params: string): number | undefined {
  for (const param of params.split(';')) {
    const eq = param.indexOf('=');
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue;
    const value = param.slice(eq + 1).trim();
    return QVALUE.test(value) ? Number(value) : undefined;
  }
  return 1;
}

/** The choice for one parsed value, given our preference order. */
export function choose(weights: ReadonlyMap<string, number>, preference: readonly Encoding[]): Choice {
  const star = weights.get('*');
  let coding: Encoding | null = null;
  let best = 0;
  for (const encoding of preference) {
    const q = weights.get(encoding) ?? star ?? 0;
    if (q > best) { // strictly greater: an earlier preference keeps a tie
      best = q;
      coding = encoding;
    }
  }
  const identity = weights.get('identity') ?? star ?? DEFAULT_IDENTITY;
  return { coding: identity > best ? null : coding, identity: identity > 0 };
}

/** Distinct Accept-Encoding values kept parsed: browsers send a handful, so a small table hits. */
const CACHE_ENTRIES = 256;
/** Longer values are parsed each time rather than let one client fill the table with junk. */
const CACHE_MAX_LENGTH = 256;

/**
 * A negotiator for one preference order: header value in, Choice out. The hot path calls it on
 * every response, so choices are kept per distinct header string (bounded; the oldest goes first).
 */
export function createNegotiator(preference: readonly Encoding[]): (header: string | string[] | undefined) => Choice {
  const order = Object.freeze([...preference]);
  const cache = new Map<string, Choice>();
  return (header) => {
    if (header === undefined) return IDENTITY_ONLY;
    const value = typeof header === 'string' ? header : header.join(',');
    const hit = cache.get(value);
    if (hit !== undefined) return hit;
    const choice = Object.freeze(choose(parseAcceptEncoding(value), order));
    if (value.length <= CACHE_MAX_LENGTH) {
      if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
      cache.set(value, choice);
    }
    return choice;
  };
}
