import zlib, { constants as Z } from 'node:zlib';
import { Readable, type Transform } from 'node:stream';
import { isFileBody, type Encoding, type FileBody, type ReplyBody } from '../pipeline/context.ts';
import { ownBytes } from '../buffers.ts';
import { reusedBrotli, reusedGzip, type BrotliParams } from './reused-encoders.ts';

/**
 * Encoders and decoders for br, zstd and gzip, all node:zlib. Small fast-quality bodies are encoded
 * on the calling thread (`SYNC_LIMIT`), larger ones on libuv's thread pool, and the high quality
 * only in the background encoder's low-priority thread (background.ts), so Brotli 11 never blocks
 * the event loop nor competes with it for the core.
 *
 * Qualities. Sizes and times measured on the 2-core dev machine (Node 24.21) with a 29 KB HTML page
 * (rustdoc's advanced-features.html, 29,192 bytes):
 *   fast: what a requester waits for, and what streams through for uncached responses.
 *     br 2     against br 3 (a host 2.5x slower than the dev machine, Node 24.21, sync, two runs):
 *              the bench's 30 KB page 7,374 B in 160-175 µs against 7,482 B in 198-226 µs; 30 KB of
 *              this README 13,100 B in 240-278 µs against 13,011 B in 287 µs; 12 KB of TypeScript
 *              4,644 B in 90-100 µs against 4,592 B in 131-143 µs; 7 KB of HTML and CSS 2,705 B
 *              in 45 µs against 2,663 B in 56-85 µs; 24 KB of JSON 2,317 B against 2,370 B in
 *              about the same time: within ±2% of br 3's size for 10-35% less CPU, paid on every
 *              miss and every uncached response, while popular objects get Brotli 11 anyway
 *              (upgrades.ts). br 3 had been chosen over br 4 the same way (dev machine, 30 KB
 *              page: 0.12 against 0.20 ms for 0.2% more bytes); br 5 is 5-7% under br 4 for twice
 *              br 4's CPU
 *     zstd 3   8,880 B, 0.2 ms: zstd's own default level, the fastest of the three
 *     gzip 4   the same trade as br 2 (a host 2.5x slower than the dev machine, Node 24.21, sync):
 *              the bench's 30 KB page 7,354 B in 273 µs against gzip 6's (zlib's default) 6,952 B
 *              in 650 µs; 30 KB of this README 12,752 B in 390 µs against 12,513 B in 571 µs;
 *              12 KB of TypeScript 4,483 B in 127 µs against 4,403 B in 171 µs; 24 KB of JSON
 *              3,359 B in 79 µs against 3,199 B in 131 µs: 2-6% larger for 26-58% less CPU, on
 *              every miss and every uncached response a gzip-only client (most API clients) gets;
 *              gzip 5 costs nearly what 6 does, 1-3 are 3-11% larger than 6
 *   high: for variants that are kept, made once per object and encoding off the hot path.
 *     br 11    6,838 B (17% under br 4), ~25 ms: the maximum, paid once
 *     zstd 19  8,002 B (10% under zstd 3), ~50 ms: the highest level whose window stays within
 *              8 MB, the limit RFC 9659 sets for the zstd content coding (browsers refuse
 *              larger windows); levels 20–22 use more
 *     gzip 9   8,388 B: the maximum
 */
export const QUALITY = {
  fast: { br: 2, zstd: 3, gzip: 4 },
  high: { br: 11, zstd: 19, gzip: 9 },
} as const satisfies Record<string, Record<Encoding, number>>;

export type Quality = keyof typeof QUALITY;

/**
 * The token that names the bytes of a body encoded here (`br2`, `br11`, `zstd3`, `gzip9`): the coding
 * and its level. It goes into the ETag suffix (validators.ts), so the fast body and the high-quality
 * one that replaces it have different tags. The same encoder at the same level makes the same bytes
 * of the same input, with exceptions the token does not show: zstd fed in pieces (a stream)
 * and zstd of the whole buffer come out differently from some tens of KB on, and Brotli streamed
 * without a known length (a chunked response) uses the default window (brotliWindowFor), so `zstd3`
 * and `br2` can name two byte sequences of one identity body. (No strong comparison meets them:
 * coded bodies are never served as ranges, and If-None-Match compares weakly.)
 */
