import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer as createH2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { respondHttp1, respondHttp2 } from '../../src/server/respond.ts';
import type { Reply } from '../../src/pipeline/context.ts';

const fine: Reply = { status: 200, headers: { 'content-type': 'text/plain', te: 'gzip', 'http2-settings': 'AAA' }, body: Buffer.from('fine') };

test('HTTP/2: a reply Node refuses to send is a bare 502 in its place, and the session goes on', async () => {
  // Replies Node refuses over HTTP/2: a status outside 200-599, a field name that is no token, a pseudo-field
  const replies: Reply[] = [
    { status: 999, headers: { 'content-type': 'text/plain' }, body: Buffer.from('x') },
    { status: 200, headers: { 'bad name': 'x' }, body: Buffer.from('x') },
    { status: 204, headers: { ':path': '/x' }, body: null },
    fine,
    // a field Node sends once at most, repeated (an origin's two Content-Type lines): the first goes
    // (typed as one string, as an origin's response is not: undici gives a repeated field as an array)
    { status: 200, headers: { 'content-type': ['text/plain', 'text/html'] as unknown as string, 'x-many': ['1', '2'] }, body: Buffer.from('twice') },
  ];
  const server = createH2Server();
  server.on('stream', (stream: ServerHttp2Stream) => respondHttp2(stream, 'GET', replies.shift()!));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    const get = () => new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = session.request({ ':path': '/' });
      let body = '';
      req.setEncoding('utf8').on('data', (c) => { body += c; }).on('error', reject);
      req.on('response', (headers) => req.on('end', () => resolve({ status: Number(headers[':status']), headers, body })));
      req.end();
    });
    for (let i = 0; i < 3; i++) assert.equal((await get()).status, 502);
    const ok = await get();
    // connection-specific fields are left out rather than refused (RFC 9113 §8.2.2)
    assert.equal(ok.status, 200);
    assert.equal(ok.body, 'fine');
    assert.equal(ok.headers.te, undefined);
    assert.equal(ok.headers['http2-settings'], undefined);
    const twice = await get();
    assert.equal(twice.status, 200);
    assert.equal(twice.headers['content-type'], 'text/plain');
    assert.deepEqual(twice.headers['x-many'], '1, 2');
  } finally {
    session.close();
    server.close();
  }
});

test('HTTP/1.1: a reply Node refuses to send is a bare 502 in its place, and the connection goes on', async () => {
  // Replies Node refuses over HTTP/1.1: a status outside 100-999, field values with line breaks
  const replies: Reply[] = [
    { status: 1000, headers: { 'content-type': 'text/plain' }, body: Buffer.from('x') },
    { status: 200, headers: { 'x-split': 'a\r\nx-injected: 1' }, body: Buffer.from('x') },
    { status: 200, headers: { 'x-empty': 'a\nb' }, body: null },
    { ...fine, headers: { 'content-type': 'text/plain' } },
  ];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => respondHttp1(res, req.method!, replies.shift()!));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  try {
    const get = () => new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/' }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c) => { body += c; }).on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      }).on('error', reject).end();
    });
    for (let i = 0; i < 3; i++) {
      const res = await get();
      assert.equal(res.status, 502);
      assert.equal(res.headers['x-injected'], undefined);
    }
    assert.equal((await get()).body, 'fine');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('HTTP/2: a reply to a request whose body was read ends the stream once its body\'s writes have reported back, whole or streamed', async () => {
  // Node destroys a stream as soon as the end we send closes it; a write that reports back after
  // that makes Node's Writable build an ERR_STREAM_DESTROYED (respond.ts endWith). Seen here as
  // when each write's callback runs: before the stream is destroyed, for a request with a body as
  // for one without.
  const writesAfterDestroy: string[] = [];
  const server = createH2Server();
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    const path = String(headers[':path']);
    const write = stream._write.bind(stream);
    stream._write = (chunk, encoding, callback) => write(chunk, encoding, (err?: Error | null) => {
      if (stream.destroyed) writesAfterDestroy.push(path);
      callback(err);
    });
    // Under /streamed/ the reply's body is a stream (piped), as an origin's slow or large answer is.
    const body = () => path.startsWith('/streamed/') ? Readable.from([Buffer.from('answer '), Buffer.from(`to ${path}`)]) : Buffer.from(`answer to ${path}`);
    const answer = () => respondHttp2(stream, String(headers[':method']), { status: 200, headers: { 'content-type': 'text/plain' }, body: body() });
    if (stream.endAfterHeaders) return answer();
    stream.resume().on('end', answer); // the request's body, read to its end first
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    const send = (method: string, path: string, body?: Buffer) => new Promise<string>((resolve, reject) => {
      const req = session.request({ ':method': method, ':path': path }, { endStream: body === undefined });
      let text = '';
      req.setEncoding('utf8').on('data', (c) => { text += c; }).on('error', reject).on('end', () => resolve(text));
      if (body !== undefined) req.end(body);
    });
    for (let i = 0; i < 20; i++) {
      assert.equal(await send('POST', `/upload/${i}`, Buffer.alloc(64 * 1024, 'u')), `answer to /upload/${i}`);
      assert.equal(await send('GET', `/get/${i}`), `answer to /get/${i}`);
      assert.equal(await send('POST', `/streamed/${i}`, Buffer.alloc(64 * 1024, 'u')), `answer to /streamed/${i}`);
      assert.equal(await send('GET', `/streamed/get/${i}`), `answer to /streamed/get/${i}`);
    }
    assert.deepEqual(writesAfterDestroy, []);
  } finally {
    session.close();
    server.close();
  }
});
