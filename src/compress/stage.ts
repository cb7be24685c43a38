import { pipeline } from 'node:stream';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Config } from '../config/schema.ts';
import type { Stage } from '../pipeline/compose.ts';
import { disposeBody, isFileBody, type Context, type Encoding, type Reply, type ReplyBody, type Variants } from '../pipeline/context.ts';
import { textReply } from '../pipeline/reply.ts';
import { publishError } from '../observability/channels.ts';
import { createNegotiator, type Choice } from './negotiate.ts';
import { hasContentEncoding, hasNoTransform, isCompressibleType } from './compressible.ts';
import { createEncoder, encodeBuffer, readFileBody, readableOf } from './encoders.ts';
import { createUpgradeQueue } from './upgrades.ts';
import { matchingTag, suffixTag, tagFor304, varyWithAcceptEncoding, widenIfNoneMatch } from './validators.ts';

/**
 * The compression stage: negotiates Accept-Encoding and sends the best coding the client accepts,
 * doing the work once per stored object and encoding, never per hit.
 *
 * For a response it may encode (see `untouched` for the ones it leaves alone), in this order:
 * 1. stored: `reply.variants.get(coding)` has the encoded body (the cache's variant, a static
 *    file's precompressed sibling or kept encoding) → send it: zero compression work;
 * 2. in memory: the identity body is a Buffer (`variants.identity` on a cache hit, a Buffer body,
 *    or a file read when its holder can keep variants) → encode at fast quality on the thread pool,
 *    send that, hand it to `variants.put`, and queue one high-quality re-encode that replaces it;
 * 3. otherwise (pass-through, no-store, too large) → stream through a fast encoder, with
 *    backpressure and flat memory.
 *
 * Headers: Content-Encoding; `Vary: Accept-Encoding` on everything that could have been encoded,
 * identity included, because a shared cache must not give a br body to a client that only takes
 * gzip (and the other way round); the ETag suffixed per coding (validators.ts); an exact
 * Content-Length when the body is whole, none when streamed; Accept-Ranges dropped (ranges are
 * served on identity only). 304s: If-None-Match is widened with identity tags on the way in and
 * the suffix restored on the way out; when the inner stage ignores conditionals, this stage
 * answers 304 itself. `identity;q=0` with nothing else acceptable: 406.
 *
 * The access log's `compress=` note says what happened: `br/stored`, `br/fast`, `br/stream`,
 * `br/head` (HEAD, length unknown), `identity`, `304`, `406`, or why the response was left alone.
 */

export type CompressOptions = Pick<Config['compression'], 'encodings' | 'minSize'>;

const KNOWN: ReadonlySet<string> = new Set<Encoding>(['br', 'zstd', 'gzip']);
/** 16 MB: a file is read into memory to be encoded once and kept only up to this (the cache's default maxObjectSize). */
const READ_LIMIT = 16 * 1024 * 1024;
const UPGRADES = {
  /** One background encode at a time: libuv has four threads, shared with file reads and DNS. */
  concurrency: 1,
  /** 64 MB of identity bodies may wait; beyond that variants stay at fast quality. */
  maxQueuedBytes: 64 * 1024 * 1024,
};
/** What a 304 keeps (RFC 9110 §15.4.5), plus the headers proxies and caches add to every response. */
const RETAINED_304 = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'age', 'via', 'cache-status'];
/** Fields that describe the identity bytes and are wrong for coded ones. */
const IDENTITY_ONLY = ['content-length', 'accept-ranges', 'content-md5', 'content-digest', 'repr-digest', 'digest'];