export const tokenOf = (encoding: Encoding, quality: Quality): string => `${encoding}${QUALITY[quality][encoding]}`;

/** 8 MB: the zstd coding's window limit (RFC 9659), so a hostile origin's frame cannot demand 2 GB of window. */
const ZSTD_WINDOW_LOG_MAX = 23;

/**
 * Brotli's window for a body of `size` bytes: the smallest that holds all of it (a window is
 * 2^lgwin − 16 bytes), from Brotli's minimum (10) up to its default (22, for unknown and large
 * sizes). The encoder allocates its ring buffer for the window, not for the input: at the default,
 * an 8 MiB block for any body over 16 KB (counted with a malloc wrapper), made and freed per body
 * (of which only the pages it touches cost memory). A window that holds the whole body finds the
 * same matches: the same sizes (±1 byte) and CPU from 1 KB to 1 MB at qualities 2 and 11 (measured).
 */
export function brotliWindowFor(size: number): number {
  return Math.max(Z.BROTLI_MIN_WINDOW_BITS, Math.min(Z.BROTLI_DEFAULT_WINDOW, Math.ceil(Math.log2(size + 16))));
}

function options(encoding: Encoding, quality: Quality, sizeHint?: number): zlib.ZlibOptions & zlib.BrotliOptions & zlib.ZstdOptions {
  const level = QUALITY[quality][encoding];
  switch (encoding) {
    case 'br': {
      const params: Record<number, number> = { [Z.BROTLI_PARAM_QUALITY]: level };
      if (sizeHint) {
        params[Z.BROTLI_PARAM_SIZE_HINT] = sizeHint;
        params[Z.BROTLI_PARAM_LGWIN] = brotliWindowFor(sizeHint);
      }
      return { params };
    }
    case 'zstd':
      return { params: { [Z.ZSTD_c_compressionLevel]: level } };
    case 'gzip':
      return { level };
  }
}

/**
 * Fast-quality bodies up to this size are encoded on the calling thread: Brotli 3 of 30 KB took
 * about 0.12 ms (Brotli 2 takes less), and the thread pool's hand-off (a wake-up there, another
 * back) costs 30-80 µs of CPU on top (measured on the 2-core dev machine, pinned and not), for no
 * parallelism when the process has one core. Larger bodies go to the thread pool; the high quality
 * only ever runs in the background encoder (background.ts).
 */
export const SYNC_LIMIT = 64 * 1024;

/**
 * Encodes a whole body: small fast ones on this thread (`SYNC_LIMIT`), the rest on the thread pool.
 * The result owns its bytes (buffers.ts): zlib hands back a view into its output chunk, and the
 * result is usually kept.
 */
export function encodeBuffer(encoding: Encoding, input: Buffer, quality: Quality): Promise<Buffer> {
  const opts = options(encoding, quality, input.length);
  if (quality === 'fast' && input.length <= SYNC_LIMIT) {
    try {
      return Promise.resolve(ownBytes(encodeSync(encoding, input, opts)));
    } catch (error) {
      return Promise.reject(error);
    }
  }
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, out: Buffer) => (err ? reject(err) : resolve(ownBytes(out)));
    if (encoding === 'br') zlib.brotliCompress(input, opts, done);
    else if (encoding === 'zstd') zlib.zstdCompress(input, opts, done);
    else zlib.gzip(input, opts, done);
  });
}

/** The zlib options of a high-quality encoding of `size` bytes, for the background encoder's worker (background-worker.js; the native thread takes QUALITY.high and brotliWindowFor). */
export function highQualityOptions(encoding: Encoding, size: number): zlib.ZlibOptions & zlib.BrotliOptions & zlib.ZstdOptions {
  return options(encoding, 'high', size);
}

/** Fast gzip and Brotli on engines kept between bodies (reused-encoders.ts); null where the runtime does not allow it. */
const fastGzip = reusedGzip(QUALITY.fast.gzip);
const fastBrotli = reusedBrotli();

