import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import { h1, h2, startOrigin, startOutpost, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import type { ErrorEvent } from '../../src/observability/channels.ts';
import { decode, fastQuality, header, highQuality, htmlPage, recordNotes, until } from './support.ts';

// The proxy chain compress → cache → origin decode → origin, through the real listener, against a
// real origin. Each path names its behaviour; `count(path)` is how many requests reached the origin.
type Route = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Route>();
let origin: TestOrigin;
let outpost: RunningOutpost;
const notes = recordNotes();
const errors: ErrorEvent[] = [];
const onError = (event: unknown) => { errors.push(event as ErrorEvent); };

const PAGE = htmlPage(30_000);
const JSON_BODY = Buffer.from(JSON.stringify({ items: Array.from({ length: 500 }, (_, i) => ({ id: i, label: `label ${i}` })) }));
const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(8000, 3)]);
const SMALL = Buffer.from('tiny\n'.repeat(40));
const MAX_DECODED = 4 * 1024 * 1024;
const BIG_TEXT = Buffer.from(Array.from({ length: 12_000 }, (_, i) => `line ${i} of a long log\n`).join('')); // ~300 KB
const BIG_TEXT_GZIP = zlib.gzipSync(BIG_TEXT, { level: 9 });
const API_GZIP = zlib.gzipSync(JSON_BODY, { level: 1 });
const BOMB = zlib.gzipSync(Buffer.alloc(8 * MAX_DECODED), { level: 9 }); // 32 MB of zeros in ~32 KB

const count = (path: string) => origin.seen.filter((r) => r.url === path).length;
const seenFor = (path: string) => origin.seen.filter((r) => r.url === path);
const PROTOCOLS = [['HTTP/2', h2], ['HTTP/1.1', h1]] as const;

function send(res: ServerResponse, headers: Record<string, string | number>, body: Buffer): void {
  res.writeHead(200, { 'content-length': body.length, ...headers });
  res.end(body);
}

before(async () => {
  origin = await startOrigin((req, res) => {
    const path = (req.url ?? '').replace(/\?.*$/, '').replace(/^\/uncached\//, '/'); // the /uncached/ route's requests too
    const handler = routes.get(path);
    if (handler) return handler(req, res);
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no route');
  });
  routes.set('/page', (_req, res) => send(res, { 'content-type': 'text/html; charset=utf-8', etag: '"p1"', 'cache-control': 'max-age=60' }, PAGE));
  routes.set('/upgraded', (_req, res) => send(res, { 'content-type': 'text/html; charset=utf-8', etag: '"u1"', 'cache-control': 'max-age=60' }, PAGE));
  // an origin that gzips whatever it may
  routes.set('/gzip', (req, res) => {
    const gzip = /gzip/.test(String(req.headers['accept-encoding']));
    send(res, { 'content-type': 'text/html', etag: '"g1"', 'cache-control': 'max-age=60', vary: 'Accept-Encoding', ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
      gzip ? zlib.gzipSync(PAGE) : PAGE);
  });
  // a gzipping origin that revalidates: 304 when the tag matches (weakly, as If-None-Match does)
  routes.set('/revalidate', (req, res) => {
    if (/"r1"/.test(String(req.headers['if-none-match']))) {
      res.writeHead(304, { etag: '"r1"', 'cache-control': 'max-age=0' });
      return void res.end();
    }
    send(res, { 'content-type': 'text/html', 'content-encoding': 'gzip', etag: '"r1"', 'cache-control': 'max-age=0' }, zlib.gzipSync(PAGE));
  });
  routes.set('/brotli', (_req, res) => send(res, { 'content-type': 'application/json', 'content-encoding': 'br', 'cache-control': 'no-store' }, zlib.brotliCompressSync(JSON_BODY)));
  routes.set('/image', (_req, res) => send(res, { 'content-type': 'image/png', 'cache-control': 'max-age=60' }, PNG));
  routes.set('/small', (_req, res) => send(res, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, SMALL));
  routes.set('/no-transform', (_req, res) => send(res, { 'content-type': 'text/html', etag: '"nt"', 'cache-control': 'max-age=60, no-transform' }, PAGE));
  routes.set('/deflate', (_req, res) => send(res, { 'content-type': 'text/html', 'content-encoding': 'deflate', 'cache-control': 'no-store' }, zlib.deflateSync(PAGE)));
  routes.set('/ignores-conditionals', (_req, res) => send(res, { 'content-type': 'text/html', etag: '"ic"', 'cache-control': 'no-store' }, PAGE));
  routes.set('/chunked', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
    res.write(PAGE.subarray(0, 10_000));
    setTimeout(() => res.end(PAGE.subarray(10_000)), 10);
  });
  // an API that gzips when asked, and is never stored
  routes.set('/api-gzip', (req, res) => {
    const gzip = /gzip/.test(String(req.headers['accept-encoding']));
    send(res, { 'content-type': 'application/json', etag: '"a1"', 'cache-control': 'no-store', ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
      gzip ? API_GZIP : JSON_BODY);
  });
  // answers that come whole (under 64 KB coded) in one piece: a page, one that decodes past what is
  // decoded in one call (256 KB), and bytes that are no gzip at all
  routes.set('/big-text', (_req, res) => send(res, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'cache-control': 'max-age=60' }, BIG_TEXT_GZIP));
  routes.set('/corrupt', (_req, res) => send(res, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'cache-control': 'max-age=60' }, Buffer.concat([zlib.gzipSync(PAGE).subarray(0, 200), Buffer.alloc(50, 7)])));
  routes.set('/bomb', (_req, res) => send(res, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'cache-control': 'no-store' }, BOMB));
  diagnostics.subscribe('outpost:error', onError);
  outpost = await startOutpost({
    compression: { maxDecodedSize: MAX_DECODED },
    sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/uncached/', origin: origin.url, cache: { enabled: false } }] }],
  });
});

