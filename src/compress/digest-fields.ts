import type { Trailers } from '../pipeline/context.ts';

/**
 * Fields that vouch for a body's exact bytes: Content-MD5 and the digests (RFC 9530 Content-Digest
 * and Repr-Digest, RFC 3230 Digest). Wrong once Outpost codes or decodes the body, so they are left
 * out of the header then, and out of the trailers, where a streaming origin puts them.
 */
export const DIGEST_FIELDS: readonly string[] = ['content-md5', 'content-digest', 'repr-digest', 'digest'];
const DIGESTS: ReadonlySet<string> = new Set(DIGEST_FIELDS);

/**
 * The origin's trailers (RFC 9110 §6.5) for a body whose bytes were coded or decoded here: the same
 * fields but the digests. Read when the body has ended (the origin's arrive at the end of its
 * body, which comes before the end of the coded one), so a view, not a copy.
 */
export function recodedTrailers(trailers: Trailers | undefined): Trailers | undefined {
  if (trailers === undefined) return undefined;
  return {
    get fields() {
      const fields = trailers.fields;
      if (fields === null) return null;
      const kept: Record<string, string | string[]> = {};
      for (const name in fields) if (!DIGESTS.has(name)) kept[name] = fields[name];
      return kept;
    },
  };
}
