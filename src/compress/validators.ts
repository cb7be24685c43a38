import type { Encoding } from '../pipeline/context.ts';

/**
 * Entity-tags of encoded responses, and the Vary they need. Pure.
 *
 * "a server might use a distinct entity-tag for each content coding" (RFC 9110 §8.8.3.3, with
 * gzip as the example): the bytes differ, so a strong validator must. Outpost's form is a suffix
 * inside the quotes, as Caddy does: `"abc"` → `"abc-br"`, `W/"abc"` → `W/"abc-br"`.
 *
 * Inner stages (static files, the cache, the origin) only know the identity tag. On the way in,
 * If-None-Match gets the identity form next to every suffixed tag (`"abc-br"` → `"abc-br", "abc"`),
 * so they answer 304 for either; on the way out the 304 gets the suffix back. Only If-None-Match is
 * widened: If-Match and If-Range compare strongly against the bytes the client holds, and identity
 * bytes are not br bytes (a resumed download must not mix them).
 *
 * Fast and high-quality encodings of one body share the tag: ranges are never served from an
 * encoded body (only identity has Accept-Ranges), so no strong comparison depends on those bytes.
 */

const ENTITY_TAG = /(W\/)?"([^"]*)"/g;

/** The tag with the coding's suffix inside the quotes; a value that is not an entity-tag is kept. */
export function suffixTag(etag: string, coding: Encoding): string {
  return etag.endsWith('"') && etag.length >= 2 ? `${etag.slice(0, -1)}-${coding}"` : etag;
}

/** The opaque part of an entity-tag (`W/"abc"` → `abc`), or undefined when it is not one. */
export function opaqueTag(etag: string): string | undefined {
  const start = etag.startsWith('W/"') ? 3 : etag.startsWith('"') ? 1 : -1;
  return start !== -1 && etag.length > start && etag.endsWith('"') ? etag.slice(start, -1) : undefined;
}

/**
 * If-None-Match with the identity form added after each tag that carries one of our suffixes, or
 * undefined when nothing changes (so the request passes on untouched).
 */
export function widenIfNoneMatch(value: string, codings: readonly Encoding[]): string | undefined {
  let added = '';
  for (const m of value.matchAll(ENTITY_TAG)) {
    const base = withoutSuffix(m[2], codings);
    if (base !== undefined) added += `, ${m[1] ?? ''}"${base}"`;
  }
  return added === '' ? undefined : value + added;
}

function withoutSuffix(opaque: string, codings: readonly Encoding[]): string | undefined {
  for (const coding of codings) {
    if (opaque.length > coding.length + 1 && opaque.endsWith(coding) && opaque[opaque.length - coding.length - 1] === '-') {
      return opaque.slice(0, -coding.length - 1);
    }
  }
  return undefined;
}

/**
 * Weak comparison of an If-None-Match value (RFC 9110 §13.1.2: "A recipient MUST use the weak
 * comparison function when comparing entity tags for If-None-Match") against candidate tags: the
 * first candidate that the client listed (`*` lists them all), or undefined.
 */
export function matchingTag(value: string, candidates: readonly string[]): string | undefined {
  if (value.trim() === '*') return candidates[0];
  const listed = new Set<string>();
  for (const m of value.matchAll(ENTITY_TAG)) listed.add(m[2]);
  return candidates.find((tag) => {
    const opaque = opaqueTag(tag);
    return opaque !== undefined && listed.has(opaque);
  });
}

/**
 * The ETag of a 304 that an inner stage answered with the identity tag. "the server generating a
 * 304 response MUST generate any of the following header fields that would have been sent in a
 * 200 (OK) response to the same request: ... ETag, and Vary" (RFC 9110 §15.4.5). A 304 does not
 * say whether its 200 would be encoded; the client's own tags do: if it presented one of our
 * suffixed forms it holds an encoded copy, so the 200 would be encoded with `coding` (when one is
 * acceptable now) or, failing that, carry the form it presented. Otherwise the identity tag.
 */
export function tagFor304(ifNoneMatch: string, etag: string, coding: Encoding | null, codings: readonly Encoding[]): string {
  if (ifNoneMatch.trim() === '*') return etag;
  const encoded = codings.map((c) => suffixTag(etag, c));
  const presented = matchingTag(ifNoneMatch, encoded);
  if (presented === undefined) return etag;
  return coding !== null ? suffixTag(etag, coding) : presented;
}

/** Vary with Accept-Encoding merged in (kept as is when listed already or `*`). */
export function varyWithAcceptEncoding(vary: unknown): string {
  if (vary === undefined || vary === null || vary === '') return 'Accept-Encoding';
  const text = Array.isArray(vary) ? vary.join(', ') : String(vary);
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === 'accept-encoding' || name === '*') return text;
  }
  return `${text}, Accept-Encoding`;
}
