import { matchesTagList } from '../http/conditional.ts';
import type { Encoding } from '../pipeline/context.ts';

/**
 * Entity-tags of encoded responses, and the Vary they need. Pure.
 *
 * "a server might use a distinct entity-tag for each content coding" (RFC 9110 §8.8.3.3, with gzip
 * as the example), and a strong validator "changes value whenever a change occurs to the
 * representation data that would be observable in the content of a 200 (OK) response to GET"
 * (§8.8.1). So a coded response's tag names its exact bytes: the identity tag with `-<token>`
 * inside the quotes, `"abc"` → `"abc-br11"`, `W/"abc"` → `W/"abc-gzip4"` (Caddy's form, with the
 * level). The token comes with the bytes (`StoredVariant.token`): `<coding><level>` for bodies
 * Outpost encodes (`br2` fast, `br11` high quality: encoders.ts `tokenOf`), and for a static file's
 * precompressed sibling its coding, size and mtime (`br.1f4.18c3f0e2a41`, static/serve.ts). The
 * fast Brotli body sent first and the Brotli 11 body that later replaces it are different bytes
 * with different tags.
 *
 * Inner stages (static files, the cache, the origin) only know the identity tag, and a stage calls
 * `next` once: a 304 from them cannot be turned back into the 200 a client needs when the bytes its
 * tag names are gone. So If-None-Match is widened (the identity form added next to the tag,
 * `"abc-br11"` → `"abc-br11", "abc"`) only for tokens that are final while the identity tag holds:
 * the high-quality level of the coding the client gets now. Upgrades go one way, from fast to high,
 * and the same encoder makes the same bytes of the same input again. Every other tag of ours (a
 * fast body that an upgrade may have replaced, a sibling that may have been rewritten, another
 * coding, the level-less `"abc-br"` of earlier versions) reaches the inner stage as it is, matches
 * nothing there, and the compression stage compares it with the exact tag of the 200 it builds.
 *
 * Only If-None-Match is widened: If-Match and If-Range compare strongly against the bytes the
 * client holds, and identity bytes are not br bytes (a resumed download must not mix them).
 *
 * `Vary: Accept-Encoding` goes on a response only where a coded representation could be chosen
 * (the stage decides where; `varyWithAcceptEncoding` merges it in).
 */

const ENTITY_TAG = /(W\/)?"([^"]*)"/g;
/** What a token may hold: letters, digits and dots, so a suffixed tag stays one plain list element. */
const TOKEN = /^[0-9A-Za-z.]{1,64}$/;

/** Whether `token` can name bytes in an ETag suffix (a holder's token is checked before it is sent). */
export const isToken = (token: unknown): token is string => typeof token === 'string' && TOKEN.test(token);

/** The tag with `-<token>` inside the quotes; a value that is not an entity-tag is kept. */
export function suffixTag(etag: string, token: string): string {
  return etag.endsWith('"') && etag.length >= 2 ? `${etag.slice(0, -1)}-${token}"` : etag;
}

/**
 * If-None-Match with the identity form added after each tag that ends in `-<token>` for one of
 * `tokens` (the final ones, see above), or undefined when nothing changes (so the request passes
 * on untouched).
 */
export function widenIfNoneMatch(value: string, tokens: readonly string[]): string | undefined {
  let added = '';
  for (const m of value.matchAll(ENTITY_TAG)) {
    const base = withoutSuffix(m[2], tokens);
    if (base !== undefined) added += `, ${m[1] ?? ''}"${base}"`;
  }
  return added === '' ? undefined : value + added;
}

function withoutSuffix(opaque: string, tokens: readonly string[]): string | undefined {
  for (const token of tokens) {
    if (opaque.length > token.length + 1 && opaque.endsWith(token) && opaque[opaque.length - token.length - 1] === '-') {
      return opaque.slice(0, -token.length - 1);
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
  return candidates.find((tag) => matchesTagList(value, tag, false));
}

/**
 * The ETag of a 304 that an inner stage answered with the identity tag `etag`, for a request whose
 * If-None-Match was widened with `tokens`. "the server generating a 304 response MUST generate any
 * of the following header fields that would have been sent in a 200 (OK) response to the same
 * request: ... ETag, and Vary" (RFC 9110 §15.4.5).
 * - the client listed `etag` with one of `tokens`: the 200 would be that coding, and its final body
 *   is what the client holds. The kept token is not looked up: it can only be this one, or the fast
 *   one while an evicted variant is made again, and then the client's final bytes are still the
 *   better copy (a 304 naming a tag the client does not hold would update nothing, RFC 9111 §4.3.4);
 * - else the identity tag: the client listed it (it holds identity bytes, which are current), or
 *   `*`, or the inner stage matched on something else.
 */
export function tagFor304(ifNoneMatch: string, etag: string, tokens: readonly string[]): string {
  if (ifNoneMatch.trim() === '*') return etag;
  return matchingTag(ifNoneMatch, tokens.map((token) => suffixTag(etag, token))) ?? etag;
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
