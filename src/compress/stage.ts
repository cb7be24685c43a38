import { pipeline } from 'node:stream';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Config } from '../config/schema.ts';
import type { Stage } from '../pipeline/compose.ts';
import { disposeBody, isFileBody, reuseWith, withTrailers, type Context, type Encoding, type Reply, type ReplyBody, type StoredVariant, type Variants } from '../pipeline/context.ts';
import { textReply } from '../pipeline/reply.ts';
import { publishError } from '../observability/channels.ts';
import { createNegotiator, type Choice } from './negotiate.ts';
import { hasContentEncoding, isCompressibleType } from './compressible.ts';
import { hasNoTransform } from '../http/cache-control.ts';
import { notModifiedHeaders } from '../http/not-modified.ts';
import { isNoContentStatus } from '../http/status.ts';
import { declaredLength } from '../http/content-length.ts';
import { createEncoder, encodeBuffer, readFileBody, readableOf } from './encoders.ts';
import { FAST, HIGH, READ_LIMIT, createFastVariants, type HighQualityEncoder } from './fast-variants.ts';
import { encodeInBackground } from './background.ts';
import { DIGEST_FIELDS, recodedTrailers } from './digest-fields.ts';
import { createEncodeOnce } from './encode-once.ts';
import { isToken, matchingTag, suffixTag, tagFor304, varyWithAcceptEncoding, widenIfNoneMatch } from './validators.ts';

/**
 * The compression stage: negotiates Accept-Encoding and sends the best coding the client accepts,
 * doing the work once per stored object and encoding, never per hit.
 *
 * For a response it may encode (see `untouched` for the ones it leaves alone), in this order:
 * 1. stored: `reply.variants.get(coding)` has the encoded body and its token (the cache's variant,
 *    a static file's precompressed sibling or kept encoding) → send it: zero compression work.
 *    A kept fast body served this way for the `UPGRADE_AFTER`-th time has proved popular: one
 *    high-quality re-encode that replaces it is queued (fast-variants.ts), made in the background
 *    encoder's low-priority thread (background.ts), so it never takes the core from responses;
 * 2. in memory: the identity body is a Buffer (`variants.identity` on a cache hit or on a miss the
 *    cache stored, a Buffer body, or a file read when its holder can keep variants) → encode at
 *    fast quality (encoders.ts: small bodies on this thread), send that, hand it to `variants.put`;
 *    requests encoding the same body at the same moment share one encode (encode-once.ts);
 * 3. otherwise (pass-through, no-store, too large) → stream through a fast encoder, with
 *    backpressure and flat memory.
 *
 * Headers: Content-Encoding; the ETag suffixed with the token of the exact bytes sent
 * (validators.ts): the stored variant's (`br11`, a sibling's), else the fast level's (`br2`), so
 * the fast body and the Brotli 11 body that replaces it never share a tag; an exact Content-Length
 * when the body is whole, none when streamed; Accept-Ranges dropped (ranges are served on identity
 * only).
 *
 * `Vary: Accept-Encoding` where a coded representation could be chosen: a type we code and a size
 * that is unknown or at least `minSize` (see `mayBeCoded`), identity included: a shared cache must
 * not give the br body to a client that sent no Accept-Encoding, nor the identity body to one
 * that takes br. A body under `minSize`, which no client gets coded, carries none, so downstream
 * caches do not split on it for nothing; the exception is a client that refuses identity
 * (`identity;q=0`), whose small body is coded and then varies. A 304 follows the same rule as far
 * as it shows (a holder's `variants.identity` gives the size), and a 406 always varies.
 *
 * Conditionals: If-None-Match is widened with the identity form of the final (high-quality) tag
 * of the coding the client gets, so the cache or static stage can answer 304 for it; that 304
 * gets the client's coded tag back. Every other coded tag reaches the inner stage unwidened, and
 * this stage compares it with the exact tag of the 200 it would send: 304 when they match, else
 * the 200 with its new tag (a client holding the fast body after the upgrade gets the Brotli 11
 * bytes). The price: an uncached response revalidated with its fast tag is fetched whole from the
 * origin, never confirmed by an origin 304, because a 304 cannot be turned back into a 200 when
 * a kept variant replaced the bytes the tag names. `identity;q=0` with nothing else acceptable: 406.
 *
 * Holders offer `variants` on HEAD replies and 304s too, not only on 200 GETs: a HEAD then carries
 * the tag its GET would (the stored token, where nothing but the holder knows it), and a 304 the
 * Vary its 200 would (the size of `variants.identity`).
 *
 * The access log's `compress=` note says what happened: `br/stored`, `br/fast`, `br/stream`,
 * `br/head` (HEAD, length unknown), `identity`, `304`, `406`, or why the response was left alone.
 */

