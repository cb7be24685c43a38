import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { brotliDecompressSync } from 'node:zlib';
import { request } from 'undici';
import { fixtures, PATHS } from '../../bench/fixtures.ts';
import { startChild, type Child } from '../../bench/procs.ts';
import { h1, h2 } from '../helpers/outpost.ts';
import { makeCa, makeLeaf } from '../helpers/pki.ts';

/** The bench's ceiling given the fixture origin: what its miss row does (the floor of a miss in Node). */

const children: Child[] = [];
after(() => Promise.all(children.map((child) => child.stop())));

/** Starts `node script args` as the runner does and returns what its ready line matched. */
async function start(name: string, args: readonly string[], ready: RegExp): Promise<RegExpExecArray> {
  const { child, match } = await startChild(name, [process.execPath, ...args], ready, 15_000);
  children.push(child);
  return match!;
}

test('the ceiling fetches each new URL of the miss row from the origin, Brotli-encodes it once for br clients and keeps it', async () => {
  const ca = await makeCa('bench-ceiling-ca');
  const leaf = await makeLeaf(ca, 'localhost', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const [, originUrl, origin2Url, originH2Url] = await start('origin', ['bench/origin.ts'], /origin (http:\/\/\S+) (http:\/\/\S+) h2c (http:\/\/\S+)/);
  const [, ceiling] = await start('ceiling', ['bench/ceiling.ts', '--cert', leaf.certFile, '--key', leaf.keyFile, '--port', '0',
    '--origin', originUrl, '--origin2', origin2Url, '--origin-h2', originH2Url], /ceiling (https:\/\/\S+)/);

  const overH2 = await h2(`${ceiling}${PATHS.page}?miss=t-1`, { ca: ca.cert, headers: { 'accept-encoding': 'br, gzip' } });
  assert.equal(overH2.status, 200);
  assert.equal(overH2.headers['content-encoding'], 'br');
  assert.equal(overH2.headers.vary, 'accept-encoding');
  assert.equal(overH2.headers.etag, fixtures.page.etag.replace(/"$/, '-br"'));
  assert.equal(Number(overH2.headers['content-length']), overH2.body.length);
  assert.ok(overH2.body.length < fixtures.page.body.length / 2, `${overH2.body.length} bytes`);
  assert.deepEqual(brotliDecompressSync(overH2.body), fixtures.page.body);

  const overH1 = await h1(`${ceiling}${PATHS.page}?miss=t-2`, { ca: ca.cert, headers: { 'accept-encoding': 'br' } });
  assert.equal(overH1.headers['content-encoding'], 'br');
  assert.deepEqual(brotliDecompressSync(overH1.body), fixtures.page.body);

  // A client that takes no br gets the origin's identity body as it came.
  const identity = await h1(`${ceiling}${PATHS.page}?miss=t-3`, { ca: ca.cert, headers: { 'accept-encoding': 'gzip' } });
  assert.equal(identity.headers['content-encoding'], undefined);
  assert.equal(identity.headers.etag, fixtures.page.etag);
  assert.deepEqual(identity.body, fixtures.page.body);

  // Each of the three reached the origin (a miss, not an answer from memory); the hit rows' URL did not.
  const hit = await h2(`${ceiling}${PATHS.page}`, { ca: ca.cert, headers: { 'accept-encoding': 'br' } });
  assert.deepEqual(hit.body, fixtures.page.br);
  const counts = await (await request(`${originUrl}/__counts`)).body.json() as { paths: Record<string, number> };
  assert.equal(counts.paths['/page.html'], 3, JSON.stringify(counts));
});
