import diagnostics from 'node:diagnostics_channel';
import zlib from 'node:zlib';
import type { ResponseEndEvent } from '../../src/observability/channels.ts';
import { Readable } from 'node:stream';
import { brotliWindowFor } from '../../src/compress/encoders.ts';
import type { Context } from '../../src/pipeline/context.ts';

/** A deterministic HTML page of about `size` bytes: varied words, like real markup compresses. */
export function htmlPage(size: number): Buffer {
  const words = ['edge', 'cache', 'origin', 'stream', 'header', 'brotli', 'quality', 'variant', 'request', 'server',
    'client', 'token', 'latency', 'window', 'session', 'proxy', 'static', 'vary', 'encoding', 'bytes'];
  let seed = 42;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  let html = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Outpost</title></head><body>\n';
  for (let i = 0; html.length < size - 40; i++) {
    const sentence = Array.from({ length: 8 + rand(12) }, () => words[rand(words.length)]).join(' ');
    html += `<p class="p${rand(7)}" id="s${i}">${sentence} ${rand(100000)}.</p>\n`;
  }
  return Buffer.from(`${html}</body></html>\n`);
}

export function decode(coding: string | undefined, body: Buffer): Buffer {
  if (coding === 'br') return zlib.brotliDecompressSync(body);
  if (coding === 'gzip') return zlib.gunzipSync(body);
  if (coding === 'zstd') return zlib.zstdDecompressSync(body);
  if (coding === undefined) return body;
  throw new Error(`unexpected coding ${coding}`);
}

/** Brotli 11 / gzip 9 / zstd 19 of a buffer: what a kept, upgraded variant must be. */
export function highQuality(coding: 'br' | 'gzip' | 'zstd', input: Buffer): Buffer {
  const Z = zlib.constants;
  if (coding === 'br') return zlib.brotliCompressSync(input, { params: { [Z.BROTLI_PARAM_QUALITY]: 11, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: brotliWindowFor(input.length) } });
  if (coding === 'gzip') return zlib.gzipSync(input, { level: 9 });
  return zlib.zstdCompressSync(input, { params: { [Z.ZSTD_c_compressionLevel]: 19 } });
}

/** Brotli 2 / gzip 4 / zstd 3: the fast encoding a first requester gets. */
export function fastQuality(coding: 'br' | 'gzip' | 'zstd', input: Buffer): Buffer {
  const Z = zlib.constants;
  if (coding === 'br') return zlib.brotliCompressSync(input, { params: { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: brotliWindowFor(input.length) } });
  if (coding === 'gzip') return zlib.gzipSync(input, { level: 4 });
  return zlib.zstdCompressSync(input, { params: { [Z.ZSTD_c_compressionLevel]: 3 } });
}

/** The variant kept in the end: the high-quality one, unless it came out no smaller than the fast one. */
export function keptVariant(coding: 'br' | 'gzip' | 'zstd', input: Buffer): Buffer {
  const high = highQuality(coding, input);
  const fast = fastQuality(coding, input);
  return high.length < fast.length ? high : fast;
}

/** What the compression stage noted for each response, by request target (the access log's view). */
export function recordNotes(): { notes: (target: string) => string[]; stop(): void } {
  const seen = new Map<string, string[]>();
  const listener = (message: unknown) => {
    const { request } = message as ResponseEndEvent;
    const note = request.notes?.get('compress');
    if (note === undefined) return;
    const list = seen.get(request.target) ?? [];
    list.push(note);
    seen.set(request.target, list);
  };
  diagnostics.subscribe('outpost:response-end', listener);
  return {
    notes: (target) => seen.get(target) ?? [],
    stop: () => diagnostics.unsubscribe('outpost:response-end', listener),
  };
}

/** Retries `check` until it returns true (background work finishing), or fails after `ms`. */
export async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export const header = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value.join(', ') : value);

/** A request as the compression stage sees it when called directly (no sockets): GET /page over HTTP/2. */
export function stageContext(headers: Record<string, string> = {}, method = 'GET'): Context {
  return {
    method, scheme: 'https', authority: 'localhost', host: 'localhost', target: '/page', path: '/page', query: '',
    headers, remoteAddress: '127.0.0.1', remotePort: 1, httpVersion: '2',
    body: Readable.from([]), hasBody: false, signal: new AbortController().signal, startedAt: process.hrtime.bigint(), notes: new Map(),
  };
}
