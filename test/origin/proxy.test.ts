import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { h1, h2, h2session, h2request, startOrigin, startOutpost, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { refusedPort } from '../helpers/refused-port.ts';
import { until } from '../helpers/wait.ts';

let origin: TestOrigin;
let lastSocket: import('node:net').Socket | null = null;
let outpost: RunningOutpost;

before(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url === '/echo-headers') {
      res.writeHead(200, {
        'content-type': 'application/json',
        server: 'secret-origin/1.0',
        'x-powered-by': 'php',
        connection: 'x-internal',
        'x-internal': 'do not forward',
        'keep-alive': 'timeout=5',
        'proxy-authenticate': 'Basic realm="origin-side proxy"',
        'proxy-authentication-info': 'nextnonce="abc"',
      });
      res.end(JSON.stringify(req.headers));
    } else if (req.url === '/upload') {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      req.on('end', () => res.end(JSON.stringify({ bytes })));
    } else if (req.url?.startsWith('/download/')) {
      const total = Number(req.url.split('/')[2]);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      const pump = () => {
        while (sent < total) {
          const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (req.url === '/status-999') {
      // Node's HTTP/1.1 server writes any three digits; RFC 9110 §15 calls 600-999 invalid
      res.writeHead(999, { 'cache-control': 'max-age=100', 'content-length': 2 });
      res.end('ok');
    } else if (req.url === '/two-types') {
      // two Content-Type lines (Node writes one per array member): a field HTTP/2 sends once at most
      res.setHeader('content-type', ['text/plain', 'text/html']);
      res.writeHead(200, { 'cache-control': 'max-age=100', 'content-length': 2 });
      res.end('ok');
    } else if (req.url === '/no-content') {
      // a 204 that declares a length (RFC 9110 §8.6: it must not); Node's server sends it as given
      res.writeHead(204, { 'cache-control': 'max-age=100', 'content-length': 5 });
      res.end();
    } else if (req.url === '/hang') {
      // never answers: the client's abort must reach us
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`origin saw ${req.method} ${req.url}`);
    }
  });
  origin.server.on('request', (req) => { lastSocket = req.socket; });
  outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

test('GET is proxied over HTTP/2 and HTTP/1.1 with the path and query intact', async () => {
  const viaH2 = await h2(`${outpost.url}/a/b?x=1&y=%20z`);
  assert.equal(viaH2.status, 200);
  assert.equal(viaH2.body.toString(), 'origin saw GET /a/b?x=1&y=%20z');
  const viaH1 = await h1(`${outpost.url}/c`, { method: 'DELETE' });
  assert.equal(viaH1.body.toString(), 'origin saw DELETE /c');
});

test('request headers: hop-by-hop never cross, forwarding headers are ours, Host is the authority', async () => {
  const res = await h1(`${outpost.url}/echo-headers`, {
    headers: {
      host: 'shop.example:8443',
      connection: 'keep-alive, x-hop',
      'x-hop': 'hop only',
      'keep-alive': 'timeout=3',
      te: 'trailers',
      'proxy-authorization': 'Basic Zm9vOmJhcg==',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-host': 'evil.example',
      forwarded: 'for=6.6.6.6',
      'x-custom': 'kept',
    },
  });
  const seen = JSON.parse(res.body.toString());
  assert.equal(seen.host, 'shop.example:8443');
  assert.equal(seen['x-custom'], 'kept');
  for (const name of ['x-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(seen[name], undefined, name);
  // a client's claims are replaced: the peer is not a trusted proxy
  assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  assert.equal(seen['x-forwarded-proto'], 'https');
  assert.equal(seen['x-forwarded-host'], 'shop.example:8443');
  assert.equal(seen.forwarded, 'for=127.0.0.1;host="shop.example:8443";proto=https');
  assert.equal(seen.via, '1.1 outpost');
});

test('HTTP/2 :authority becomes Host; Via names protocol 2', async () => {
  const res = await h2(`${outpost.url}/echo-headers`);
  const seen = JSON.parse(res.body.toString());
  assert.equal(seen.host, `127.0.0.1:${outpost.httpsPort}`);
  assert.equal(seen.via, '2 outpost');
});

test('response headers: origin identity and hop-by-hop headers are dropped, Via is added', async () => {
  for (const send of [h1, h2]) {
    const res = await send(`${outpost.url}/echo-headers`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.server, undefined);
    assert.equal(res.headers['x-powered-by'], undefined);
    assert.equal(res.headers['x-internal'], undefined);
    assert.equal(res.headers['keep-alive'], undefined);
    assert.equal(res.headers['proxy-authenticate'], undefined);
    assert.equal(res.headers['proxy-authentication-info'], undefined); // RFC 9111 §3.1
    assert.equal(res.headers.via, '1.1 outpost');
  }
});

test('trusted proxies: their X-Forwarded-For chain is kept and extended', async () => {
  const trusting = await startOutpost({ trustedProxies: ['127.0.0.0/8'], sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const res = await h1(`${trusting.url}/echo-headers`, { headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'http' } });
    const seen = JSON.parse(res.body.toString());
    assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
  } finally {
    await trusting.close();
  }
});

test('fields naming the client\'s address (X-Real-IP, True-Client-IP, ...) reach the origin only from trusted proxies, or when kept', async () => {
  const claims = { 'x-real-ip': '203.0.113.66', 'true-client-ip': '203.0.113.66', 'cf-connecting-ip': '203.0.113.66', 'x-client-ip': '203.0.113.66' };
  const seenBy = async (url: string, client = h1) => JSON.parse((await client(`${url}/echo-headers`, { headers: claims })).body.toString()) as Record<string, string>;
  // Before 2026-12-05 a client's own claim went to the origin as it was, where X-Forwarded-For was replaced.
  for (const client of [h1, h2]) {
    const seen = await seenBy(outpost.url, client);
    for (const field of Object.keys(claims)) assert.equal(seen[field], undefined, field);
    assert.notEqual(seen['x-forwarded-for'], '203.0.113.66');
  }
  const trusting = await startOutpost({ trustedProxies: ['127.0.0.0/8', '::1'], sites: [{ hosts: ['*'], origin: origin.url }] });
  const keeping = await startOutpost({ proxy: { requestHeaders: { keep: ['x-real-ip'] } }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const fromProxy = await seenBy(trusting.url);
    for (const field of Object.keys(claims)) assert.equal(fromProxy[field], '203.0.113.66', `${field} from a trusted proxy`);
    const kept = await seenBy(keeping.url);
    assert.equal(kept['x-real-ip'], '203.0.113.66', 'kept by the operator');
    assert.equal(kept['true-client-ip'], undefined);
  } finally {
    await trusting.close();
    await keeping.close();
  }
});

const MB = 1024 * 1024;
function generated(total: number): Readable {
  const chunk = Buffer.alloc(256 * 1024, 1);
  let left = total;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const piece = chunk.subarray(0, Math.min(chunk.length, left));
      left -= piece.length;
      this.push(piece);
    },
  });
}

test('a 200 MB upload and a 200 MB download stream through with flat memory', async () => {
  const size = 200 * MB;
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 50);
  try {
    // upload over HTTP/2 (no Content-Length: DATA frames until END_STREAM)
    const up = await h2(`${outpost.url}/upload`, { method: 'POST', body: generated(size) });
    assert.equal(up.status, 200);
    assert.deepEqual(JSON.parse(up.body.toString()), { bytes: size });
    // upload over HTTP/1.1 with Content-Length
    const up1 = await h1(`${outpost.url}/upload`, { method: 'PUT', body: generated(size), headers: { 'content-length': String(size) } });
    assert.deepEqual(JSON.parse(up1.body.toString()), { bytes: size });
    // download over HTTP/2, counted as it arrives
    const session = await h2session(outpost.url);
    const stream = session.request({ ':path': `/download/${size}` });
    let received = 0;
    for await (const chunk of stream) received += (chunk as Buffer).length;
    session.close();
    assert.equal(received, size);
  } finally {
    clearInterval(sampler);
  }
  // Buffering any of those bodies would add at least 200 MB; client, Outpost and origin share this
  // process, so garbage in flight counts too: the bound sits between the two.
  assert.ok(peak - rssBefore < 180 * MB, `rss grew by ${Math.round((peak - rssBefore) / MB)} MB`);
});

