import { PassThrough, pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { OutgoingHttpHeaders } from 'node:http';
import type { ReplyMap } from '../pipeline/compose.ts';
import { withTrailers, type Context, type Reply } from '../pipeline/context.ts';
import { OutpostError, originError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { createDecoder, decodeWhole, DECODABLE, readableOf, SYNC_DECODE_LIMIT } from './encoders.ts';
import { parseAcceptEncoding } from './negotiate.ts';
import { varyWithAcceptEncoding } from './validators.ts';
import { DIGEST_FIELDS, recodedTrailers } from './digest-fields.ts';
import { isNoContentStatus } from '../http/status.ts';
import { declaredLength } from '../http/content-length.ts';

/**
 * The origin side of compression: ask the origin for every coding we can decode, and turn what it
 * sends back into identity, streaming, so the cache keeps one identity body and the compression
 * stage codes what each client wants (the origin's gzip becomes br for a browser, identity for curl).
 *
 * - Accept-Encoding towards the origin is `br, zstd, gzip` (transfer between origin and edge is
 *   smaller), except for a Range request: it gets `identity`, because a slice of coded bytes cannot
 *   be decoded and Outpost serves ranges of identity bytes only. The proxy sets it while it builds
 *   the origin request (`originAcceptEncoding`, its `acceptEncoding` option): a context copied
 *   here only to change one field cost ~3 µs a request (an object spread over a getter and the
 *   client's header dictionary).
 * - A body in a coding we decode loses Content-Encoding and Content-Length and its ETag is weakened
 *   (`"x"` → `W/"x"`): the bytes changed, the meaning did not (RFC 9110 §8.8.1: a weak validator
 *   "is unable to distinguish between representations that are semantically equivalent"); a 304
 *   answering a request for that weak tag gets the weak tag too (the cache then refreshes). Codings
 *   we did not ask for (deflate, stacked codings) pass on untouched; the compression stage then
 *   leaves them alone too.
 * - The coding was this hop's request, not the client's, so it is decoded even under
 *   `Cache-Control: no-transform`: sending gzip to a client that did not ask for it is no
 *   preservation of anything.
 * - Decompression bombs (64 KiB of gzip can be 64 MiB of zeros): the first MiB is decoded before
 *   anything is answered. A body that is done by then is sent whole; one whose expansion is absurd
 *   (over 100:1) is not decoded at all: a client that accepts its coding gets the coded bytes as
 *   they came (and the cache does not store them), any other gets 502. Past the look-ahead,
 *   decoding runs at the pace the client reads, and a body that decodes past `maxDecodedSize` (no
 *   larger than the cache's maxObjectSize by default) or past the ratio is cut off with an error
 *   that resets the client's stream (a truncated body must not look complete). A client that takes
 *   the coding and a body whose coded length already exceeds `maxDecodedSize` gets it coded too:
 *   it could not be stored decoded anyway.
 */

export interface OriginDecodeOptions {
  /** Bytes one response may decode to. */
  readonly maxDecodedSize: number;
  /**
   * For responses that will not be stored (the cache passes them through, or the route has no
   * cache), asked for with the client's own Accept-Encoding (proxy.ts `passHandler`): a coding the
   * client takes is passed on as it came, not decoded here to be encoded again by the compression
   * stage, as nginx, Varnish and Caddy pass an uncached response's coding on.
   */
  readonly passAccepted?: boolean;
}

const ASK_ORIGIN = 'br, zstd, gzip';
/** Decoded before the first byte is answered, to see a bomb coming. */
const LOOKAHEAD = 1024 * 1024;
/** gzip of text is 3-10:1, of repetitive JSON up to ~50:1; 100:1 only happens on purpose. */
const MAX_RATIO = 100;

/** The Accept-Encoding the origin is asked with, for the proxy to send in place of the client's. */
export const originAcceptEncoding = (ctx: Context): string => ctx.headers.range === undefined ? ASK_ORIGIN : 'identity';

/**
 * The decoder, applied to each origin reply by the proxy (proxy.ts `decode`) in the reaction its
 * attempt has anyway: as a stage around the proxy it cost a promise level per request (~4-5k
 * instructions of ~366k per pass-through response over HTTP/2, callgrind).
 */
export function createOriginDecode(options: OriginDecodeOptions): ReplyMap {
  const max = options.maxDecodedSize;
  const passAccepted = options.passAccepted === true;
  if (!Number.isSafeInteger(max) || max <= 0) {
    throw new TypeError(`compression.maxDecodedSize: expected a size > 0, got ${JSON.stringify(max)}`);
  }

  // Not async: most replies carry no coding and go on as they came, without an async frame each.
  return function originDecode(ctx, reply) {
    const value = reply.headers['content-encoding'];
    if (reply.status === 304 && value === undefined) return weakenedLikeTheRequest(ctx, reply);
    if (value === undefined) return reply;
    return decode(ctx, reply, value);
  };

  async function decode(ctx: Context, reply: Reply, value: string | number | string[]): Promise<Reply> {
    const token = (Array.isArray(value) ? value.join(',') : String(value)).trim().toLowerCase();
    if (token === 'identity' || token === '') return { ...reply, headers: withoutCoding(reply.headers, false) };
    const coding = DECODABLE.get(token);
    // Unknown or stacked codings, and a 206 (a slice of coded bytes): passed on as they are.
    if (coding === undefined || reply.status === 206) return reply;
    const accepted = clientAccepts(ctx.headers['accept-encoding'], token);
    if (passAccepted && accepted) {
      ctx.notes.set('decode', 'passed-coded');
      // The origin chose the coding by the client's Accept-Encoding.
      reply.headers.vary = varyWithAcceptEncoding(reply.headers.vary);
      return reply;
    }

    const headers = withoutCoding(reply.headers, true);
    const declared = reply.headers['content-length'];
    const empty = declared === 0 || declared === '0';
    if (reply.body === null || ctx.method === 'HEAD' || isNoContentStatus(reply.status) || empty) {
      return { ...reply, headers };
    }
    if (accepted && declaredLength(reply.headers) > max) {
      ctx.notes.set('decode', 'passed-coded');
      return reply;
    }
    const lookahead = Math.min(LOOKAHEAD, max);
    if (Buffer.isBuffer(reply.body)) {
      // A body that came whole (most answers) and decodes to less than the look-ahead: decoded in one
      // call, as the look-ahead would have ended it. More than that takes the streaming path below.
      let whole: Buffer | undefined;
      try {
        whole = decodeWhole(coding, reply.body, Math.min(lookahead - 1, SYNC_DECODE_LIMIT));
      } catch (error) {
        throw undecodable(error);
      }
      if (whole !== undefined) {
        ctx.notes.set('decode', coding);
        return withTrailers({ status: reply.status, headers: { ...headers, 'content-length': whole.length }, body: whole }, recodedTrailers(reply.trailers));
      }
    }
    const source = readableOf(reply.body);
    const ahead = await readAhead(source, createDecoder(coding), lookahead);
    if (ahead.error !== undefined) throw undecodable(ahead.error);
    if (ahead.decodedBytes > max || (ahead.decodedBytes >= lookahead && ahead.decodedBytes > MAX_RATIO * consumed(ahead.decoder))) {
      // A bomb, or more than may be decoded: not decoded at all.
      ahead.decoder.destroy();
      ctx.notes.set('decode', 'refused');
      publishError({ ctx, error: new OutpostError('DECODE_REFUSED', 502, `origin body expands ${consumed(ahead.decoder)} → ${ahead.decodedBytes}+ bytes (${coding})`), where: 'origin decode' });
      if (!accepted) {
        source.destroy();
        throw new OutpostError('DECODE_REFUSED', 502, 'Bad Gateway: the origin sent a body that expands beyond what may be decoded');
      }
      return { ...reply, body: prepend(ahead.coded, source) };
    }
    ctx.notes.set('decode', coding);
    if (ahead.ended) {
      const body = Buffer.concat(ahead.decoded, ahead.decodedBytes);
      return withTrailers({ status: reply.status, headers: { ...headers, 'content-length': body.length }, body }, recodedTrailers(reply.trailers));
    }
    const limiter = createLimit(max, ahead.decoder);
    for (const chunk of ahead.decoded) limiter.write(chunk);
    pipeline(source, ahead.decoder, limiter, (err) => {
      if (err) onDecodeError(ctx, err);
    });
    return withTrailers({ status: reply.status, headers, body: limiter }, recodedTrailers(reply.trailers));
  }
}

const undecodable = (cause: unknown) => originError.badGateway('Bad Gateway: the origin sent a body that could not be decoded', cause);

/** Whether the client's Accept-Encoding takes `coding` (or `*`) with a q above 0. */
function clientAccepts(header: string | string[] | undefined, coding: string): boolean {
  if (header === undefined) return false;
  const weights = parseAcceptEncoding(Array.isArray(header) ? header.join(',') : header);
  const q = weights.get(coding === 'x-gzip' ? 'gzip' : coding) ?? weights.get('*');
  return q !== undefined && q > 0;
}

interface Ahead {
  readonly decoder: Transform;
  readonly coded: Buffer[];
  readonly codedBytes: number;
  readonly decoded: Buffer[];
  readonly decodedBytes: number;
  /** The whole body was decoded within the look-ahead. */
  readonly ended: boolean;
  readonly error?: Error;
}

/**
 * Feeds coded chunks to the decoder until `limit` decoded bytes came out or the body ended; then
 * stops reading (the source is left paused, the decoder's further output unread) and reports.
 */
function readAhead(source: Readable, decoder: Transform, limit: number): Promise<Ahead> {
  return new Promise((resolve) => {
    const coded: Buffer[] = [];
    const decoded: Buffer[] = [];
    let codedBytes = 0;
    let decodedBytes = 0;
    let done = false;
    const finish = (ended: boolean, error?: Error) => {
      if (done) return;
      done = true;
      source.off('data', onCoded);
      source.off('end', onSourceEnd);
      decoder.off('data', onDecoded);
      decoder.off('end', onDecoderEnd);
      source.pause();
      decoder.pause();
      resolve({ decoder, coded, codedBytes, decoded, decodedBytes, ended, error });
    };
    const onCoded = (chunk: Buffer) => {
      coded.push(chunk);
      codedBytes += chunk.length;
      if (!decoder.write(chunk)) {
        source.pause();
        decoder.once('drain', () => { if (!done) source.resume(); });
      }
    };
    const onDecoded = (chunk: Buffer) => {
      decoded.push(chunk);
      decodedBytes += chunk.length;
      if (decodedBytes >= limit) finish(false);
    };
    const onSourceEnd = () => decoder.end();
    const onDecoderEnd = () => finish(true);
    source.on('data', onCoded);
    source.once('end', onSourceEnd);
    source.once('error', (error) => finish(false, error));
    decoder.on('data', onDecoded);
    decoder.once('end', onDecoderEnd);
    decoder.once('error', (error) => finish(false, error));
  });
}

/** The chunks already read, then the rest of the source, as one stream. */
function prepend(chunks: readonly Buffer[], rest: Readable): Readable {
  const out = new PassThrough();
  for (const chunk of chunks) out.write(chunk);
  rest.on('error', (error) => out.destroy(error));
  rest.pipe(out);
  return out;
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

/** Fields of a coded body that are wrong for its decoded bytes: its length and its digests. */
const DECODED_NOT_KEPT = ['content-length', ...DIGEST_FIELDS];

/** Headers without the coding; decoded ones also lose their length, their digests and the strength of their tag. */
function withoutCoding(h: OutgoingHttpHeaders, decoded: boolean): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...h };
  delete headers['content-encoding'];
  if (!decoded) return headers;
  for (const name of DECODED_NOT_KEPT) delete headers[name];
  if (typeof headers.etag === 'string' && headers.etag.startsWith('"')) headers.etag = `W/${headers.etag}`;
  return headers;
}

/** Coded bytes the decoder has consumed (zlib's `bytesWritten`: input processed, not merely queued). */
const consumed = (decoder: Transform): number => (decoder as Transform & { bytesWritten: number }).bytesWritten;

/**
 * Passes decoded bytes on until more than `max` have gone through, or, past the look-ahead, more
 * than MAX_RATIO times what the decoder consumed; then fails the stream.
 */
function createLimit(max: number, decoder: Transform): Transform {
  let decoded = 0; // the look-ahead's chunks are written into it first
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      decoded += chunk.length;
      if (decoded > max) {
        callback(new OutpostError('DECODED_TOO_LARGE', 502, `origin body decodes to more than ${max} bytes`));
        return;
      }
      if (decoded > LOOKAHEAD && decoded > MAX_RATIO * consumed(decoder)) {
        callback(new OutpostError('DECODED_TOO_LARGE', 502, `origin body expands more than ${MAX_RATIO}:1`));
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