function encodeSync(encoding: Encoding, input: Buffer, opts: ReturnType<typeof options>): Buffer {
  if (encoding === 'br') return fastBrotli !== null ? fastBrotli(input, opts.params as BrotliParams) : zlib.brotliCompressSync(input, opts);
  if (encoding === 'zstd') return zlib.zstdCompressSync(input, opts);
  return fastGzip !== null ? fastGzip(input) : zlib.gzipSync(input, opts);
}

/**
 * A streaming encoder at fast quality (backpressure and memory as any Transform). With the body's
 * length as `sizeHint`, Brotli 2 streams the bytes `encodeBuffer` makes (so `br2` names one byte
 * sequence; checked from 1 KB to 3 MB in 10 KB writes); without it, Brotli keeps its default
 * window and, from 1 MB on, picks another hasher, and the bytes differ.
 */
export function createEncoder(encoding: Encoding, sizeHint?: number): Transform {
  const opts = options(encoding, 'fast', sizeHint);
  if (encoding === 'br') return zlib.createBrotliCompress(opts);
  if (encoding === 'zstd') return zlib.createZstdCompress(opts);
  return zlib.createGzip(opts);
}

/** A streaming decoder. gzip accepts concatenated members, as RFC 1952 allows. */
export function createDecoder(encoding: Encoding): Transform {
  if (encoding === 'br') return zlib.createBrotliDecompress();
  if (encoding === 'zstd') return zlib.createZstdDecompress({ params: { [Z.ZSTD_d_windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
  return zlib.createGunzip();
}

/** A coded body decoded on this thread when it comes to at most this much (~0.3 ms of inflate on the bench host). */
export const SYNC_DECODE_LIMIT = 256 * 1024;

/**
 * A whole coded body decoded on this thread, or undefined when it would come to more than `limit`
 * bytes (the caller streams it); throws when the bytes cannot be decoded. No stream, no thread-pool
 * round trip: what an origin's small gzipped answers need.
 */
export function decodeWhole(encoding: Encoding, input: Buffer, limit: number): Buffer | undefined {
  const maxOutputLength = Math.max(1, limit);
  try {
    if (encoding === 'br') return zlib.brotliDecompressSync(input, { maxOutputLength });
    if (encoding === 'zstd') return zlib.zstdDecompressSync(input, { maxOutputLength, params: { [Z.ZSTD_d_windowLogMax]: ZSTD_WINDOW_LOG_MAX } });
    return zlib.gunzipSync(input, { maxOutputLength });
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw error;
  }
}

/** Content-Encoding values we decode, by their lower-case token. */
export const DECODABLE: ReadonlyMap<string, Encoding> = new Map([
  ['br', 'br'], ['zstd', 'zstd'], ['gzip', 'gzip'],
  ['x-gzip', 'gzip'], // "A recipient SHOULD consider "x-gzip" to be equivalent to "gzip"" (RFC 9110 §8.4.1.3)
]);

/** A body as a stream (files from their range; the stream closes the handle). */
export function readableOf(body: Exclude<ReplyBody, null>): Readable {
  if (Buffer.isBuffer(body)) return Readable.from([body], { objectMode: false });
  if (!isFileBody(body)) return body;
  if (body.length === 0) {
    void body.handle.close().catch(() => {});
    return Readable.from([], { objectMode: false });
  }
  return body.handle.createReadStream({ start: body.offset, end: body.offset + body.length - 1, autoClose: true });
}

/** Reads a file body into memory and closes its handle. */
export async function readFileBody(body: FileBody): Promise<Buffer> {
  try {
    const buffer = Buffer.allocUnsafe(body.length);
    let filled = 0;
    while (filled < body.length) {
      const { bytesRead } = await body.handle.read(buffer, filled, body.length - filled, body.offset + filled);
      if (bytesRead === 0) throw new Error('file shrank while it was read');
      filled += bytesRead;
    }
    return buffer;
  } finally {
    await body.handle.close().catch(() => {});
  }
}