export type CompressOptions = Pick<Config['compression'], 'encodings' | 'minSize'>;

const KNOWN: ReadonlySet<string> = new Set<Encoding>(['br', 'zstd', 'gzip']);
/** Fields that describe the identity bytes and are wrong for coded ones. */
const IDENTITY_ONLY: ReadonlySet<string> = new Set(['content-length', 'accept-ranges', ...DIGEST_FIELDS]);

/**
 * A copy of `headers` for a coded body: the identity-only fields left out as it is made. Not
 * copied then deleted: a `delete` of a field in the middle (Content-Length, nearly always there)
 * turns the object into a dictionary, slower for every reader after it (Node's serialization of
 * the response head reads each field).
 */
function withoutIdentityFields(headers: Readonly<OutgoingHttpHeaders>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) if (!IDENTITY_ONLY.has(name)) out[name] = headers[name];
  return out;
}

/** The tokens an inner stage may confirm with a 304, by the coding the client gets: the final ones (validators.ts). */
const FINAL: Readonly<Record<Encoding, readonly string[]>> = { br: [HIGH.br], zstd: [HIGH.zstd], gzip: [HIGH.gzip] };
const NONE: readonly string[] = [];

export function createCompressStage(options: CompressOptions, encodeHigh: HighQualityEncoder = encodeInBackground): Stage {
  const encodings = checkEncodings(options.encodings);
  const minSize = checkMinSize(options.minSize);
  const negotiate = createNegotiator(encodings);
  const { keep, servedFast, upgradable } = createFastVariants(encodeHigh);
  const encodeOnce = createEncodeOnce((coding, input) => encodeBuffer(coding, input, 'fast'));

  /**
   * 304 from an inner stage: its identity tag gets back the final tag the client presented, if that
   * is what it matched (validators.ts), and Vary as the 200 would have had it.
   */
  function notModified(ctx: Context, reply: Reply, ifNoneMatch: string | undefined, final: readonly string[]): Reply {
    const h = reply.headers;
    if (untouchedNotModified(ctx, h)) return reply;
    const headers: OutgoingHttpHeaders = { ...h };
    if (mayBeCoded(reply.variants?.identity?.length, minSize)) headers.vary = varyWithAcceptEncoding(h.vary);
    if (typeof h.etag === 'string' && ifNoneMatch !== undefined) headers.etag = tagFor304(ifNoneMatch, h.etag, final);
    ctx.notes.set('compress', '304');
    return { status: 304, headers, body: reply.body };
  }

  /**
   * The encoded body (or null for HEAD), setting Content-Length when it is known. `stored` is the
   * holder's variant whose token the ETag already names; without one the body is made at fast
   * quality, which the ETag's fast token names.
   */
  async function encodedBody(ctx: Context, reply: Reply, coding: Encoding, headers: OutgoingHttpHeaders, etag: string | undefined, stored: StoredVariant | undefined, upgradeKey: string | undefined): Promise<ReplyBody> {
    const { variants, body } = reply;
    const head = ctx.method === 'HEAD';

    if (stored !== undefined) {
      const taken = variants !== undefined && upgradeKey !== undefined && servedFast(ctx, variants, coding, bodyLength(stored.body), body, upgradeKey, etag);
      if (!taken) disposeBody(body);
      setLength(headers, stored.body);
      ctx.notes.set('compress', `${coding}/stored`);
      if (!head) return stored.body;
      disposeBody(stored.body);
      return null;
    }

    let identity = variants?.identity ?? (Buffer.isBuffer(body) ? body : undefined);
    if (identity !== undefined) {
      if (body !== identity) disposeBody(body);
    } else if (isFileBody(body) && (body.length === 0 || (variants?.put !== undefined && body.length <= READ_LIMIT))) {
      identity = await readFileBody(body);
    }
    if (identity !== undefined) {
      const shared = encodeOnce(coding, identity);
      const fast = await shared.fast;
      if (variants?.put !== undefined && !shared.kept) {
        shared.kept = true;
        keep(ctx, variants, coding, fast, identity);
      }
      headers['content-length'] = fast.length;
      ctx.notes.set('compress', `${coding}/fast`);
      return head ? null : fast;
    }

    if (head || body === null) {
      // HEAD with nothing stored: the headers of the encoded response, without a length we cannot know.
      disposeBody(body);
      ctx.notes.set('compress', `${coding}/head`);
      return null;
    }
    // The length as Brotli's size hint: the streamed body is then the one-shot fast body, byte for byte.
    const encoder = createEncoder(coding, knownLength(reply));
    // Errors reach the response writer through the encoder, which resets the client's stream.
    pipeline(readableOf(body), encoder, () => {});
    ctx.notes.set('compress', `${coding}/stream`);
    return encoder;
  }

  // Not async: a reply with nothing to encode (the origin's own, small or of another type) goes on
  // as it came, without an async frame per request.
  return function compress(ctx, next) {
    const ifNoneMatch = ctx.method === 'GET' || ctx.method === 'HEAD' ? headerText(ctx.headers['if-none-match']) : undefined;
    const choice = negotiate(ctx.headers['accept-encoding']);
    const final = choice.coding !== null ? FINAL[choice.coding] : NONE;
    const widened = ifNoneMatch !== undefined ? widenIfNoneMatch(ifNoneMatch, final) : undefined;
    return next(widened === undefined ? ctx : { ...ctx, headers: { ...ctx.headers, 'if-none-match': widened } })
      .then((reply) => compressReply(ctx, reply, choice, final, ifNoneMatch));
  };

  function compressReply(ctx: Context, reply: Reply, choice: Choice, final: readonly string[], ifNoneMatch: string | undefined): Reply | Promise<Reply> {
    if (reply.status === 304) return notModified(ctx, reply, ifNoneMatch, final);
    const reason = untouched(ctx, reply);
    if (reason !== null) {
      ctx.notes.set('compress', reason);
      return reply;
    }

    const length = knownLength(reply);
    const coding = codingFor(choice, length, minSize);
    if (coding === null && !choice.identity) {
      // "identity;q=0" or "*;q=0" and no coding we make: nothing acceptable (RFC 9110 §15.5.7).
      disposeBody(reply.body);
      ctx.notes.set('compress', '406');
      return textReply(406, 'Not Acceptable: no acceptable content coding', { vary: 'Accept-Encoding' });
    }

    const vary = coding !== null || mayBeCoded(length, minSize);
    // Nothing to change (a small identity body) on a reply no holder offers (the origin's own, passed
    // through): it goes on as it is, without a copy of its header object.
    if (!vary && ifNoneMatch === undefined && reply.variants === undefined && reply.reuse === undefined) {
      ctx.notes.set('compress', 'identity');
      return reply;
    }
    return encodedReply(ctx, reply, coding, length, vary, ifNoneMatch);
  }

  async function encodedReply(ctx: Context, reply: Reply, coding: Encoding | null, length: number | undefined, vary: boolean, ifNoneMatch: string | undefined): Promise<Reply> {
    const headers = coding === null ? { ...reply.headers } : withoutIdentityFields(reply.headers);
    if (vary) headers.vary = varyWithAcceptEncoding(reply.headers.vary);
    const etag = typeof reply.headers.etag === 'string' ? reply.headers.etag : undefined;
    // Looked up before the ETag is written: the tag names the stored bytes, or the fast ones made here.
    const stored = coding !== null && reply.variants !== undefined ? await storedVariant(ctx, reply.variants, coding) : undefined;
    if (coding !== null) {
      headers['content-encoding'] = coding;
      // For the metrics: what the coding saved is this minus the bytes sent.
      if (length !== undefined) ctx.notes.set('identity-length', String(length));
      if (etag !== undefined) headers.etag = suffixTag(etag, stored?.token ?? FAST[coding]);
    }

    // The inner stage sent 200 although the client holds this representation: answer 304 here.
    // (Also the way every unwidened coded tag is answered: only an exact tag matches.)
    if (ifNoneMatch !== undefined && etag !== undefined && reply.status === 200) {
      const held = matchingTag(ifNoneMatch, coding !== null ? [headers.etag as string, etag] : [etag]);
      if (held !== undefined) {
        disposeBody(reply.body);
        if (stored !== undefined) disposeBody(stored.body);
        ctx.notes.set('compress', '304');
        return { status: 304, headers: notModifiedFor(headers, held), body: null };
      }
    }

    // Reusable (Reuse) as the inner reply was, when what is sent is identity or a stored variant still held.
    if (coding === null) {
      ctx.notes.set('compress', 'identity');
      return withTrailers({ status: reply.status, headers, body: reply.body, reuse: reply.reuse }, reply.trailers);
    }
    // A fast variant whose uses are still counted is not kept ready: they must reach this stage.
    const upgradeKey = stored !== undefined ? upgradable(ctx, reply.variants!, coding, stored, etag) : undefined;
    const body = await encodedBody(ctx, reply, coding, headers, etag, stored, upgradeKey);
    const reuse = stored !== undefined && upgradeKey === undefined ? reuseWith(reply.reuse, stored.held) : undefined;
    return withTrailers({ status: reply.status, headers, body, reuse }, recodedTrailers(reply.trailers));
  }
}