after(async () => {
  notes.stop();
  diagnostics.unsubscribe('outpost:error', onError);
  await outpost?.close();
  await origin?.close();
});

for (const [name, request] of PROTOCOLS) {
  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') => request(`${outpost.url}${path}`, { method, headers });

  test(`${name}: a cached page is encoded once on the miss that stores it, then sent as stored bytes`, async () => {
    const path = `/page?${name}`;
    // first request: a miss; the body is stored within moments, so it is encoded whole at fast quality and kept
    const miss = await get(path, { 'accept-encoding': 'br' });
    assert.equal(miss.status, 200);
    assert.equal(miss.headers['content-encoding'], 'br');
    assert.equal(miss.headers.etag, '"p1-br2"', 'Brotli 2');
    assert.equal(miss.headers['content-length'], String(miss.body.length));
    assert.match(header(miss.headers.vary) ?? '', /accept-encoding/i);
    assert.deepEqual(decode('br', miss.body), PAGE);
    assert.equal(seenFor(path)[0].headers['accept-encoding'], 'br, zstd, gzip', 'the origin is asked for what we decode');
    // second request: a hit, the kept Brotli 2 bytes
    const hit = await get(path, { 'accept-encoding': 'br' });
    assert.equal(hit.headers['content-length'], String(hit.body.length));
    assert.equal(hit.headers.etag, '"p1-br2"');
    assert.deepEqual(hit.body, miss.body);
    // served from the store again: popular, so the background upgrade replaces it with Brotli 11
    const best = highQuality('br', PAGE);
    await until(async () => (await get(path, { 'accept-encoding': 'br' })).body.equals(best), 'the Brotli 11 variant');
    assert.deepEqual(notes.notes(path).slice(0, 2), ['br/fast', 'br/stored']);
    assert.equal(notes.notes(path).at(-1), 'br/stored');
    assert.equal(notes.notes(path).filter((n) => n === 'br/fast').length, 1, 'encoded once for this coding');

    // the other codings from the same stored identity body, and identity itself
    for (const coding of ['zstd', 'gzip'] as const) {
      const res = await get(path, { 'accept-encoding': coding });
      assert.equal(res.headers['content-encoding'], coding);
      assert.equal(res.headers.etag, `"p1-${coding === 'zstd' ? 'zstd3' : 'gzip4'}"`, 'the first of its coding: fast');
      assert.equal(res.headers['content-length'], String(res.body.length));
      assert.deepEqual(decode(coding, res.body), PAGE);
    }
    const identity = await get(path);
    assert.equal(identity.headers['content-encoding'], undefined);
    assert.equal(identity.headers.etag, '"p1"');
    assert.equal(identity.headers['content-length'], String(PAGE.length));
    assert.match(header(identity.headers.vary) ?? '', /accept-encoding/i);
    assert.deepEqual(identity.body, PAGE);
    assert.equal(count(path), 1, 'one origin request for every coding');

    // revalidation with the br tag: the cache answers 304, the tag keeps its suffix
    const notModified = await get(path, { 'accept-encoding': 'br', 'if-none-match': '"p1-br11"' });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, '"p1-br11"');
    assert.match(header(notModified.headers.vary) ?? '', /accept-encoding/i);
    // HEAD: the encoded response's headers, no body
    const head = await get(path, { 'accept-encoding': 'br' }, 'HEAD');
    assert.equal(head.headers['content-encoding'], 'br');
    assert.equal(head.headers.etag, '"p1-br11"');
    assert.equal(head.body.length, 0);
    // a range: identity bytes from the stored body
    const range = await get(path, { 'accept-encoding': 'br', range: 'bytes=10-19' });
    assert.equal(range.status, 206);
    assert.equal(range.headers['content-encoding'], undefined);
    assert.deepEqual(range.body, PAGE.subarray(10, 20));
    assert.equal(count(path), 1);
  });

  test(`${name}: transcoding — the origin's gzip becomes br, identity or gzip again`, async () => {
    const path = `/gzip?${name}`;
    const br = await get(path, { 'accept-encoding': 'br' });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(br.headers.etag, 'W/"g1-br2"', 'decoded: the origin tag is weakened, then suffixed');
    assert.deepEqual(decode('br', br.body), PAGE);
    const plain = await get(path, { 'accept-encoding': 'identity' });
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.headers.etag, 'W/"g1"');
    assert.deepEqual(plain.body, PAGE);
    const gzip = await get(path, { 'accept-encoding': 'gzip' });
    assert.deepEqual(decode('gzip', gzip.body), PAGE);
    assert.equal(count(path), 1, 'the cache kept the decoded identity body');

    // revalidating a decoded response: the cache asks with the weak tag, the origin's 304 refreshes it
    const stale = `/revalidate?${name}`;
    assert.deepEqual(decode('br', (await get(stale, { 'accept-encoding': 'br' })).body), PAGE);
    const refreshed = await get(stale, { 'accept-encoding': 'br' });
    assert.deepEqual(decode('br', refreshed.body), PAGE);
    assert.match(String(refreshed.headers['cache-status']), /fwd-status=304/);
    assert.equal(refreshed.headers.etag, 'W/"r1-br2"');
    assert.equal(seenFor(stale)[1].headers['if-none-match'], 'W/"r1"');
    assert.equal(count(stale), 2, 'no full refetch after the 304');

    const json = await get(`/brotli?${name}`, { 'accept-encoding': 'gzip' });
    assert.equal(json.headers['content-encoding'], 'gzip');
    assert.deepEqual(decode('gzip', json.body), JSON_BODY);
    assert.deepEqual((await get(`/brotli?${name}`)).body, JSON_BODY, 'origin br → identity');
  });

  test(`${name}: what will not be stored is asked for with the client's Accept-Encoding, and a coding it takes is passed on as it came`, async () => {
    const path = `/api-gzip?${name}`;
    const both = { 'accept-encoding': 'br, gzip' };
    // the first answer is fetched to be stored: every coding asked for, decoded, then found uncacheable
    const first = await get(path, both);
    assert.equal(first.headers['content-encoding'], 'br');
    assert.deepEqual(decode('br', first.body), JSON_BODY);
    assert.equal(seenFor(path)[0].headers['accept-encoding'], 'br, zstd, gzip');
    // from then on the URI is passed through (hit-for-miss): the origin's gzip goes out as it came
    const passed = await get(path, both);
    assert.match(String(passed.headers['cache-status']), /fwd=bypass/);
    assert.equal(seenFor(path)[1].headers['accept-encoding'], 'br, gzip', 'the client\'s own field');
    assert.equal(passed.headers['content-encoding'], 'gzip');
    assert.deepEqual(passed.body, API_GZIP, 'the origin\'s bytes, not decoded and encoded again');
    assert.equal(passed.headers.etag, '"a1"', 'the origin\'s tag names its bytes');
    assert.equal(passed.headers['content-length'], String(API_GZIP.length));
    assert.match(header(passed.headers.vary) ?? '', /accept-encoding/i, 'the coding followed the request\'s Accept-Encoding');
    // HEAD: the fields the GET would have, the origin's coding and length
    const head = await get(path, both, 'HEAD');
    assert.equal(seenFor(path).at(-1)!.method, 'HEAD');
    assert.equal(head.headers['content-encoding'], 'gzip');
    assert.equal(head.headers['content-length'], String(API_GZIP.length));
    assert.equal(head.body.length, 0);
    // a client that does not take the origin's coding: identity from the origin, encoded here as before
    const brOnly = await get(path, { 'accept-encoding': 'br' });
    assert.equal(seenFor(path).at(-1)!.headers['accept-encoding'], 'br');
    assert.equal(brOnly.headers['content-encoding'], 'br');
    assert.deepEqual(decode('br', brOnly.body), JSON_BODY);
    const none = await get(path);
    assert.equal(none.headers['content-encoding'], undefined);
    assert.deepEqual(none.body, JSON_BODY);
    // an origin that sends a coding the client did not ask for is still decoded for it
    const json = await get(`/brotli?${name}`, { 'accept-encoding': 'gzip' });
    const again = await get(`/brotli?${name}`, { 'accept-encoding': 'gzip' });
    assert.match(String(again.headers['cache-status']), /fwd=bypass/);
    for (const r of [json, again]) {
      assert.equal(r.headers['content-encoding'], 'gzip');
      assert.deepEqual(decode('gzip', r.body), JSON_BODY);
    }
    // a route without a cache: every request is passed so, the first one too
    const uncached = await get(`/uncached/api-gzip?${name}`, both);
    assert.equal(uncached.headers['content-encoding'], 'gzip');
    assert.deepEqual(uncached.body, API_GZIP);
  });

  test(`${name}: not compressed — images, small bodies, no-transform, codings we do not decode`, async () => {
    const image = await get(`/image?${name}`, { 'accept-encoding': 'br' });
    assert.equal(image.headers['content-encoding'], undefined);
    assert.equal(image.headers.vary, undefined);
    assert.deepEqual(image.body, PNG);

    const small = await get(`/small?${name}`, { 'accept-encoding': 'br' });
    assert.equal(small.headers['content-encoding'], undefined);
    assert.equal(small.headers.vary, undefined, 'under minSize: no client gets it coded');
    assert.deepEqual(small.body, SMALL);

    const noTransform = await get(`/no-transform?${name}`, { 'accept-encoding': 'br' });
    assert.equal(noTransform.headers['content-encoding'], undefined);
    assert.equal(noTransform.headers.etag, '"nt"');
    assert.equal(noTransform.headers['content-length'], String(PAGE.length));
    assert.deepEqual(noTransform.body, PAGE);

    const deflate = await get(`/deflate?${name}`, { 'accept-encoding': 'br, deflate' });
    assert.equal(deflate.headers['content-encoding'], 'deflate', 'already coded: passed on as it is');
    assert.deepEqual(zlib.inflateSync(deflate.body), PAGE);
  });

  test(`${name}: an origin that ignores conditionals: the stage answers 304 for either tag`, async () => {
    const path = `/ignores-conditionals?${name}`;
    const coded = await get(path, { 'accept-encoding': 'br', 'if-none-match': '"ic-br2"' });
    assert.equal(coded.status, 304, 'uncached: streamed at Brotli 2, which the tag names');
    assert.equal(coded.headers.etag, '"ic-br2"');
    assert.match(header(coded.headers.vary) ?? '', /accept-encoding/i);
    assert.equal(coded.body.length, 0);
    const plain = await get(path, { 'accept-encoding': 'br', 'if-none-match': '"ic"' });
    assert.equal(plain.status, 304);
    assert.equal(plain.headers.etag, '"ic"');
    assert.equal((await get(path, { 'accept-encoding': 'br', 'if-none-match': '"other"' })).status, 200);
    const high = await get(path, { 'accept-encoding': 'br', 'if-none-match': '"ic-br11"' });
    assert.equal(high.status, 200, 'a tag naming other bytes than the ones sent');
    assert.equal(high.headers.etag, '"ic-br2"');
  });

  test(`${name}: the fast body and the Brotli 11 body that replaces it in the cache carry different tags`, async () => {
    const path = `/upgraded?${name}`;
    const br = { 'accept-encoding': 'br' };
    // first request: a miss, encoded at Brotli 2 and kept
    const first = await get(path, br);
    assert.equal(first.headers.etag, '"u1-br2"');
    // second: a hit of the kept Brotli 2 bytes; from the next one on it is popular, and the upgrade to Brotli 11 runs in the background
    const second = await get(path, br);
    assert.equal(second.headers.etag, '"u1-br2"');
    assert.deepEqual(second.body, fastQuality('br', PAGE));
    // a few short polls until the kept variant is Brotli 11, under its own tag
    let upgraded = second;
    await until(async () => (upgraded = await get(path, br)).headers.etag !== '"u1-br2"', 'the Brotli 11 variant', 5000);
    assert.equal(upgraded.headers.etag, '"u1-br11"');
    assert.deepEqual(upgraded.body, highQuality('br', PAGE));
    assert.notDeepEqual(upgraded.body, first.body, 'other bytes, other tag');
    // If-None-Match with the br11 tag: 304 naming it
    const held = await get(path, { ...br, 'if-none-match': '"u1-br11"' });
    assert.equal(held.status, 304);
    assert.equal(held.headers.etag, '"u1-br11"');
    assert.match(header(held.headers.vary) ?? '', /accept-encoding/i);
    // with the stale br2 tag: those bytes are gone, so the 200 with the new tag and bytes
    const stale = await get(path, { ...br, 'if-none-match': '"u1-br2"' });
    assert.equal(stale.status, 200);
    assert.equal(stale.headers.etag, '"u1-br11"');
    assert.deepEqual(stale.body, upgraded.body);
    // with the level-less tag of earlier versions: a 200 as well
    assert.equal((await get(path, { ...br, 'if-none-match': '"u1-br"' })).status, 200);
    assert.equal(count(path), 1, 'all from the one stored response');
  });

  test(`${name}: Vary: Accept-Encoding only where a coded representation could be chosen`, async () => {
    // under minSize: never coded, no Vary, for any client
    for (const accept of [{ 'accept-encoding': 'br' }, {}] as Array<Record<string, string>>) {
      const small = await get(`/small?vary-${name}`, accept);
      assert.equal(small.headers['content-encoding'], undefined);
      assert.equal(small.headers.vary, undefined);
    }
    // at least minSize: Vary, even for a client that sent no Accept-Encoding (another would get br)
    const big = await get(`/page?vary-${name}`);
    assert.equal(big.headers['content-encoding'], undefined);
    assert.match(header(big.headers.vary) ?? '', /accept-encoding/i);
    // a type we never code: none
    const image = await get(`/image?vary-${name}`);
    assert.equal(image.headers.vary, undefined);
    // nothing acceptable: the 406 varies
    const refused = await get(`/page?vary-${name}`, { 'accept-encoding': 'identity;q=0, deflate' });
    assert.equal(refused.status, 406);
    assert.match(header(refused.headers.vary) ?? '', /accept-encoding/i);
  });

  test(`${name}: an uncached chunked body streams through the encoder`, async () => {
    const res = await get(`/chunked?${name}`, { 'accept-encoding': 'zstd' });
    assert.equal(res.headers['content-encoding'], 'zstd');
    assert.equal(res.headers['content-length'], undefined);
    assert.deepEqual(decode('zstd', res.body), PAGE);
    assert.deepEqual(notes.notes(`/chunked?${name}`), ['zstd/stream']);
  });

  test(`${name}: whole coded answers: decoded in one call or streamed past 256 KB, and bytes that are no gzip are a 502`, async () => {
    assert.ok(BIG_TEXT.length > 256 * 1024 && BIG_TEXT_GZIP.length < 64 * 1024, 'past the one-call decode, yet one whole answer');
    const big = await get(`/big-text?${name}`);
    assert.equal(big.status, 200);
    assert.equal(big.headers['content-encoding'], undefined);
    assert.deepEqual(big.body, BIG_TEXT);
    const corrupt = await get(`/corrupt?${name}`, { 'accept-encoding': 'br' });
    assert.equal(corrupt.status, 502);
    assert.match(corrupt.body.toString(), /could not be decoded/);
    assert.equal((await get(`/small?${name}`)).status, 200, 'still serving');
  });

  test(`${name}: a decompression bomb is never decoded: 502 for a client that cannot take its coding, the coded bytes for one that can`, async () => {
    const before = errors.length;
    for (const coding of [undefined, 'br']) {
      const res = await get(`/bomb?${name}`, coding ? { 'accept-encoding': coding } : {});
      assert.equal(res.status, 502, `refused before any byte (${coding ?? 'identity'})`);
      assert.ok(res.body.length < 200);
    }
    const coded = await get(`/bomb?${name}`, { 'accept-encoding': 'gzip' });
    assert.equal(coded.status, 200);
    assert.equal(coded.headers['content-encoding'], 'gzip');
    assert.equal(Buffer.compare(coded.body, BOMB), 0, 'the coded bytes as the origin sent them');
    await until(async () => errors.slice(before).filter((e) => (e.error as { code?: string }).code === 'DECODE_REFUSED').length >= 3, 'the errors');
    assert.equal((await get(`/small?${name}`)).status, 200, 'still serving');
  });

}
