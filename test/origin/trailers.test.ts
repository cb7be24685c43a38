import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { brotliDecompressSync, gzipSync } from 'node:zlib';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { connect, createServer as createH2cServer, type IncomingHttpHeaders } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { bytesMethod, grpcThroughOutpost } from '../helpers/grpc.ts';
import { startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { until } from '../helpers/wait.ts';

/**
 * Trailer fields (RFC 9110 §6.5) from the origin reach HTTP/2 clients after the body, as gRPC
 * needs: its status (grpc-status, grpc-message) always comes as trailers, and its servers want
 * `TE: trailers` on the request.
 */

interface Answer { headers: IncomingHttpHeaders; body: Buffer; trailers: IncomingHttpHeaders | null; rstCode: number }

/** One request over HTTP/2 to Outpost; what came back, trailers included. */
async function ask(url: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Answer> {
  const client = connect(url, { ca: await testCa() });
  try {
    const stream = client.request({ ':method': init.method ?? 'GET', ':path': path, ...init.headers }, { endStream: init.body === undefined });
    if (init.body !== undefined) stream.end(init.body);
    let trailers: IncomingHttpHeaders | null = null;
    stream.on('trailers', (fields: IncomingHttpHeaders) => { trailers = fields; });
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    const [headers] = await once(stream, 'response') as [IncomingHttpHeaders];
    await once(stream, 'close');
    return { headers, body: Buffer.concat(chunks), trailers, rstCode: stream.rstCode ?? -1 };
  } finally {
    client.close();
  }
}

test('gRPC through Outpost: the request goes to an HTTP/2 upstream with TE: trailers, and the status trailers come back after the body, sent whole or streamed', async () => {
  const seen: Array<{ te: unknown; body: string }> = [];
  const origin = createH2cServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ te: req.headers.te, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.addTrailers({ 'grpc-status': '0', 'grpc-message': `done ${req.url}` });
      if (req.url!.endsWith('/Slow')) {
        // The body's second half a moment later: Outpost streams it.
        res.write('first half;');
        setTimeout(() => res.end('second half'), 30);
      } else {
        res.end('whole answer');
      }
    });
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const port = (origin.address() as { port: number }).port;
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: { upstreams: [{ url: `http://127.0.0.1:${port}`, http2: true }] } }] });
  try {
    const request = { method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: Buffer.from('the message') };
    const fast = await ask(outpost.url, '/pkg.Service/Fast', request);
    assert.equal(fast.headers[':status'], 200);
    assert.equal(fast.body.toString(), 'whole answer');
    assert.deepEqual({ status: fast.trailers?.['grpc-status'], message: fast.trailers?.['grpc-message'] }, { status: '0', message: 'done /pkg.Service/Fast' });
    assert.equal(fast.rstCode, 0);
    const slow = await ask(outpost.url, '/pkg.Service/Slow', request);
    assert.equal(slow.body.toString(), 'first half;second half');
    assert.equal(slow.trailers?.['grpc-message'], 'done /pkg.Service/Slow');
    assert.deepEqual(seen, [{ te: 'trailers', body: 'the message' }, { te: 'trailers', body: 'the message' }]);
  } finally {
    await outpost.close();
    await new Promise((resolve) => origin.close(resolve));
  }
});