/**
 * Why a response passes on untouched, or null when it may be encoded. One reason per line.
 */
function untouched(ctx: Context, reply: Reply): string | null {
  const h = reply.headers;
  const status = reply.status;
  return isNoContentStatus(status) ? 'no-content' // RFC 9110 §6.4.1: these never carry content
    : status === 206 ? 'partial' // a slice of the identity bytes: ranges are never served coded
    : hasContentEncoding(h['content-encoding']) ? 'encoded' // already coded (a coding the origin stage does not decode)
    : hasNoTransform(h['cache-control']) ? 'no-transform' // RFC 9111 §5.2.2.6: the origin forbids it
    : hasNoTransform(ctx.headers['cache-control']) ? 'no-transform' // RFC 9111 §5.2.1.6: so does the client
    : !isCompressibleType(h['content-type']) ? 'type' // images, video, archives: coding costs CPU, saves nothing
    : null;
}

/**
 * A 304 seldom says its type or size, so Vary and the suffix go on unless it shows the 200 would
 * not have been encoded: a superfluous Vary only narrows reuse by a header a given client does not
 * change; a missing one lets a cache hand out the wrong coding (Caddy does the same). The size,
 * when its holder offers the identity body, is `notModified`'s to weigh (`mayBeCoded`).
 */
