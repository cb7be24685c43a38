import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { h1, h2, h2request, h2session, startOutpost, testCa, type RunningOutpost } from '../helpers/outpost.ts';

// A real listener (TLS, HTTP/2 and HTTP/1.1 on one port) serving a static site from a temp dir.
let tmp: string;
let outpost: RunningOutpost;
const BODY = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251)); // larger than one h2 frame

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'outpost-static-http-'));
  const site = join(tmp, 'site');
  mkdirSync(join(site, 'docs'), { recursive: true });
  writeFileSync(join(site, 'data.bin'), BODY);
  writeFileSync(join(site, 'docs', 'index.html'), '<h1>docs</h1>\n');
  writeFileSync(join(tmp, 'secret.txt'), 'outside');
  symlinkSync('../secret.txt', join(site, 'escape'));
  outpost = await startOutpost({ sites: [{ hosts: ['*'], static: site }] });
});

after(async () => {
  await outpost?.close();
  rmSync(tmp, { recursive: true, force: true });
});

for (const [name, request] of [['HTTP/2', h2], ['HTTP/1.1', h1]] as const) {
  test(`${name}: a file, a range, a 304, a HEAD, a redirect and refusals`, async () => {
    // whole file
    const whole = await request(`${outpost.url}/data.bin`);
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, BODY);
    assert.equal(whole.headers['content-length'], String(BODY.length));
    assert.equal(whole.headers['content-type'], 'application/octet-stream');
    const etag = whole.headers.etag as string;
    assert.match(etag, /^"[0-9a-f]+-[0-9a-f]+"$/);

    // a range from the middle
    const part = await request(`${outpost.url}/data.bin`, { headers: { range: 'bytes=70000-70009' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 70000-70009/${BODY.length}`);
    assert.deepEqual(part.body, BODY.subarray(70000, 70010));

    // revalidation: not modified, no body
    const notModified = await request(`${outpost.url}/data.bin`, { headers: { 'if-none-match': etag } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.body.length, 0);
    assert.equal(notModified.headers.etag, etag);

    // HEAD: the length of the GET, no body
    const head = await request(`${outpost.url}/data.bin`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(BODY.length));
    assert.equal(head.body.length, 0);

    const redirect = await request(`${outpost.url}/docs?x=1`);
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, '/docs/?x=1');
    assert.equal((await request(`${outpost.url}/docs/`)).body.toString(), '<h1>docs</h1>\n');

    assert.equal((await request(`${outpost.url}/escape`)).status, 403);
    assert.equal((await request(`${outpost.url}/nope`)).status, 404);
  });
}

// The helpers go through WHATWG URL, which removes dot segments (even %2e%2e): send raw targets.
const TRAVERSALS = ['/../secret.txt', '/%2e%2e/secret.txt', '/.%2E/secret.txt', '/..%2fsecret.txt', '/..%5csecret.txt'];

test('HTTP/2: raw traversal targets are refused', async () => {
  const session = await h2session(outpost.url);
  try {
    for (const path of TRAVERSALS) {
      const res = await h2request(session, path);
      assert.equal(res.status, 404, path);
      assert.ok(!res.body.includes('outside'), path);
    }
  } finally {
    session.close();
  }
});

test('HTTP/1.1: raw traversal targets are refused', async () => {
  const ca = await testCa();
  for (const path of TRAVERSALS) {
    const response = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: outpost.httpsPort, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
        socket.end(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      });
      let text = '';
      socket.setEncoding('latin1').on('data', (chunk: string) => { text += chunk; }).on('end', () => resolve(text)).on('error', reject);
    });
    assert.match(response, /^HTTP\/1\.1 404 /, path);
    assert.ok(!response.includes('outside'), path);
  }
});

test('HTTP/2: many concurrent file responses on one session', async () => {
  const session = await h2session(outpost.url);
  try {
    const responses = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      h2request(session, '/data.bin', { headers: { range: `bytes=${i * 1000}-${i * 1000 + 999}` } })));
    responses.forEach((res, i) => assert.deepEqual(res.body, BODY.subarray(i * 1000, i * 1000 + 1000)));
  } finally {
    session.close();
  }
});
