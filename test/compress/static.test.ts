import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { h1, h2, startOutpost, testClock, type RunningOutpost, type TestResponse } from '../helpers/outpost.ts';
import { decode, fastQuality, header, highQuality, htmlPage, keptVariant, recordNotes, until } from './support.ts';

// A static site behind the compression stage, through the real listener (TLS, HTTP/2 and HTTP/1.1).
let tmp: string;
let outpost: RunningOutpost;
const notes = recordNotes();
const clock = testClock();

const PAGE = htmlPage(30_000);
const JSON_BODY = Buffer.from(JSON.stringify(Array.from({ length: 600 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ['a', 'b'] }))));
const SMALL = Buffer.from('small text, not worth a coding\n'.repeat(10)); // 310 bytes < minSize
const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(8000, 7)]);
const SCRIPT = Buffer.from('export const answer = () => 42;\n'.repeat(400));
const STYLE = Buffer.from('body { color: black; }\n'.repeat(400));
const SCRIPT_BR = zlib.brotliCompressSync(SCRIPT); // what a build step would write next to it
const SCRIPT_GZ = zlib.gzipSync(SCRIPT, { level: 9 });

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'outpost-compress-static-'));
  const site = join(tmp, 'site');
  mkdirSync(site);
  const old = new Date(Date.now() - 3_600_000);
  writeFileSync(join(site, 'page.html'), PAGE);
  writeFileSync(join(site, 'once.html'), PAGE);
  writeFileSync(join(site, 'tags.html'), PAGE);
  writeFileSync(join(site, 'lib.js'), SCRIPT);
  utimesSync(join(site, 'lib.js'), old, old);
  writeFileSync(join(site, 'lib.js.br'), SCRIPT_BR);
  writeFileSync(join(site, 'data.json'), JSON_BODY);
  writeFileSync(join(site, 'small.txt'), SMALL);
  writeFileSync(join(site, 'image.png'), PNG);
  // precompressed siblings, not older than the file
  writeFileSync(join(site, 'app.js'), SCRIPT);
  utimesSync(join(site, 'app.js'), old, old);
  writeFileSync(join(site, 'app.js.br'), SCRIPT_BR);
  writeFileSync(join(site, 'app.js.gz'), SCRIPT_GZ);
  // a stale sibling (older than its file, and with other content) must not be served
  writeFileSync(join(site, 'style.css.br'), zlib.brotliCompressSync(Buffer.from('stale content')));
  utimesSync(join(site, 'style.css.br'), old, old);
  writeFileSync(join(site, 'style.css'), STYLE);
  // a sibling that is a symlink out of the root is not served
  writeFileSync(join(tmp, 'outside.br'), zlib.brotliCompressSync(Buffer.from('outside the root')));
  writeFileSync(join(site, 'linked.txt'), PAGE);
  symlinkSync('../outside.br', join(site, 'linked.txt.br'));
  outpost = await startOutpost({ sites: [{ hosts: ['*'], static: site }] }, { now: clock.now });
});

after(async () => {
  notes.stop();
  await outpost?.close();
  rmSync(tmp, { recursive: true, force: true });
});

type Request = typeof h2;
const PROTOCOLS = [['HTTP/2', h2], ['HTTP/1.1', h1]] as const;
const get = (request: Request, path: string, headers: Record<string, string> = {}, method = 'GET') =>
  request(`${outpost.url}${path}`, { method, headers });

const FAST = { br: 'br2', zstd: 'zstd3', gzip: 'gzip4' } as const;
const HIGH = { br: 'br11', zstd: 'zstd19', gzip: 'gzip9' } as const;

/** `"<identity>-<token>"`, checking that the token names the bytes sent when they are encoded here. */
function assertEncoded(res: TestResponse, coding: 'br' | 'zstd' | 'gzip', original: Buffer, identityTag: string, sibling?: string): void {
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-encoding'], coding);
  assert.match(header(res.headers.vary) ?? '', /accept-encoding/i);
  const token = /-([0-9A-Za-z.]+)"$/.exec(res.headers.etag as string)?.[1];
  assert.equal(res.headers.etag, `${identityTag.slice(0, -1)}-${token}"`);
  if (sibling !== undefined) assert.equal(token, sibling, 'the sibling\'s token');
  else assert.ok(token === FAST[coding] || token === HIGH[coding], `unexpected token ${token}`);
  // (zstd's bytes depend on how the input is fed in, so only br and gzip are compared byte for byte)
  if (sibling === undefined && coding !== 'zstd') {
    assert.deepEqual(res.body, (token === FAST[coding] ? fastQuality : highQuality)(coding, original), `${token} names these bytes`);
  }
  assert.equal(res.headers['content-length'], String(res.body.length), 'exact Content-Length');
  assert.equal(res.headers['accept-ranges'], undefined, 'no ranges on a coded body');
  assert.deepEqual(decode(coding, res.body), original, 'decodes to the exact bytes');
}