function untouchedNotModified(ctx: Context, h: OutgoingHttpHeaders): boolean {
  return hasContentEncoding(h['content-encoding']) ||
    hasNoTransform(h['cache-control']) ||
    hasNoTransform(ctx.headers['cache-control']) ||
    (h['content-type'] !== undefined && !isCompressibleType(h['content-type']));
}

/**
 * Whether a response of a type we code could be sent coded to some client, so it needs
 * `Vary: Accept-Encoding`: its size is unknown or reaches `minSize`.
 */
function mayBeCoded(length: number | undefined, minSize: number): boolean {
  return length === undefined || length >= minSize;
}

/**
 * The coding to send: the negotiated one, except that a body under `minSize` stays identity when
 * identity is acceptable (with identity;q=0 even a small body is coded rather than refused).
 */
function codingFor(choice: Choice, length: number | undefined, minSize: number): Encoding | null {
  if (choice.coding === null) return null;
  if (length !== undefined && length < minSize && choice.identity) return null;
  return choice.coding;
}

/** The identity length when known: the body's, else Content-Length (HEAD, streams). */
function knownLength(reply: Reply): number | undefined {
  const body = reply.body;
  if (Buffer.isBuffer(body)) return body.length;
  if (body !== null && isFileBody(body)) return body.length;
  if (reply.variants?.identity !== undefined) return reply.variants.identity.length;
  const n = declaredLength(reply.headers);
  return n >= 0 && Number.isSafeInteger(n) ? n : undefined;
}

