import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';

/**
 * The benchmark's payloads: the same bytes on every run and every machine, so runs compare.
 * Made from a seeded PRNG and SHA-256 in counter mode; nothing is downloaded (see bench/README.md).
 */

/** mulberry32: a tiny seeded PRNG (32-bit state), good enough to pick words and numbers. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const WORDS = ('edge cache origin request response header stream session latency throughput brotli gzip ' +
  'static route proxy client server network packet socket buffer vary etag stale fresh purge tag ' +
  'the of and to in is for on with as by at from that this be are was it an or').split(' ');

/** ~1 KB JSON: a short product list, the shape of a typical small API or config file. */
function smallJson(): Buffer {
  const rand = prng(1);
  const items = [];
  for (let i = 0; items.length < 17; i++) {
    items.push({ id: 1000 + i, name: `${WORDS[Math.floor(rand() * WORDS.length)]}-${i}`, price: Math.round(rand() * 10000) / 100, stock: Math.floor(rand() * 500) });
  }
  return Buffer.from(JSON.stringify({ version: 1, generated: '2025-01-01T00:00:00Z', items }));
}

/** ~30 KB HTML: paragraphs of words from a small vocabulary, so it compresses like real markup (~5x). */
function pageHtml(): Buffer {
  const rand = prng(2);
  const parts = ['<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Outpost bench page</title></head>\n<body>\n'];
  let size = parts[0].length;
  for (let p = 0; size < 30_000; p++) {
    const words = [];
    for (let w = 0; w < 40; w++) words.push(WORDS[Math.floor(rand() * WORDS.length)]);
    const line = `<section id="s${p}"><h2>Section ${p}</h2><p class="body">${words.join(' ')}.</p></section>\n`;
    parts.push(line);
    size += line.length;
  }
  parts.push('</body></html>\n');
  return Buffer.from(parts.join(''));
}

/** 1 MiB that no compressor can shrink: SHA-256 of a counter, 32 bytes at a time. */
function largeBin(): Buffer {
  const out = Buffer.allocUnsafe(1 << 20);
  for (let i = 0; i < out.length / 32; i++) createHash('sha256').update(`outpost-bench-large:${i}`).digest().copy(out, i * 32);
  return out;
}

/** The uncacheable API answer: fixed bytes too, so only the headers say "do not store". */
function apiJson(): Buffer {
  const rand = prng(3);
  const values = Array.from({ length: 100 }, () => Math.floor(rand() * 1e6));
  return Buffer.from(JSON.stringify({ ok: true, kind: 'uncacheable', values }));
}

/** ~12 KB of JSON records: the answer of an API that gzips what it sends (pass-gzip). */
function feedJson(): Buffer {
  const rand = prng(4);
  const items = [];
  for (let i = 0; items.length < 120; i++) {
    items.push({ id: 5000 + i, title: `${WORDS[Math.floor(rand() * WORDS.length)]} ${WORDS[Math.floor(rand() * WORDS.length)]}`, score: Math.floor(rand() * 1000), seen: rand() < 0.5 });
  }
  return Buffer.from(JSON.stringify({ ok: true, kind: 'feed', items }));
}

export interface Fixture {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
  /** Precompressed once at the highest quality, like a store-once cache or a build step. */
  readonly br: Buffer;
  readonly gzip: Buffer;
}

function fixture(body: Buffer, type: string): Fixture {
  return {
    body,
    type,
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    br: brotliCompressSync(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length } }),
    gzip: gzipSync(body, { level: 9 }),
  };
}

export const fixtures = {
  small: fixture(smallJson(), 'application/json'),
  page: fixture(pageHtml(), 'text/html; charset=utf-8'),
  large: fixture(largeBin(), 'application/octet-stream'),
  api: fixture(apiJson(), 'application/json'),
  feed: fixture(feedJson(), 'application/json'),
} as const;

/** The static site every system serves from disk: the small JSON, the 1 MiB file, and the page with precompressed siblings. */
export const SITE_FILES = {
  'small.json': fixtures.small.body,
  'large.bin': fixtures.large.body,
  'page.html': fixtures.page.body,
  'page.html.br': fixtures.page.br,
  'page.html.gz': fixtures.page.gzip,
} as const;

export function writeSite(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(SITE_FILES)) writeFileSync(join(dir, name), body);
}

/** Cache-Control the origin sends on its cacheable fixtures. */
export const CACHEABLE = 'public, max-age=3600';
export const UNCACHEABLE = 'private, no-store';

/** URL paths, the same on every system; proxied ones start with the /o/ (or /o2/, /o3/) route prefix. */
export const PATHS = {
  small: '/small.json',
  large: '/large.bin',
  /** The static page whose .br and .gz siblings a build step wrote (static-br). */
  staticPage: '/page.html',
  page: '/o/page.html',
  api: '/o/api',
  /** The same API through the /o2/ route, whose origin is a pool of two upstreams. */
  apiPool: '/o2/api',
  /** The same API through the /o3/ route: HTTP/2 (h2c) to the origin. */
  apiH2: '/o3/api',
  /** An uncacheable API whose origin gzips its answer for clients that take gzip (pass-gzip). */
  feed: '/o/feed',
  upload: '/o/upload',
  /** A 1 MiB answer no edge may keep (pass-1mb): the large file's bytes, uncacheable. */
  download: '/o/download',
  burst: '/o/burst/',
} as const;

/**
 * The paths no edge may answer from memory (the uncacheable API, as is and through the pool and the
 * HTTP/2 routes, the gzipped feed and the 1 MiB download): the ceiling relays them to the origin (bench/ceiling.ts).
 */
export const RELAYED_PATHS: readonly string[] = [PATHS.api, PATHS.apiPool, PATHS.apiH2, PATHS.feed, PATHS.download];

/** The origin holds each /burst/ answer this long, so the 200 concurrent requests overlap it. */
export const BURST_DELAY_MS = 100;