/** The token of a precompressed sibling: its coding, size and mtime (ms), in hex. */
function siblingToken(coding: string, path: string): string {
  const stats = statSync(path);
  return `${coding}.${stats.size.toString(16)}.${Math.floor(stats.mtimeMs).toString(16)}`;
}

for (const [name, request] of PROTOCOLS) {
  test(`${name}: each coding decodes to the file, with Vary, a suffixed ETag and an exact length`, async () => {
    const plain = await get(request, '/page.html');
    assert.equal(plain.headers['content-encoding'], undefined, 'no Accept-Encoding: identity');
    assert.match(header(plain.headers.vary) ?? '', /accept-encoding/i, 'Vary on identity too');
    assert.deepEqual(plain.body, PAGE);
    const tag = plain.headers.etag as string;
    for (const coding of ['br', 'zstd', 'gzip'] as const) {
      const res = await get(request, '/page.html', { 'accept-encoding': coding });
      assertEncoded(res, coding, PAGE, tag);
      assert.ok(res.body.length < PAGE.length / 2);
    }
    // our preference when the client has none: br
    assert.equal((await get(request, '/data.json', { 'accept-encoding': 'gzip, deflate, br, zstd' })).headers['content-encoding'], 'br');
  });

  test(`${name}: what is not compressed, and where Vary: Accept-Encoding goes`, async () => {
    const small = await get(request, '/small.txt', { 'accept-encoding': 'br' });
    assert.equal(small.headers['content-encoding'], undefined, 'below minSize');
    assert.equal(small.headers.vary, undefined, 'no client gets it coded: no Vary');
    assert.deepEqual(small.body, SMALL);
    const smallNotModified = await get(request, '/small.txt', { 'accept-encoding': 'br', 'if-none-match': small.headers.etag as string });
    assert.equal(smallNotModified.status, 304);
    assert.equal(smallNotModified.headers.vary, undefined, 'nor on its 304');
    const big = await get(request, '/page.html');
    assert.equal(big.headers['content-encoding'], undefined, 'no Accept-Encoding: identity');
    assert.match(header(big.headers.vary) ?? '', /accept-encoding/i, 'another client would get br: Vary');

    const image = await get(request, '/image.png', { 'accept-encoding': 'br' });
    assert.equal(image.headers['content-encoding'], undefined, 'images are not coded');
    assert.equal(image.headers.vary, undefined, 'and do not vary');
    assert.deepEqual(image.body, PNG);

    const range = await get(request, '/page.html', { 'accept-encoding': 'br', range: 'bytes=100-199' });
    assert.equal(range.status, 206);
    assert.equal(range.headers['content-encoding'], undefined, 'ranges are identity bytes');
    assert.deepEqual(range.body, PAGE.subarray(100, 200));

    const noTransform = await get(request, '/page.html', { 'accept-encoding': 'br', 'cache-control': 'no-transform' });
    assert.equal(noTransform.headers['content-encoding'], undefined, 'the client said no-transform');
    assert.deepEqual(noTransform.body, PAGE);
  });

  test(`${name}: identity;q=0 — coded even when small, 406 when nothing is acceptable`, async () => {
    const small = await get(request, '/small.txt', { 'accept-encoding': 'gzip, identity;q=0' });
    assert.equal(small.headers['content-encoding'], 'gzip');
    assert.deepEqual(decode('gzip', small.body), SMALL);
    const refused = await get(request, '/page.html', { 'accept-encoding': 'identity;q=0, deflate' });
    assert.equal(refused.status, 406);
    assert.match(header(refused.headers.vary) ?? '', /accept-encoding/i);
    const image = await get(request, '/image.png', { 'accept-encoding': 'identity;q=0' });
    assert.equal(image.status, 200, 'a type we never code is sent as it is');
  });

  test(`${name}: conditionals with either ETag form, and HEAD`, async () => {
    const first = await get(request, '/data.json', { 'accept-encoding': 'br' });
    const coded = first.headers.etag as string;
    assert.match(coded, /-br2"$/, 'Brotli 11 is no smaller for this JSON: the fast body stays');
    const identity = coded.replace(/-br2"$/, '"');
    // the br tag: 304 naming it
    const again = await get(request, '/data.json', { 'accept-encoding': 'br', 'if-none-match': coded });
    assert.equal(again.status, 304);
    assert.equal(again.headers.etag, coded);
    assert.match(header(again.headers.vary) ?? '', /accept-encoding/i);
    assert.equal(again.body.length, 0);
    // the identity tag: 304 too
    const plain = await get(request, '/data.json', { 'accept-encoding': 'br', 'if-none-match': identity });
    assert.equal(plain.status, 304);
    assert.equal(plain.headers.etag, identity);
    // another file's tag: 200
    assert.equal((await get(request, '/data.json', { 'accept-encoding': 'br', 'if-none-match': '"nope-br2"' })).status, 200);
    // the tag of another coding: a 200 in the one the client gets
    const other = await get(request, '/data.json', { 'accept-encoding': 'br', 'if-none-match': coded.replace(/-br2"$/, '-gzip4"') });
    assert.equal(other.status, 200);
    assert.equal(other.headers.etag, coded);
    // If-Range with the coded tag does not apply to identity bytes: the whole (coded) 200
    const ifRange = await get(request, '/data.json', { 'accept-encoding': 'br', range: 'bytes=0-9', 'if-range': coded });
    assert.equal(ifRange.status, 200);
    assert.deepEqual(decode(ifRange.headers['content-encoding'] as string, ifRange.body), JSON_BODY);

    // HEAD: the coded response's headers, no body (once the kept variant is final, so lengths compare)
    // (for this repetitive JSON Brotli 11 comes out larger than Brotli 2, so the fast one stays)
    const kept = keptVariant('br', JSON_BODY);
    await until(async () => (await get(request, '/data.json', { 'accept-encoding': 'br' })).body.equals(kept), 'the final variant');
    const head = await get(request, '/data.json', { 'accept-encoding': 'br' }, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-encoding'], 'br');
    assert.equal(head.headers.etag, coded);
    assert.equal(head.body.length, 0);
    const stored = await get(request, '/data.json', { 'accept-encoding': 'br' });
    assert.equal(head.headers['content-length'], stored.headers['content-length'], 'HEAD knows the kept length');
  });

  test(`${name}: precompressed siblings are served when fresh and inside the root`, async () => {
    const br = await get(request, '/app.js', { 'accept-encoding': 'br' });
    const tag = (await get(request, '/app.js')).headers.etag as string;
    assertEncoded(br, 'br', SCRIPT, tag, siblingToken('br', join(tmp, 'site', 'app.js.br')));
    assert.deepEqual(br.body, SCRIPT_BR, 'the sibling bytes themselves');
    assert.equal(br.headers['content-type'], 'text/javascript; charset=utf-8', 'the type of the file');
    const gz = await get(request, '/app.js', { 'accept-encoding': 'gzip' });
    assertEncoded(gz, 'gzip', SCRIPT, tag, siblingToken('gzip', join(tmp, 'site', 'app.js.gz')));
    assert.deepEqual(gz.body, SCRIPT_GZ);
    const held = await get(request, '/app.js', { 'accept-encoding': 'br', 'if-none-match': br.headers.etag as string });
    assert.equal(held.status, 304, 'the sibling\'s exact tag');
    assert.equal(held.headers.etag, br.headers.etag);
    // no .zst sibling: compressed here
    const zstd = await get(request, '/app.js', { 'accept-encoding': 'zstd' });
    assertEncoded(zstd, 'zstd', SCRIPT, tag);

    const stale = await get(request, '/style.css', { 'accept-encoding': 'br' });
    assert.deepEqual(decode('br', stale.body), STYLE, 'a sibling older than its file is ignored');
    const linked = await get(request, '/linked.txt', { 'accept-encoding': 'br' });
    assert.deepEqual(decode('br', linked.body), PAGE, 'a sibling leaving the root is ignored');
  });
}

test('a file is compressed once per coding: fast for the first request, kept at Brotli 11 after', async () => {
  const target = '/once.html';
  const first = await h2(`${outpost.url}${target}`, { headers: { 'accept-encoding': 'br' } });
  assert.deepEqual(decode('br', first.body), PAGE);
  assert.deepEqual(notes.notes(target), ['br/fast']);
  // the upgrade runs in the background; then every request sends the kept Brotli 11 bytes
  const best = highQuality('br', PAGE);
  await until(async () => {
    const res = await h2(`${outpost.url}${target}`, { headers: { 'accept-encoding': 'br' } });
    return res.body.equals(best);
  }, 'the Brotli 11 variant');
  assert.ok(best.length < first.body.length, `${best.length} < ${first.body.length}`);
  const later = await h1(`${outpost.url}${target}`, { headers: { 'accept-encoding': 'br' } });
  assert.deepEqual(later.body, best);
  assert.equal(notes.notes(target).at(-1), 'br/stored');
  assert.equal(notes.notes(target).filter((n) => n === 'br/fast').length, 1, 'one fast encode in all');
});

test('the fast body and the Brotli 11 body that replaces it carry different tags', async () => {
  const url = `${outpost.url}/tags.html`;
  const br = { 'accept-encoding': 'br' };
  const identity = (await h2(url)).headers.etag as string;
  const tagged = (token: string) => `${identity.slice(0, -1)}-${token}"`;
  // first request: encoded at Brotli 2, tagged br2
  const first = await h2(url, { headers: br });
  assert.equal(first.headers.etag, tagged('br2'));
  assert.deepEqual(first.body, fastQuality('br', PAGE));
  // the background upgrade: a few short polls until the kept variant is Brotli 11, tagged br11
  let upgraded = first;
  await until(async () => (upgraded = await h2(url, { headers: br })).headers.etag !== first.headers.etag, 'the Brotli 11 variant', 5000);
  assert.equal(upgraded.headers.etag, tagged('br11'));
  assert.deepEqual(upgraded.body, highQuality('br', PAGE));
  assert.notDeepEqual(upgraded.body, first.body, 'other bytes, other tag');
  // If-None-Match with the br11 tag: 304 naming it
  const held = await h1(url, { headers: { ...br, 'if-none-match': tagged('br11') } });
  assert.equal(held.status, 304);
  assert.equal(held.headers.etag, tagged('br11'));
  // with the br2 tag: those bytes are gone, so the 200 with the new tag and bytes
  const stale = await h1(url, { headers: { ...br, 'if-none-match': tagged('br2') } });
  assert.equal(stale.status, 200);
  assert.equal(stale.headers.etag, tagged('br11'));
  assert.deepEqual(stale.body, upgraded.body);
  // with the level-less tag of earlier versions: a 200 as well
  assert.equal((await h2(url, { headers: { ...br, 'if-none-match': `${identity.slice(0, -1)}-br"` } })).status, 200);
});

test('a rewritten precompressed sibling gets a new tag, though the file did not change', async () => {
  const url = `${outpost.url}/lib.js`;
  const sibling = join(tmp, 'site', 'lib.js.br');
  const br = { 'accept-encoding': 'br' };
  const before = await h2(url, { headers: br });
  assert.deepEqual(before.body, SCRIPT_BR);
  assert.match(before.headers.etag as string, new RegExp(`-${siblingToken('br', sibling).replace(/\./g, '\\.')}"$`));
  // a build step writes the sibling again, at another quality
  const rewritten = zlib.brotliCompressSync(SCRIPT, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } });
  assert.notDeepEqual(rewritten, SCRIPT_BR);
  writeFileSync(sibling, rewritten);
  clock.advance(1500); // past the file cache's trust window (nginx's open_file_cache_valid): the sibling is checked again
  const after = await h2(url, { headers: { ...br, 'if-none-match': before.headers.etag as string } });
  assert.equal(after.status, 200, 'the bytes the old tag named are gone');
  assert.deepEqual(after.body, rewritten);
  assert.notEqual(after.headers.etag, before.headers.etag);
  assert.match(after.headers.etag as string, new RegExp(`-${siblingToken('br', sibling).replace(/\./g, '\\.')}"$`));
  assert.equal((await h2(url, { headers: { ...br, 'if-none-match': after.headers.etag as string } })).status, 304);
});