test('a dead origin is a 502 with a short body that names no upstream, never a hang', async () => {
  const deadPort = await refusedPort();
  const dead = await startOutpost({ sites: [{ hosts: ['*'], origin: `http://127.0.0.1:${deadPort}` }] });
  try {
    for (const send of [h1, h2]) {
      const res = await send(`${dead.url}/x`);
      assert.equal(res.status, 502);
      // what happened in general terms; which upstream and why goes to the log only
      assert.equal(res.body.toString(), 'Bad Gateway: the origin could not be reached\n');
    }
  } finally {
    await dead.close();
  }
});

test('an origin status outside 100-599 is a 502 on both protocols: never stored, never a crash', async () => {
  const reached = () => origin.seen.filter((r) => r.url === '/status-999').length;
  const before = reached();
  for (const send of [h1, h2, h1, h2]) {
    const res = await send(`${outpost.url}/status-999`);
    assert.equal(res.status, 502);
    assert.equal(res.body.toString(), 'Bad Gateway: the origin sent an invalid status code (999)\n');
  }
  assert.equal(reached() - before, 4, 'each request went to the origin: nothing was stored');
  assert.equal((await h2(`${outpost.url}/after-999`)).status, 200);
});

test('an origin that repeats a field HTTP/2 sends once (two Content-Type lines): the first goes, fresh and stored', async () => {
  for (const send of [h2, h2, h2, h1]) {
    const res = await send(`${outpost.url}/two-types`);
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok');
    if (send === h2) assert.equal(res.headers['content-type'], 'text/plain');
  }
  assert.equal(origin.seen.filter((r) => r.url === '/two-types').length, 1);
});

