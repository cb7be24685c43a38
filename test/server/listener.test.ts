import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { h1, h2, h2session, h2request, startOrigin, startOutpost } from '../helpers/outpost.ts';

const proxied = async (extra: Record<string, any> = {}) => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow done'), 400);
    else if (req.url === '/upload') req.resume().on('end', () => res.end('uploaded'));
    else res.end(`ok ${req.url}`);
  });
  const outpost = await startOutpost({ ...extra, sites: [{ hosts: ['*'], origin: origin.url }] });
  return { origin, outpost, close: async () => { await outpost.close(); await origin.close(); } };
};

const handshake = (port: number, options: { servername?: string; ALPNProtocols?: string[]; minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; ciphers?: string }) =>
  new Promise<TLSSocket>((resolve, reject) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...options });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });

test('ALPN: h2 first, http/1.1 for clients without h2', async () => {
  const { outpost, close } = await proxied();
  try {
    const h2socket = await handshake(outpost.httpsPort, { ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(h2socket.alpnProtocol, 'h2');
    h2socket.destroy();
    const h1socket = await handshake(outpost.httpsPort, { ALPNProtocols: ['http/1.1'] });
    assert.equal(h1socket.alpnProtocol, 'http/1.1');
    h1socket.destroy();
    assert.equal((await h2(`${outpost.url}/a`)).body.toString(), 'ok /a');
    assert.equal((await h1(`${outpost.url}/b`)).body.toString(), 'ok /b');
  } finally {
    await close();
  }
});

test('TLS: 1.0/1.1 and CBC suites are refused; modern profile is TLS 1.3 only', async () => {
  const { outpost, close } = await proxied();
  try {
    await assert.rejects(handshake(outpost.httpsPort, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA' }));
    const ok = await handshake(outpost.httpsPort, { maxVersion: 'TLSv1.2' });
    assert.match(ok.getCipher().name, /GCM|CHACHA20/);
    ok.destroy();
  } finally {
    await close();
  }
  const modern = await proxied({ tls: { profile: 'modern' } });
  try {
    await assert.rejects(handshake(modern.outpost.httpsPort, { maxVersion: 'TLSv1.2' }));
    const ok = await handshake(modern.outpost.httpsPort, {});
    assert.equal(ok.getProtocol(), 'TLSv1.3');
    ok.destroy();
  } finally {
    await modern.close();
  }
});

test('TLS 1.2: a client that asks to renegotiate gets the no_renegotiation alert and its connection fails; over a fresh connection it is served', async () => {
  const { outpost, close } = await proxied();
  try {
    const socket = await handshake(outpost.httpsPort, { maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] });
    const outcome = await new Promise<string | undefined>((resolve) => {
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
      socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? (err as NodeJS.ErrnoException).code : 'renegotiated'));
    });
    assert.equal(outcome, 'ERR_SSL_NO_RENEGOTIATION');
    socket.destroy();
    assert.equal((await h1(`${outpost.url}/after`)).body.toString(), 'ok /after');
  } finally {
    await close();
  }
});

test('SNI picks the certificate: exact host, one-label wildcard, else the first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-sni-'));
  const make = async (name: string, cn: string) => {
    const pems = await generate([{ name: 'commonName', value: cn }], { keyType: 'ec', curve: 'P-256' });
    writeFileSync(join(dir, `${name}.pem`), pems.cert);
    writeFileSync(join(dir, `${name}.key`), pems.private);
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  const a = await make('a', 'a.test');
  const wild = await make('wild', 'wild.b.test');
  const { outpost, close } = await proxied({
    tls: { certificates: [{ hosts: ['a.test'], ...a }, { hosts: ['*.b.test'], ...wild }] },
  });
  const subjectOf = async (servername: string) => {
    const socket = await handshake(outpost.httpsPort, { servername });
    const cn = socket.getPeerCertificate().subject.CN;
    socket.destroy();
    return cn;
  };
  try {
    assert.equal(await subjectOf('a.test'), 'a.test');
    assert.equal(await subjectOf('x.b.test'), 'wild.b.test');
    assert.equal(await subjectOf('X.B.TEST'), 'wild.b.test');
    assert.equal(await subjectOf('deep.x.b.test'), 'a.test'); // a wildcard covers one label only
    assert.equal(await subjectOf('other.test'), 'a.test');
  } finally {
    await close();
  }
});

