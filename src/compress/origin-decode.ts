import { pipeline, Transform, type TransformCallback } from 'node:stream';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Stage } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { OutpostError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { createDecoder, DECODABLE, readableOf } from './encoders.ts';
import { isNoContentStatus } from '../http/status.ts';

/**
 * The origin side of compression: ask the origin for every coding we can decode, and turn what it
 * sends back into identity, streaming, so the cache keeps one identity body and the compression
 * stage codes what each client wants (the origin's gzip becomes br for a browser, identity for curl).
 *
 * - Accept-Encoding towards the origin is `br, zstd, gzip` (transfer between origin and edge is
 *   smaller), except for a Range request: it gets `identity`, because a slice of coded bytes cannot
 *   be decoded and Outpost serves ranges of identity bytes only.
 * - A body in a coding we decode loses Content-Encoding and Content-Length and its ETag is weakened
 *   (`"x"` → `W/"x"`): the bytes changed, the meaning did not (RFC 9110 §8.8.1: a weak validator
 *   "is unable to distinguish between representations that are semantically equivalent"); a 304
 *   answering a request for that weak tag gets the weak tag too (the cache then refreshes). Codings
 *   we did not ask for (deflate, stacked codings) pass on untouched; the compression stage then
 *   leaves them alone too.
 * - The coding was this hop's request, not the client's, so it is decoded even under
 *   `Cache-Control: no-transform`: sending gzip to a client that did not ask for it is no
 *   preservation of anything.
 * - A body that decodes past `maxDecodedSize` is cut off with an error (a decompression bomb: a
 *   1 MB gzip of zeros is 1 GB). Nothing is buffered: decoding runs at the pace the client reads,
 *   and the error resets the client's stream (a truncated body must not look complete).
 */

export interface OriginDecodeOptions {
  /** Bytes one response may decode to. */
  readonly maxDecodedSize: number;
}

const ASK_ORIGIN = 'br, zstd, gzip';

export function createOriginDecodeStage(options: OriginDecodeOptions): Stage {
  const max = options.maxDecodedSize;
  if (!Number.isSafeInteger(max) || max <= 0) {
    throw new TypeError(`compression.maxDecodedSize: expected a size > 0, got ${JSON.stringify(max)}`);
  }

  return async function originDecode(ctx, next) {
    const accept = ctx.headers.range === undefined ? ASK_ORIGIN : 'identity';
    const reply = await next({ ...ctx, headers: { ...ctx.headers, 'accept-encoding': accept } });
    const value = reply.headers['content-encoding'];
    if (reply.status === 304 && value === undefined) return weakenedLikeTheRequest(ctx, reply);
    if (value === undefined) return reply;
    const token = (Array.isArray(value) ? value.join(',') : String(value)).trim().toLowerCase();
    if (token === 'identity' || token === '') return { ...reply, headers: withoutCoding(reply.headers, false) };
    const coding = DECODABLE.get(token);
    // Unknown or stacked codings, and a 206 (a slice of coded bytes): passed on as they are.
    if (coding === undefined || reply.status === 206) return reply;

    const headers = withoutCoding(reply.headers, true);
    const declared = reply.headers['content-length'];
    const empty = declared === 0 || declared === '0';
    if (reply.body === null || ctx.method === 'HEAD' || isNoContentStatus(reply.status) || empty) {
      return { ...reply, headers };
    }
    const limiter = createLimit(max);
    pipeline(readableOf(reply.body), createDecoder(coding), limiter, (err) => {
      if (err) onDecodeError(ctx, err);
    });
    ctx.notes.set('decode', coding);
    return { status: reply.status, headers, body: limiter };
  };
}

/**
 * A 304 validates what the request named. When the request (the cache revalidating) named the weak
 * form of the origin's strong tag, that form is one this stage made by decoding, and the 304 is
 * about it: weaken its tag to match, or the cache would take it for another representation.
 */
function weakenedLikeTheRequest(ctx: Context, reply: Reply): Reply {
  const etag = reply.headers.etag;
  const inm = ctx.headers['if-none-match'];
  if (typeof etag !== 'string' || !etag.startsWith('"') || typeof inm !== 'string' || !inm.includes(`W/${etag}`)) return reply;
  return { ...reply, headers: { ...reply.headers, etag: `W/${etag}` } };
}

/** Headers without the coding; decoded ones also lose their length and the strength of their tag. */
function withoutCoding(h: OutgoingHttpHeaders, decoded: boolean): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...h };
  delete headers['content-encoding'];
  if (!decoded) return headers;
  for (const name of ['content-length', 'content-md5', 'content-digest', 'digest']) delete headers[name];
  if (typeof headers.etag === 'string' && headers.etag.startsWith('"')) headers.etag = `W/${headers.etag}`;
  return headers;
}

/** Passes bytes on until `max` have gone through, then fails the stream. */
function createLimit(max: number): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      total += chunk.length;
      if (total > max) {
        callback(new OutpostError('DECODED_TOO_LARGE', 502, `origin body decodes to more than ${max} bytes`));
        return;
      }
      callback(null, chunk);
    },
  });
}

function onDecodeError(ctx: Context, err: unknown): void {
  const ours = err instanceof OutpostError;
  // The client going away is not an origin fault (the bomb limit is, whatever the client did next).
  if (!ours && (ctx.signal.aborted || (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE')) return;
  ctx.notes.set('error', ours ? err.code : 'DECODE_FAILED');
  publishError({ ctx, error: err, where: 'origin decode' });
}