test('an HTTP/1.1 origin\'s chunked trailers (announced in Trailer) reach an HTTP/2 client; a response that announces none ends as before', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/plain') return void res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end('no trailers here');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', trailer: 'x-checksum' });
    res.write('some bytes');
    res.addTrailers({ 'x-checksum': 'c0ffee' });
    res.end();
  });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const answer = await ask(outpost.url, '/with-trailer');
    assert.equal(answer.body.toString(), 'some bytes');
    assert.equal(answer.trailers?.['x-checksum'], 'c0ffee');
    const plain = await ask(outpost.url, '/plain');
    assert.equal(plain.body.toString(), 'no trailers here');
    assert.equal(plain.trailers, null);
    assert.equal(plain.rstCode, 0);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('trailers of a response the compression stage handles: kept as they came on an identity answer, and on a coded one all but those that describe the identity bytes', async () => {
  const page = Buffer.from('<p>a page long enough to be coded</p>\n'.repeat(100));
  const gzipped = gzipSync(page);
  const origin = await startOrigin((req, res) => {
    // Under /gz/ the origin codes the page itself: Outpost decodes it for a client without gzip.
    const coded = req.url!.startsWith('/gz/');
    const bytes = coded ? gzipped : page;
    res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'no-store', trailer: 'server-timing, content-digest', ...(coded ? { 'content-encoding': 'gzip' } : {}) });
    res.write(bytes.subarray(0, 100));
    const end = () => {
      res.addTrailers({ 'server-timing': `app;dur=7, path;desc="${req.url}"`, 'content-digest': 'sha-256=:AAAA:' });
      res.end(bytes.subarray(100));
    };
    if (req.url!.endsWith('/slow')) setTimeout(end, 30);
    else end();
  });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    for (const path of ['/whole', '/slow']) {
      const identity = await ask(outpost.url, path);
      assert.equal(identity.headers['content-encoding'], undefined, path);
      assert.deepEqual(identity.body, page, path);
      assert.deepEqual(identity.trailers && { timing: identity.trailers['server-timing'], digest: identity.trailers['content-digest'] },
        { timing: `app;dur=7, path;desc="${path}"`, digest: 'sha-256=:AAAA:' }, path);
      const coded = await ask(outpost.url, path, { headers: { 'accept-encoding': 'br' } });
      assert.equal(coded.headers['content-encoding'], 'br', path);
      assert.deepEqual(brotliDecompressSync(coded.body), page, path);
      assert.equal(coded.trailers?.['server-timing'], `app;dur=7, path;desc="${path}"`, path);
      assert.equal(coded.trailers?.['content-digest'], undefined, path);
      assert.equal(coded.rstCode, 0, path);
      // Decoded from the origin's gzip: its digest was of the coded bytes.
      const decoded = await ask(outpost.url, `/gz${path}`);
      assert.equal(decoded.headers['content-encoding'], undefined, path);
      assert.deepEqual(decoded.body, page, path);
      assert.deepEqual(Object.fromEntries(Object.entries(decoded.trailers ?? {})), { 'server-timing': `app;dur=7, path;desc="/gz${path}"` }, path);
    }
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('an HTTP/1.1 client gets the origin\'s trailers after the last chunk, whole or streamed; a response without trailers keeps its length', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/plain') return void res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store', 'content-length': 16 }).end('no trailers here');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', trailer: 'x-checksum, server-timing' });
    res.write('some bytes');
    const end = () => {
      res.addTrailers({ 'x-checksum': `c0ffee ${req.url}`, 'server-timing': 'db;dur=53' });
      res.end();
    };
    if (req.url === '/slow') setTimeout(() => { res.write(' and more'); end(); }, 30);
    else end();
  });
  // An HTTP/2 upstream may give a length and trailers both; over HTTP/1.1 trailers need chunks.
  // On /h2/slow the body comes later than the header: the exchange streams it (not whole).
  const h2Origin = createH2cServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store', 'content-length': 10, trailer: 'x-checksum' });
    res.addTrailers({ 'x-checksum': 'from h2' });
    if (req.url === '/h2/slow') setTimeout(() => res.end('some bytes'), 50);
    else res.end('some bytes');
  });
  await new Promise<void>((resolve) => h2Origin.listen(0, '127.0.0.1', resolve));
  const h2Port = (h2Origin.address() as { port: number }).port;
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/h2/', origin: { upstreams: [{ url: `http://127.0.0.1:${h2Port}`, http2: true }] } }] }] });
  const ca = await testCa();
  const get = (path: string) => new Promise<{ headers: Record<string, unknown>; body: string; trailers: Record<string, string> }>((resolve, reject) => {
    const options = { host: '127.0.0.1', port: outpost.httpsPort, path, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'], agent: false };
    const req = httpsRequest(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ headers: res.headers, body, trailers: res.trailers as Record<string, string> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  try {
    for (const path of ['/whole', '/slow']) {
      const answer = await get(path);
      assert.equal(answer.body, path === '/slow' ? 'some bytes and more' : 'some bytes');
      assert.equal(answer.headers['transfer-encoding'], 'chunked', path);
      assert.deepEqual(answer.trailers, { 'x-checksum': `c0ffee ${path}`, 'server-timing': 'db;dur=53' }, path);
    }
    for (const path of ['/h2/x', '/h2/slow']) {
      const withLength = await get(path);
      assert.equal(withLength.body, 'some bytes');
      assert.deepEqual({ te: withLength.headers['transfer-encoding'], length: withLength.headers['content-length'] }, { te: 'chunked', length: undefined }, path);
      assert.deepEqual(withLength.trailers, { 'x-checksum': 'from h2' }, path);
    }
    const plain = await get('/plain');
    assert.equal(plain.body, 'no trailers here');
    assert.equal(plain.headers['content-length'], '16');
    assert.deepEqual(plain.trailers, {});
    // An HTTP/1.0 client reads no chunks: the body as it came, framed by its length.
    const socket = tlsConnect({ host: '127.0.0.1', port: outpost.httpsPort, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write('GET /h2/x HTTP/1.0\r\nHost: localhost\r\n\r\n');
    let raw = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => { raw += chunk; });
    await once(socket, 'close');
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.match(raw, /\r\ncontent-length: 10\r\n/i);
    assert.doesNotMatch(raw, /transfer-encoding|x-checksum/i);
    assert.ok(raw.endsWith('\r\n\r\nsome bytes'), raw);
  } finally {
    await outpost.close();
    await origin.close();
    await new Promise((resolve) => h2Origin.close(resolve));
  }
});

test('a real gRPC client and server (@grpc/grpc-js) through Outpost: a unary call, an error status with its message, a server stream, a client stream', async () => {
  const service = { echo: bytesMethod('Echo'), fail: bytesMethod('Fail'), count: bytesMethod('Count', { response: true }), join: bytesMethod('Join', { request: true }) };
  const { client, close } = await grpcThroughOutpost(service, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => done({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
    count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 1; i <= 3; i++) call.write(Buffer.from(`n${i}`));
      call.end();
    },
    join: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      const parts: string[] = [];
      call.on('data', (message: Buffer) => parts.push(message.toString()));
      call.on('end', () => done(null, Buffer.from(parts.join('+'))));
    },
  });
  type Unary = (request: Buffer, done: (err: grpc.ServiceError | null, response?: Buffer) => void) => void;
  const call = (name: 'echo' | 'fail', request: Buffer) => new Promise<{ err: grpc.ServiceError | null; response?: Buffer }>((resolve) => {
    (client[name] as unknown as Unary).call(client, request, (err, response) => resolve({ err, response }));
  });
  try {
    const echoed = await call('echo', Buffer.from('hello'));
    assert.equal(echoed.err, null);
    assert.equal(echoed.response?.toString(), 'echo:hello');
    const failed = await call('fail', Buffer.from('x'));
    assert.equal(failed.err?.code, grpc.status.NOT_FOUND);
    assert.equal(failed.err?.details, 'no such thing');
    const stream = (client.count as unknown as (request: Buffer) => grpc.ClientReadableStream<Buffer>).call(client, Buffer.from('go'));
    const got: string[] = [];
    stream.on('data', (message: Buffer) => got.push(message.toString()));
    const [status] = await once(stream, 'status') as [grpc.StatusObject];
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(got, ['n1', 'n2', 'n3']);
    // A client stream: the request body goes to the origin as it comes.
    const joined = await new Promise<{ err: grpc.ServiceError | null; response?: Buffer }>((resolve) => {
      const upload = (client.join as unknown as (done: (err: grpc.ServiceError | null, response?: Buffer) => void) => grpc.ClientWritableStream<Buffer>).call(client, (err, response) => resolve({ err, response }));
      for (const part of ['a', 'b', 'c']) upload.write(Buffer.from(part));
      upload.end();
    });
    assert.equal(joined.err, null);
    assert.equal(joined.response?.toString(), 'a+b+c');
  } finally {
    await close();
  }
});

test('a gRPC client stream lives as long as its messages keep coming: an idle limit (limits.requestTimeout between chunks) instead of the upload deadline and rate', async () => {
  const service = { join: bytesMethod('Join', { request: true }) };
  // An upload would have to be in within 1 s, at 500 B/s after 100 ms.
  const { client, close } = await grpcThroughOutpost(service, {
    join: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      const parts: string[] = [];
      call.on('data', (message: Buffer) => parts.push(message.toString()));
      call.on('end', () => done(null, Buffer.from(parts.join('+'))));
    },
  }, { limits: { requestTimeout: '1s', bodyGrace: '100ms' } });
  const stream = (gaps: number[]) => new Promise<{ err: grpc.ServiceError | null; response?: Buffer }>((resolve) => {
    const upload = (client.join as unknown as (done: (err: grpc.ServiceError | null, response?: Buffer) => void) => grpc.ClientWritableStream<Buffer>).call(client, (err, response) => resolve({ err, response }));
    void (async () => {
      for (const [i, gap] of gaps.entries()) {
        await new Promise((r) => setTimeout(r, gap));
        upload.write(Buffer.from(String.fromCharCode(97 + i)));
      }
      upload.end();
    })();
  });
  try {
    // Six messages 300 ms apart: 1.5 s in all, a few bytes a second.
    const kept = await stream([0, 300, 300, 300, 300, 300]);
    assert.equal(kept.err, null);
    assert.equal(kept.response?.toString(), 'a+b+c+d+e+f');
    // Silence past the limit between two messages: the call fails.
    const idle = await stream([0, 2500]);
    assert.notEqual(idle.err, null);
    assert.notEqual(idle.err?.code, grpc.status.OK);
  } finally {
    await close();
  }
});