test('plain HTTP redirects to HTTPS with 308, keeping path and query', async () => {
  const { outpost, close } = await proxied({ listen: { http: 0 } });
  try {
    const res = await h1(`http://127.0.0.1:${outpost.httpPort}/a/b?c=d`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, `https://127.0.0.1:${outpost.httpsPort}/a/b?c=d`);
    const bad = await h1(`http://127.0.0.1:${outpost.httpPort}/`, { headers: { host: 'evil"host' } });
    assert.equal(bad.status, 400);
    // Framing the HTTPS listener refuses (RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding) is refused
    // here too, and the connection ends with it: the request behind it gets no redirect.
    const socket = netConnect(outpost.httpPort!, '127.0.0.1');
    socket.write('POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    let raw = '';
    socket.on('data', (chunk: Buffer) => { raw += chunk; });
    const giveUp = setTimeout(() => socket.destroy(), 3000); // a connection kept open fails below, not by a hang
    await once(socket, 'close');
    clearTimeout(giveUp);
    assert.match(raw, /^HTTP\/1\.1 400 /, raw);
    assert.match(raw, /\r\nConnection: close\r\n/i, raw);
    assert.equal(raw.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, raw);
    // OPTIONS * asks about the server, not a URL: answered, not redirected (RFC 9110 §9.3.7).
    const asking = netConnect(outpost.httpPort!, '127.0.0.1');
    asking.write('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let answer = '';
    asking.on('data', (chunk: Buffer) => { answer += chunk; });
    const giveUpAsking = setTimeout(() => asking.destroy(), 3000);
    await once(asking, 'close');
    clearTimeout(giveUpAsking);
    assert.match(answer, /^HTTP\/1\.1 200 /, answer);
    assert.match(answer, /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i, answer);
  } finally {
    await close();
  }
});

test('HSTS when configured, on HTTPS responses', async () => {
  const { outpost, close } = await proxied({ hsts: { maxAge: '365d', includeSubDomains: true } });
  try {
    const res = await h2(`${outpost.url}/`);
    assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  } finally {
    await close();
  }
});

test('limits: oversized headers are refused alike on HTTP/1.1 (431) and HTTP/2; an oversized target with 414', async () => {
  const { outpost, close } = await proxied({ limits: { maxHeaderSize: '4KB' } });
  try {
    const big = 'x'.repeat(6000);
    const res1 = await h1(`${outpost.url}/`, { headers: { 'x-big': big } });
    assert.equal(res1.status, 431);
    assert.equal((await h2(`${outpost.url}/`, { headers: { 'x-big': big } })).status, 431);
    assert.equal((await h2(`${outpost.url}/small`)).status, 200);
    // The request target alone over the limit: 414 URI Too Long (RFC 9110 §15.5.15), as nginx
    // answers, on both protocols; a long target that only the fields after it push over: 431.
    const long = `/${'a'.repeat(4200)}`;
    assert.equal((await h1(`${outpost.url}${long}`)).status, 414);
    assert.equal((await h2(`${outpost.url}${long}`)).status, 414);
    // One so long that the parser stops inside it, at the end of a read (a TLS record): told by
    // that read, which holds the request's start and no line end. A field that long still gets 431.
    const huge = `/${'a'.repeat(100_000)}`;
    assert.equal((await h1(`${outpost.url}${huge}`)).status, 414);
    assert.equal((await h1(`${outpost.url}/`, { headers: { 'x-huge': 'x'.repeat(100_000) } })).status, 431);
    const within = `/${'a'.repeat(3000)}`;
    assert.equal((await h1(`${outpost.url}${within}`, { headers: { 'x-more': 'x'.repeat(2000) } })).status, 431);
    assert.equal((await h2(`${outpost.url}${within}`, { headers: { 'x-more': 'x'.repeat(2000) } })).status, 431);
  } finally {
    await close();
  }
});

test('limits (defaults): HTTP/2 gets 431 for a header list over maxHeaderSize, not a bare reset, and takes as many fields as HTTP/1.1', async () => {
  const { outpost, close } = await proxied();
  try {
    const session = await h2session(outpost.url);
    try {
      // 20 KB against the default 16 KB: before, Node reset the stream (ENHANCE_YOUR_CALM) at the
      // advertised size, with no status for the client to read.
      assert.equal((await h2request(session, '/big', { headers: { 'x-big': 'x'.repeat(20_000) } })).status, 431);
      // 200 cookie crumbs (RFC 9113 §8.2.3) and 300 small fields: Node's own limit was 128 fields.
      const crumbs = await h2request(session, '/crumbs', { headers: { cookie: Array.from({ length: 200 }, (_, i) => `c${i}=v`) as unknown as string } });
      assert.equal(crumbs.status, 200);
      const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`x-field-${i}`, 'v']));
      assert.equal((await h2request(session, '/many', { headers: many })).status, 200);
      assert.equal((await h1(`${outpost.url}/many`, { headers: many })).status, 200, 'as HTTP/1.1 does');
    } finally {
      session.close();
    }
  } finally {
    await close();
  }
});