export function createCompressStage(options: CompressOptions): Stage {
  const encodings = checkEncodings(options.encodings);
  const minSize = checkMinSize(options.minSize);
  const negotiate = createNegotiator(encodings);
  const upgrades = createUpgradeQueue({
    ...UPGRADES,
    onError: (error) => publishError({ ctx: null, error, where: 'compress upgrade' }),
  });

  /** 304 from an inner stage: its identity tag gets the suffix the client knows (validators.ts). */
  function notModified(ctx: Context, reply: Reply, ifNoneMatch: string | undefined): Reply {
    const h = reply.headers;
    if (untouchedNotModified(ctx, h)) return reply;
    const headers: OutgoingHttpHeaders = { ...h, vary: varyWithAcceptEncoding(h.vary) };
    if (typeof h.etag === 'string' && ifNoneMatch !== undefined) {
      headers.etag = tagFor304(ifNoneMatch, h.etag, negotiate(ctx.headers['accept-encoding']).coding, encodings);
    }
    ctx.notes.set('compress', '304');
    return { status: 304, headers, body: reply.body };
  }

  /** Keeps the fast encoding now and queues the high-quality one that replaces it. */
  function keep(ctx: Context, variants: Variants, coding: Encoding, fast: Buffer, identity: Buffer, etag: string | undefined): void {
    const put = variants.put!;
    try {
      put(coding, fast);
    } catch (error) {
      publishError({ ctx, error, where: 'compress put' });
      return;
    }
    // Same object and coding while an upgrade waits: the URL and its validator, else the body itself.
    const key = etag !== undefined ? `${coding} ${ctx.host}${ctx.target} ${etag}` : identity;
    upgrades.schedule(key, identity.length, async () => {
      const best = await encodeBuffer(coding, identity, 'high');
      if (best.length < fast.length) put(coding, best);
    });
  }

  /** The encoded body (or null for HEAD), setting Content-Length when it is known. */
  async function encodedBody(ctx: Context, reply: Reply, coding: Encoding, headers: OutgoingHttpHeaders, etag: string | undefined): Promise<ReplyBody> {
    const { variants, body } = reply;
    const head = ctx.method === 'HEAD';

    const stored = variants !== undefined ? await storedVariant(ctx, variants, coding) : undefined;
    if (stored !== undefined) {
      disposeBody(body);
      setLength(headers, stored);
      ctx.notes.set('compress', `${coding}/stored`);
      if (!head) return stored;
      disposeBody(stored);
      return null;
    }

    let identity = variants?.identity ?? (Buffer.isBuffer(body) ? body : undefined);
    if (identity !== undefined) {
      if (body !== identity) disposeBody(body);
    } else if (isFileBody(body) && (body.length === 0 || (variants?.put !== undefined && body.length <= READ_LIMIT))) {
      identity = await readFileBody(body);
    }
    if (identity !== undefined) {
      const fast = await encodeBuffer(coding, identity, 'fast');
      if (variants?.put !== undefined) keep(ctx, variants, coding, fast, identity, etag);
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
    const encoder = createEncoder(coding);
    // Errors reach the response writer through the encoder, which resets the client's stream.
    pipeline(readableOf(body), encoder, () => {});
    ctx.notes.set('compress', `${coding}/stream`);
    return encoder;
  }

  return async function compress(ctx, next) {
    const ifNoneMatch = ctx.method === 'GET' || ctx.method === 'HEAD' ? headerText(ctx.headers['if-none-match']) : undefined;
    const widened = ifNoneMatch !== undefined ? widenIfNoneMatch(ifNoneMatch, encodings) : undefined;
    const reply = await next(widened === undefined ? ctx : { ...ctx, headers: { ...ctx.headers, 'if-none-match': widened } });

    if (reply.status === 304) return notModified(ctx, reply, ifNoneMatch);
    const reason = untouched(ctx, reply);
    if (reason !== null) {
      ctx.notes.set('compress', reason);
      return reply;
    }

    const choice = negotiate(ctx.headers['accept-encoding']);
    const coding = codingFor(choice, knownLength(reply), minSize);
    if (coding === null && !choice.identity) {
      // "identity;q=0" or "*;q=0" and no coding we make: nothing acceptable (RFC 9110 §15.5.7).
      disposeBody(reply.body);
      ctx.notes.set('compress', '406');
      return textReply(406, 'Not Acceptable: no acceptable content coding', { vary: 'Accept-Encoding' });
    }

    const headers: OutgoingHttpHeaders = { ...reply.headers, vary: varyWithAcceptEncoding(reply.headers.vary) };
    const etag = typeof reply.headers.etag === 'string' ? reply.headers.etag : undefined;
    if (coding !== null) {
      for (const name of IDENTITY_ONLY) delete headers[name];
      headers['content-encoding'] = coding;
      if (etag !== undefined) headers.etag = suffixTag(etag, coding);
    }

    // The inner stage sent 200 although the client holds this representation: answer 304 here.
    if (ifNoneMatch !== undefined && etag !== undefined && reply.status === 200) {
      const held = matchingTag(ifNoneMatch, coding !== null ? [headers.etag as string, etag] : [etag]);
      if (held !== undefined) {
        disposeBody(reply.body);
        ctx.notes.set('compress', '304');
        return { status: 304, headers: notModifiedHeaders(headers, held), body: null };
      }
    }

    if (coding === null) {
      ctx.notes.set('compress', 'identity');
      return { status: reply.status, headers, body: reply.body };
    }
    return { status: reply.status, headers, body: await encodedBody(ctx, reply, coding, headers, etag) };
  };
}

/**
 * Why a response passes on untouched, or null when it may be encoded. One reason per line.
 */
function untouched(ctx: Context, reply: Reply): string | null {
  const h = reply.headers;
  const status = reply.status;
  return status < 200 || status === 204 || status === 304 ? 'no-content' // §6.4.1: these never carry content
    : status === 206 ? 'partial' // a slice of the identity bytes: ranges are never served coded
    : hasContentEncoding(h['content-encoding']) ? 'encoded' // already coded (a coding the origin stage does not decode)
    : hasNoTransform(h['cache-control']) ? 'no-transform' // RFC 9111 §5.2.2.6: the origin forbids it
    : hasNoTransform(ctx.headers['cache-control']) ? 'no-transform' // RFC 9111 §5.2.1.6: so does the client
    : !isCompressibleType(h['content-type']) ? 'type' // images, video, archives: coding costs CPU, saves nothing
    : null;
}

/**
 * A 304 says nothing of its type or size, so Vary and the suffix go on unless it shows the 200
 * would not have been encoded: a superfluous Vary only narrows reuse by a header a given client
 * does not change; a missing one lets a cache hand out the wrong coding (Caddy does the same).
 */
function untouchedNotModified(ctx: Context, h: OutgoingHttpHeaders): boolean {
  return hasContentEncoding(h['content-encoding']) ||
    hasNoTransform(h['cache-control']) ||
    hasNoTransform(ctx.headers['cache-control']) ||
    (h['content-type'] !== undefined && !isCompressibleType(h['content-type']));
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
  const declared = reply.headers['content-length'];
  const n = typeof declared === 'number' ? declared : typeof declared === 'string' && /^\d+$/.test(declared) ? Number(declared) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A stored variant, or undefined; a holder that fails (a store error) counts as none. */
async function storedVariant(ctx: Context, variants: Variants, coding: Encoding): Promise<Exclude<ReplyBody, null> | undefined> {
  try {
    return (await variants.get(coding)) ?? undefined;
  } catch (error) {
    publishError({ ctx, error, where: 'compress variant' });
    return undefined;
  }
}

function setLength(headers: OutgoingHttpHeaders, body: Exclude<ReplyBody, null>): void {
  if (Buffer.isBuffer(body)) headers['content-length'] = body.length;
  else if (isFileBody(body)) headers['content-length'] = body.length;
  else delete headers['content-length'];
}

function notModifiedHeaders(headers: OutgoingHttpHeaders, etag: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of RETAINED_304) if (headers[name] !== undefined) out[name] = headers[name];
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
