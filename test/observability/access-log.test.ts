import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { h1, h2, h2session, startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { startLogs } from '../../src/observability/log.ts';
import { cacheResult } from '../../src/observability/cache-result.ts';

const dir = mkdtempSync(join(tmpdir(), 'outpost-log-'));

/** The entries in a JSON access log, once there are at least `count` (writes are asynchronous). */
async function entries(file: string, count: number): Promise<Array<Record<string, any>>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const lines = text.split('\n').filter((l) => l !== '');
    if (lines.length >= count) return lines.map((l) => JSON.parse(l));
    if (Date.now() > deadline) assert.fail(`expected ${count} entries in ${file}, got:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('cache result: one word from our Cache-Status member', () => {
  const table: Array<[string | undefined, string]> = [
    [undefined, 'none'],
    ['Outpost; hit; ttl=52', 'hit'],
    ['Outpost; hit; ttl=-3; detail=stale-while-revalidate', 'stale'],
    ['Outpost; fwd=uri-miss; fwd-status=200; stored', 'miss'],
    ['Outpost; fwd=vary-miss; fwd-status=200', 'miss'],
    ['Outpost; fwd=stale; fwd-status=304', 'revalidated'],
    ['Outpost; fwd=stale; fwd-status=502; ttl=-5; detail=grace', 'stale'],
    ['Outpost; fwd=stale; fwd-status=200; stored', 'miss'],
    ['Outpost; fwd=uri-miss; collapsed; fwd-status=200', 'collapsed'],
    ['Outpost; fwd=bypass; fwd-status=200', 'bypass'],
    ['Outpost; fwd=method; fwd-status=201', 'pass'],
    ['OriginCache; hit, Outpost; fwd=uri-miss; fwd-status=200', 'miss'],
    ['OriginCache; hit', 'none'],
  ];
  for (const [value, expected] of table) assert.equal(cacheResult(value), expected, String(value));
});

test('JSON access log: written at the response end with the bytes sent, the time to the last byte, the cache result and the upstream', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/streamed') {
      // No Content-Length, and the last bytes 300 ms after the headers.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' });
      res.write(Buffer.alloc(1000, 'a'));
      setTimeout(() => res.end(Buffer.alloc(500, 'b')), 300);
      return;
    }
    res.setHeader('cache-control', 'max-age=60');
    res.end('cached body');
  });
  const file = join(dir, 'json.log');
  const logs = startLogs({ access: file, format: 'json' });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    await h2(`${outpost.url}/page`);
    await h2(`${outpost.url}/page`, { headers: { 'user-agent': 'test-agent', referer: 'https://example.com/' } });
    const streamed = await h1(`${outpost.url}/streamed`);
    assert.equal(streamed.body.length, 1500);
    const [miss, hit, slow] = await entries(file, 3);
    assert.deepEqual(Object.keys(miss), ['time', 'remote', 'method', 'host', 'path', 'protocol', 'status', 'bytes', 'duration_ms', 'cache', 'encoding', 'upstream', 'outcome', 'error', 'referer', 'user_agent']);
    assert.equal(miss.cache, 'miss');
    assert.equal(miss.upstream, origin.url);
    assert.equal(miss.protocol, 'HTTP/2');
    assert.equal(miss.remote, '127.0.0.1');
    assert.equal(miss.host, '127.0.0.1');
    assert.equal(hit.cache, 'hit');
    assert.equal(hit.upstream, null, 'a hit never reached an upstream');
    assert.equal(hit.bytes, 'cached body'.length);
    assert.equal(hit.user_agent, 'test-agent');
    assert.equal(hit.referer, 'https://example.com/');
    assert.equal(hit.outcome, 'ok');
    assert.match(hit.time, /^\d{4}-\d\d-\d\dT/);
    // Streamed without a length: the bytes really sent, and the duration runs to the last of them.
    assert.equal(slow.path, '/streamed');
    assert.equal(slow.protocol, 'HTTP/1.1');
    assert.equal(slow.bytes, 1500);
    assert.ok(slow.duration_ms >= 290, `duration ${slow.duration_ms} ms runs to the last byte`);
  } finally {
    await outpost.close();
    await logs.close();
    await origin.close();
  }
});

test('JSON access log: a client that resets mid-body is logged as client-abort with the bytes sent so far', async () => {
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' });
    res.write(Buffer.alloc(2000, 'a'));
    const timer = setInterval(() => res.write(Buffer.alloc(100, 'b')), 50);
    res.on('close', () => clearInterval(timer));
  });
  const file = join(dir, 'abort.log');
  const logs = startLogs({ access: file, format: 'json' });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const session = await h2session(outpost.url);
    const stream = session.request({ ':path': '/endless' });
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.close(0x8); // RST_STREAM(CANCEL)
    const [entry] = await entries(file, 1);
    session.close();
    assert.equal(entry.outcome, 'client-abort');
    assert.equal(entry.status, 200);
    assert.ok(entry.bytes >= 2000 && entry.bytes < 100_000, `bytes ${entry.bytes}`);
  } finally {
    await outpost.close();
    await logs.close();
    await origin.close();
  }
});

test('access log: the listener\'s own 400, 413, 431 and 501 answers are logged too', async () => {
  const file = join(dir, 'refused.log');
  const logs = startLogs({ access: file, format: 'json' });
  const outpost = await startOutpost({ limits: { maxHeaderSize: '4KB', maxBodySize: '1KB' } });
  const big = 'x'.repeat(6000);
  try {
    // HTTP/1.1 headers over the limit: Node's parser refuses them before any request exists.
    assert.equal((await h1(`${outpost.url}/big`, { headers: { 'x-big': big } })).status, 431);
    assert.equal((await h2(`${outpost.url}/big2`, { headers: { 'x-big': big } })).status, 431);
    assert.equal((await h1(`${outpost.url}/upload`, { method: 'POST', headers: { 'content-length': '5000' }, body: Buffer.alloc(5000) })).status, 413);
    // A transfer coding we do not implement, and a malformed request line, over raw TLS.
    const raw = async (request: string) => new Promise<string>(async (resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: outpost.httpsPort, ca: await testCa(), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => socket.end(request));
      let text = '';
      socket.on('data', (d) => { text += d; });
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(await raw('POST /te HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'), /^HTTP\/1\.1 501 /);
    assert.match(await raw('GET /bad path HTTP/1.1\r\nHost: localhost\r\n\r\n'), /^HTTP\/1\.1 400 /);
    const logged = await entries(file, 5);
    const byStatus = new Map(logged.map((e) => [e.status, e]));
    assert.deepEqual([...byStatus.keys()].sort(), [400, 413, 431, 501]);
    assert.equal(logged.filter((e) => e.status === 431).length, 2);
    assert.equal(byStatus.get(413)!.path, '/upload');
    assert.equal(byStatus.get(501)!.method, 'POST');
    assert.equal(byStatus.get(501)!.error, null);
    for (const entry of logged) assert.equal(entry.remote, '127.0.0.1');
  } finally {
    await outpost.close();
    await logs.close();
  }
});

test('text access log keeps its shape, plus the cache result; reopen() moves on to a new file after a rename (logrotate)', async () => {
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'max-age=60'); res.end('hello'); });
  const file = join(dir, 'text.log');
  const logs = startLogs({ access: file, format: 'text' });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  const lines = async (path: string, count: number) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
      const found = text.split('\n').filter((l) => l !== '');
      if (found.length >= count) return found;
      if (Date.now() > deadline) assert.fail(`expected ${count} lines in ${path}: ${text}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  try {
    await h2(`${outpost.url}/t?q=1`, { headers: { 'user-agent': 'ua/1' } });
    await h2(`${outpost.url}/t?q=1`);
    const [first, second] = await lines(file, 2);
    assert.match(first, /^127\.0\.0\.1 127\.0\.0\.1 \[\d{4}-[^\]]+\] "GET \/t\?q=1 HTTP\/2" 200 5 "-" "ua\/1" \d+\.\dms cache=miss( |$)/);
    assert.match(second, / 200 5 "-" "-" \d+\.\dms cache=hit/);
    renameSync(file, `${file}.1`);
    logs.reopen();
    await h2(`${outpost.url}/after-rotate`);
    const [rotated] = await lines(file, 1);
    assert.match(rotated, /"GET \/after-rotate HTTP\/2"/);
    assert.equal((await lines(`${file}.1`, 2)).length, 2);
  } finally {
    await outpost.close();
    await logs.close();
    await origin.close();
  }
});