test('a 204 that declares a Content-Length reaches clients without it, over both protocols', async () => {
  // the first from the origin, the others from the cache
  for (const send of [h2, h1, h2, h1]) {
    const res = await send(`${outpost.url}/no-content`);
    assert.equal(res.status, 204);
    assert.equal(res.headers['content-length'], undefined);
  }
});

test('several upstreams: round-robin; one that refuses is skipped for failTimeout (passive health)', async () => {
  const deadPort = await refusedPort();
  const pair = await startOutpost({ proxy: { failTimeout: '30s' }, sites: [{ hosts: ['*'], origin: [`http://127.0.0.1:${deadPort}`, origin.url] }] });
  try {
    // GETs are retried on the next upstream: none fails
    for (let i = 0; i < 4; i++) assert.equal((await h2(`${pair.url}/rr-get-${i}`)).status, 200);
    // POSTs are not retried, but the dead upstream is already marked down: none fails either
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await h1(`${pair.url}/upload`, { method: 'POST', body: 'x' })).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200]);
  } finally {
    await pair.close();
  }
});

test('a silent origin is a 504 after the headers timeout', async () => {
  const silent = await startOutpost({ proxy: { headersTimeout: '300ms' }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const started = Date.now();
    const res = await h2(`${silent.url}/hang`);
    assert.equal(res.status, 504);
    assert.ok(Date.now() - started < 5000);
  } finally {
    await silent.close();
  }
});

test('a client that goes away cancels the origin request (the cache\'s flight is abandoned when nobody waits for it)', async () => {
  // At once, not when the origin timeout would end it (60 s).
  const within = <T>(promise: Promise<T>, what: string) => Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: the origin request was not cancelled within 5 s`)), 5000).unref()),
  ]);
  for (const protocol of ['h2', 'h1']) {
    const before = origin.seen.length;
    if (protocol === 'h2') {
      const session = await h2session(outpost.url);
      const stream = session.request({ ':path': '/hang' });
      stream.on('error', () => {});
      await until(() => origin.seen.length > before);
      const closed = once(lastOriginRequestSocket(), 'close');
      stream.close();
      await within(closed, protocol);
      session.close();
    } else {
      const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
      await once(socket, 'secureConnect');
      socket.write('GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await until(() => origin.seen.length > before);
      const closed = once(lastOriginRequestSocket(), 'close');
      socket.destroy();
      await within(closed, protocol);
    }
  }
});

const lastOriginRequestSocket = () => lastSocket!;


test('TRACE is refused with 405 and its Allow field (RFC 9110 §15.5.6), and never reaches the origin', async () => {
  const before = origin.seen.length;
  for (const client of [h1, h2]) {
    const res = await client(`${outpost.url}/trace-me`, { method: 'TRACE' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
  }
  assert.equal(origin.seen.length, before);
});

test('OPTIONS with Max-Forwards: 0 is answered here, a larger one goes on decremented (RFC 9110 §7.6.2)', async () => {
  for (const client of [h1, h2]) {
    const before = origin.seen.length;
    const last = await client(`${outpost.url}/options-here`, { method: 'OPTIONS', headers: { 'max-forwards': '0' } });
    assert.equal(last.status, 200);
    assert.equal(last.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
    assert.equal(origin.seen.length, before, 'not forwarded');
    await client(`${outpost.url}/options-on`, { method: 'OPTIONS', headers: { 'max-forwards': '5' } });
    assert.equal(origin.seen.length, before + 1);
    assert.equal(origin.seen.at(-1)!.headers['max-forwards'], '4');
    // Without one it goes on without one; other methods carry theirs untouched (§7.6.2 is about OPTIONS and TRACE).
    await client(`${outpost.url}/options-plain`, { method: 'OPTIONS' });
    assert.equal(origin.seen.at(-1)!.headers['max-forwards'], undefined);
    await client(`${outpost.url}/get-with-max-forwards`, { headers: { 'max-forwards': '0' } });
    assert.equal(origin.seen.at(-1)!.headers['max-forwards'], '0');
  }
});

test('a malformed request gets a precise 400, and the server keeps serving', async () => {
  const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  socket.write('GET /x HTTP/1.1\r\nHost: bad host!\r\n\r\n');
  const [data] = await once(socket, 'data');
  assert.match(String(data), /^HTTP\/1\.1 400 /);
  socket.destroy();
  const session = await h2session(outpost.url);
  const res = await h2request(session, '/still-alive');
  assert.equal(res.status, 200);
  session.close();
});