/**
 * A stored variant, or undefined; a holder that fails (a store error) counts as none, and so does
 * a variant whose token could not name its bytes in an ETag.
 */
async function storedVariant(ctx: Context, variants: Variants, coding: Encoding): Promise<StoredVariant | undefined> {
  let stored: StoredVariant | undefined;
  try {
    stored = (await variants.get(coding)) ?? undefined;
  } catch (error) {
    publishError({ ctx, error, where: 'compress variant' });
    return undefined;
  }
  if (stored === undefined || isToken(stored.token)) return stored;
  disposeBody(stored.body);
  publishError({ ctx, error: new TypeError(`${coding} variant with token ${JSON.stringify(stored.token)}: not a token an ETag can carry`), where: 'compress variant' });
  return undefined;
}

function bodyLength(body: Exclude<ReplyBody, null>): number {
  return Buffer.isBuffer(body) || isFileBody(body) ? body.length : Infinity;
}

function setLength(headers: OutgoingHttpHeaders, body: Exclude<ReplyBody, null>): void {
  if (Buffer.isBuffer(body)) headers['content-length'] = body.length;
  else if (isFileBody(body)) headers['content-length'] = body.length;
  else delete headers['content-length'];
}

/** The 304 for the 200 this stage would send, naming the tag the client holds. */
function notModifiedFor(headers: OutgoingHttpHeaders, etag: string): OutgoingHttpHeaders {
  const out = notModifiedHeaders(headers);
  out.etag = etag;
  return out;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return value === undefined ? undefined : typeof value === 'string' ? value : value.join(', ');
}

function checkEncodings(encodings: readonly string[]): readonly Encoding[] {
  if (!Array.isArray(encodings) || encodings.length === 0) {
    throw new TypeError(`compression.encodings: expected a non-empty list of br, zstd, gzip, got ${JSON.stringify(encodings)}`);
  }
  for (const encoding of encodings) {
    if (!KNOWN.has(encoding)) throw new TypeError(`compression.encodings: unknown coding ${JSON.stringify(encoding)} (br, zstd, gzip)`);
  }
  if (new Set(encodings).size !== encodings.length) {
    throw new TypeError(`compression.encodings: listed twice in ${JSON.stringify(encodings)}`);
  }
  return Object.freeze([...encodings] as Encoding[]);
}

function checkMinSize(minSize: number): number {
  if (!Number.isSafeInteger(minSize) || minSize < 0) throw new TypeError(`compression.minSize: expected a size ≥ 0, got ${JSON.stringify(minSize)}`);
  return minSize;
}