test('a gRPC client that cancels a server stream through Outpost cancels it at the server too', async () => {
  const service = { ticks: bytesMethod('Ticks', { response: true }) };
  let cancelled = false;
  const { client, close } = await grpcThroughOutpost(service, {
    ticks: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      let n = 0;
      const timer = setInterval(() => call.write(Buffer.from(`t${n++}`)), 10);
      call.on('cancelled', () => {
        cancelled = true;
        clearInterval(timer);
      });
    },
  });
  try {
    const stream = (client.ticks as unknown as (request: Buffer) => grpc.ClientReadableStream<Buffer>).call(client, Buffer.from('go'));
    stream.on('error', () => {}); // CANCELLED, as asked
    const got: string[] = [];
    await new Promise<void>((resolve) => stream.on('data', (message: Buffer) => {
      got.push(message.toString());
      if (got.length === 3) resolve();
    }));
    stream.cancel();
    await until(() => cancelled);
    assert.deepEqual(got.slice(0, 3), ['t0', 't1', 't2']);
  } finally {
    await close();
  }
});

test('a bidirectional gRPC call through Outpost is full duplex: each message is answered before the next is sent', async () => {
  const service = { chat: bytesMethod('Chat', { request: true, response: true }) };
  const { client, close } = await grpcThroughOutpost(service, {
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (message: Buffer) => call.write(Buffer.from(`re:${message.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  try {
    const call = (client.chat as unknown as () => grpc.ClientDuplexStream<Buffer, Buffer>).call(client);
    const replies: string[] = [];
    const next = () => new Promise<string>((resolve) => call.once('data', (message: Buffer) => resolve(message.toString())));
    for (const word of ['one', 'two', 'three']) {
      const answered = next();
      call.write(Buffer.from(word));
      replies.push(await answered);
    }
    call.end();
    const [status] = await once(call, 'status') as [grpc.StatusObject];
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(replies, ['re:one', 're:two', 're:three']);
  } finally {
    await close();
  }
});