test('HTTP/1.1 pipelining: a request the parser refuses is not answered before the one ahead of it (RFC 9112 §9.3.2)', async () => {
  const { outpost, close } = await proxied({ limits: { maxHeaderSize: '4KB' } });
  try {
    for (const second of [`GET /b HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'x'.repeat(6000)}\r\n\r\n`, 'GARBAGE\r\n\r\n']) {
      const socket = await handshake(outpost.httpsPort, { ALPNProtocols: ['http/1.1'] });
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      // The first request waits 400 ms at the origin; the second cannot be parsed.
      socket.write(`GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n${second}`);
      await once(socket, 'close');
      const text = Buffer.concat(chunks).toString('latin1');
      // The first status line is the first request's answer, whole; then the connection closes
      // without a status for what could not be parsed (before, its 431 or 400 came first, read by
      // the client as the answer to GET /slow).
      assert.match(text, /^HTTP\/1\.1 200 OK\r\n/, text.slice(0, 80));
      assert.ok(text.endsWith('slow done'), text.slice(-80));
      assert.equal(text.match(/HTTP\/1\.1 \d{3}/g)?.length, 1, text);
    }
  } finally {
    await close();
  }
});

test('HTTP/1.1: a request line naming another major version gets 505 (RFC 9110 §15.6.6), an unknown method 501', async () => {
  const { outpost, origin, close } = await proxied();
  try {
    // A method Node's parser does not know, in a well-formed line, is 501 (RFC 9110 §9.1; was 400);
    // a line that is not one stays 400.
    for (const [line, status] of [['GET /v HTTP/2.0', 505], ['GET /v', 505], ['GET /v HTTP/1.0', 200], ['GET /v HTTP/1.1', 200], ['FROB /v HTTP/1.1', 501], ['GARBAGE', 400]] as const) {
      const socket = await handshake(outpost.httpsPort, { ALPNProtocols: ['http/1.1'] });
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.write(`${line}\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      await once(socket, 'close');
      assert.match(Buffer.concat(chunks).toString('latin1'), new RegExp(`^HTTP/1\\.1 ${status} `), line);
    }
    assert.equal(origin.seen.length, 2, 'only the HTTP/1.x ones reached the origin');
  } finally {
    await close();
  }
});

test('limits: a client trickling its headers is cut off by the headers timeout', async () => {
  const { outpost, close } = await proxied({ limits: { headersTimeout: '1s' } });
  try {
    const socket = await handshake(outpost.httpsPort, { ALPNProtocols: ['http/1.1'] });
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
    const trickle = setInterval(() => socket.write('X-A: b\r\n'), 200);
    const started = Date.now();
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    await once(socket, 'close');
    clearInterval(trickle);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 4000, `closed after ${elapsed} ms`);
    assert.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 408|^$/);
  } finally {
    await close();
  }
});

test('HTTP/2: Expect: 100-continue gets its 100 before the body is sent; another expectation gets 417, as over HTTP/1.1', async () => {
  const { outpost, origin, close } = await proxied();
  try {
    const session = await h2session(outpost.url);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/upload', expect: '100-continue' }, { endStream: false });
      // Before: no 100 ever came, and a client waited out a timer of its own before sending.
      const [status] = await once(stream, 'continue').then(() => [100], () => [0]);
      assert.equal(status, 100);
      stream.end('the body');
      const [headers] = await once(stream, 'response') as [Record<string, unknown>];
      assert.equal(headers[':status'], 200);
      stream.resume();
      await once(stream, 'end');
      const other = await h2request(session, '/other', { method: 'POST', headers: { expect: 'something-else' }, body: 'x' });
      assert.equal(other.status, 417);
      assert.equal(origin.seen.filter((r) => r.url === '/other').length, 0);
    } finally {
      session.close();
    }
    assert.equal((await h1(`${outpost.url}/other`, { method: 'POST', headers: { expect: 'something-else' }, body: 'x' })).status, 417, 'as HTTP/1.1 answers');
  } finally {
    await close();
  }
});

test('limits: a request body trickled past the deadline is cut off (HTTP/2)', async () => {
  const { outpost, close } = await proxied({ limits: { requestTimeout: '1s' } });
  try {
    const session = await h2session(outpost.url);
    const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false });
    const trickle = setInterval(() => stream.write('x'), 100);
    const [headers] = await once(stream, 'response');
    clearInterval(trickle);
    assert.equal(headers[':status'], 408);
    stream.destroy();
    session.close();
  } finally {
    await close();
  }
});

test('limits: an announced body over maxBodySize is a 413 before any byte reaches the origin', async () => {
  const { outpost, origin, close } = await proxied({ limits: { maxBodySize: '1KB' } });
  try {
    const res = await h1(`${outpost.url}/upload`, { method: 'POST', body: Buffer.alloc(2048) });
    assert.equal(res.status, 413);
    const res2 = await h2(`${outpost.url}/upload`, { method: 'POST', body: Buffer.alloc(4096) });
    assert.equal(res2.status, 413);
    assert.equal(origin.seen.filter((r) => r.url === '/upload').length, 0);
  } finally {
    await close();
  }
});

test('HTTP/2 advertises a bounded number of concurrent streams', async () => {
  const { outpost, close } = await proxied();
  try {
    const session = await h2session(outpost.url);
    await once(session, 'remoteSettings');
    assert.equal(session.remoteSettings.maxConcurrentStreams, 128);
    session.close();
  } finally {
    await close();
  }
});

/** With a passthrough host, a front door reads each ClientHello and hands the rest to TLS: the same limits and drain hold. */
const frontDoor = { tls: { passthrough: [{ hosts: ['elsewhere.test'], to: '127.0.0.1:9' }] } };

for (const [name, extra] of [['', {}], [' (through the front door)', frontDoor]] as const) {
  test(`graceful shutdown: in-flight requests finish, new connections are refused${name}`, async () => {
    const { outpost, origin } = await proxied(extra);
    const session = await h2session(outpost.url);
    const inFlight = h2request(session, '/slow');
    const h1InFlight = h1(`${outpost.url}/slow`);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = outpost.close();
    const [res, res1] = await Promise.all([inFlight, h1InFlight]);
    assert.equal(res.body.toString(), 'slow done');
    assert.equal(res1.body.toString(), 'slow done');
    await closed;
    await assert.rejects(new Promise((resolve, reject) => {
      const socket = netConnect(outpost.httpsPort, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(null); });
      socket.once('error', reject);
    }));
    session.destroy();
    await origin.close();
  });
}

test('limits: a connection that never finishes its TLS handshake is dropped', async () => {
  const { outpost, close } = await proxied({ limits: { headersTimeout: '1s' } });
  try {
    const socket = netConnect(outpost.httpsPort, '127.0.0.1');
    await once(socket, 'connect');
    const started = Date.now();
    socket.resume();
    await once(socket, 'close');
    assert.ok(Date.now() - started < 4000, `dropped after ${Date.now() - started} ms`);
  } finally {
    await close();
  }
});

for (const [name, extra] of [['', {}], [' (through the front door)', frontDoor]] as const) {
  test(`limits: connections beyond maxConnections are refused${name}`, async () => {
    const { outpost, close } = await proxied({ ...extra, limits: { maxConnections: 2 } });
    const held: TLSSocket[] = [];
    try {
      for (let i = 0; i < 2; i++) held.push(await handshake(outpost.httpsPort, { ALPNProtocols: ['h2'] }));
      await assert.rejects(handshake(outpost.httpsPort, { ALPNProtocols: ['h2'] }));
      held.pop()!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      held.push(await handshake(outpost.httpsPort, { ALPNProtocols: ['h2'] }));
    } finally {
      for (const socket of held) socket.destroy();
      await close();
    }
  });
}

test('HTTP/2: a :path that is not origin-form is refused (nghttp2 resets it; a 400 if it got through)', async () => {
  const { outpost, origin, close } = await proxied();
  try {
    const session = await h2session(outpost.url);
    for (const path of ['http://evil.example/x', '*', 'x/y']) {
      const outcome = await h2request(session, path).then((res) => res.status, (err: Error) => err.message);
      assert.match(String(outcome), /^400$|PROTOCOL_ERROR/, path);
    }
    assert.equal(origin.seen.length, 0);
    session.close();
  } finally {
    await close();
  }
});

test('HTTP/2 requests: a field sent on several lines reaches the origin merged as Node merges it, the others as they came', async () => {
  const origin = await startOrigin((_req, res) => res.end('ok'));
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, cache: { enabled: false } }] });
  try {
    const res = await h2(`${outpost.url}/fields`, {
      headers: {
        cookie: ['a=1', 'b=2'], // RFC 9113 §8.2.3: crumbs joined with "; "
        accept: ['text/html', 'application/json'],
        'x-trace': ['one', 'two', 'three'],
        'x-plain': 'alone',
        'user-agent': 'first-agent',
      },
    });
    assert.equal(res.status, 200);
    const seen = origin.seen[0].headers;
    assert.equal(seen.cookie, 'a=1; b=2');
    assert.equal(seen.accept, 'text/html, application/json');
    assert.equal(seen['x-trace'], 'one, two, three');
    assert.equal(seen['x-plain'], 'alone');
    assert.equal(seen['user-agent'], 'first-agent');
    assert.equal(seen[':path'], undefined);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2 responses: a field with several lines keeps each, connection-specific fields are left out', async () => {
  const origin = await startOrigin((_req, res) => {
    res.setHeader('set-cookie', ['a=1; Secure', 'b=2; Secure']);
    res.setHeader('cache-control', 'no-store');
    res.setHeader('keep-alive', 'timeout=5');
    res.end('two cookies');
  });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const res = await h2(`${outpost.url}/cookies`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Secure', 'b=2; Secure']);
    assert.equal(res.headers['keep-alive'], undefined);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.body.toString(), 'two cookies');
  } finally {
    await outpost.close();
    await origin.close();
  }
});