test('JSON access log lines stay valid JSON whatever the client sent (quotes, backslashes, control and non-ASCII characters)', async () => {
  const { formatAccessJson } = await import('../../src/observability/log.ts');
  const hostile = 'a"b\\c\u0001d\u00e9\u2028e';
  const line = formatAccessJson({
    request: { method: 'GET', target: `/x?${hostile}`, host: hostile, remoteAddress: '::1', httpVersion: '1.1', headers: { 'user-agent': hostile, referer: ['a', 'b'] as unknown as string }, startedAt: 0n, notes: new Map([['upstream', hostile]]) },
    status: 200, headers: { 'content-encoding': 'gzip' }, bytes: 3, durationMs: 1.23456, outcome: 'ok', cache: 'miss',
  }, Date.UTC(2026, 10, 30, 6, 0, 0, 7));
  assert.ok(line.endsWith('}\n') && !line.slice(0, -1).includes('\n'));
  const entry = JSON.parse(line);
  assert.equal(entry.time, '2026-11-30T06:00:00.007Z');
  assert.equal(entry.path, `/x?${hostile}`);
  assert.equal(entry.host, hostile);
  assert.equal(entry.user_agent, hostile);
  assert.equal(entry.upstream, hostile);
  assert.equal(entry.referer, 'a, b');
  assert.equal(entry.duration_ms, 1.235);
  assert.equal(entry.encoding, 'gzip');
});
