import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { createServer, connect, type ClientHttp2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { h1, h2session, startOrigin, startOutpost, testCa, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { contextFromHttp2 } from '../../src/server/request.ts';
import { AbortSource } from '../../src/pipeline/abort-watch.ts';
import { respondHttp2 } from '../../src/server/respond.ts';

/** RFC 9110 §15.2: 1xx responses from the origin reach the client ahead of the final response. */

const LINK = '</style.css>; rel=preload; as=style';

let origin: TestOrigin;
let outpost: RunningOutpost;

before(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url === '/hinted') {
      res.writeEarlyHints({ link: LINK });
      res.writeHead(200, { 'content-type': 'text/plain', 'x-final': 'yes' });
      res.end('final body');
    } else if (req.url === '/cached') {
      res.writeEarlyHints({ link: LINK });
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' });
      res.end('cached body');
    } else if (req.url === '/hop') {
      // Hop-by-hop fields and Content-Length in an interim response stop here.
      res.writeInformation(103, {
        link: LINK,
        connection: 'x-secret',
        'x-secret': 'hop only',
        'keep-alive': 'timeout=5',
        'content-length': '0',
        'x-kept': 'end to end',
      });
      res.end('hop body');
    } else if (req.url === '/storm') {
      for (let i = 0; i < 50; i++) res.writeEarlyHints({ link: `</s${i}.css>; rel=preload; as=style` });
      res.end('after the storm');
    } else if (req.url === '/processing') {
      res.writeProcessing();
      res.writeEarlyHints({ link: LINK });
      res.end('processed');
    } else {
      res.end('plain');
    }
  });
  outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

interface Seen {
  /** Each interim response: status and fields. */
  interim: { status: number; headers: Record<string, unknown> }[];
  /** Whether every interim response came before the final headers. */
  interimFirst: boolean;
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

/** An HTTP/2 request that records 1xx HEADERS frames ('headers' events) before the 'response'. */
async function h2Seen(session: ClientHttp2Session, path: string): Promise<Seen> {
  const stream = session.request({ ':path': path }, { endStream: true });
  const interim: Seen['interim'] = [];
  let final = false;
  let interimFirst = true;
  stream.on('headers', (headers: IncomingHttpHeaders) => {
    if (final) interimFirst = false;
    interim.push({ status: headers[':status'] as unknown as number, headers });
  });
  const [headers] = await once(stream, 'response') as [IncomingHttpHeaders];
  final = true;
  let body = '';
  stream.setEncoding('utf8');
  for await (const chunk of stream) body += chunk;
  return { interim, interimFirst, status: headers[':status'] as unknown as number, headers, body };
}

/** An HTTP/1.1 request over TLS (ALPN http/1.1) that records 'information' events. */
async function h1Seen(path: string): Promise<Seen> {
  // ALPN offers only http/1.1 (tls options https.request passes on, outside its RequestOptions type).
  const tls = { ca: await testCa(), ALPNProtocols: ['http/1.1'], servername: 'localhost' };
  return new Promise((resolve, reject) => {
    const interim: Seen['interim'] = [];
    let final = false;
    let interimFirst = true;
    const req = httpsRequest(`${outpost.url}${path}`, { ...tls, agent: false }, (res) => {
      final = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ interim, interimFirst, status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('information', (info) => {
      if (final) interimFirst = false;
      interim.push({ status: info.statusCode, headers: info.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

test('HTTP/2: the 103 with its Link arrives before the 200, whose headers and body are intact', async () => {
  const session = await h2session(outpost.url);
  try {
    const seen = await h2Seen(session, '/hinted');
    assert.equal(seen.interim.length, 1);
    assert.equal(seen.interim[0].status, 103);
    assert.equal(seen.interim[0].headers.link, LINK);
    assert.ok(seen.interimFirst);
    assert.equal(seen.status, 200);
    assert.equal(seen.headers['x-final'], 'yes');
    assert.equal(seen.headers['content-type'], 'text/plain');
    assert.equal(seen.body, 'final body');
  } finally {
    session.close();
  }
});

test('HTTP/1.1: the 103 with its Link arrives before the 200, whose headers and body are intact', async () => {
  const seen = await h1Seen('/hinted');
  assert.equal(seen.interim.length, 1);
  assert.equal(seen.interim[0].status, 103);
  assert.equal(seen.interim[0].headers.link, LINK);
  assert.ok(seen.interimFirst);
  assert.equal(seen.status, 200);
  assert.equal(seen.headers['x-final'], 'yes');
  assert.equal(seen.body, 'final body');
});

test('a cacheable response that came with a 103 is served from cache the second time, without one', async () => {
  const session = await h2session(outpost.url);
  try {
    // first request: a miss, the origin's 103 is forwarded
    const first = await h2Seen(session, '/cached');
    assert.deepEqual(first.interim.map((i) => i.status), [103]);
    assert.equal(first.body, 'cached body');
    const reached = origin.seen.filter((r) => r.url === '/cached').length;
    // second request: served from cache, no origin request and so no 103
    const second = await h2Seen(session, '/cached');
    assert.equal(second.status, 200);
    assert.equal(second.body, 'cached body');
    assert.deepEqual(second.interim, []);
    assert.equal(origin.seen.filter((r) => r.url === '/cached').length, reached);
    assert.match(String(second.headers['cache-status']), /hit/);
    // third request, over HTTP/1.1: also a hit without a 103
    const third = await h1Seen('/cached');
    assert.equal(third.body, 'cached body');
    assert.deepEqual(third.interim, []);
  } finally {
    session.close();
  }
});

test('hop-by-hop fields and Content-Length never cross in a 1xx; Via is added', async () => {
  const session = await h2session(outpost.url);
  try {
    for (const seen of [await h2Seen(session, '/hop'), await h1Seen('/hop')]) {
      assert.equal(seen.interim.length, 1);
      const headers = seen.interim[0].headers;
      assert.equal(headers.link, LINK);
      assert.equal(headers['x-kept'], 'end to end');
      assert.equal(headers['x-secret'], undefined);
      assert.equal(headers['keep-alive'], undefined);
      assert.equal(headers.connection, undefined);
      assert.equal(headers['content-length'], undefined);
      assert.match(String(headers.via), /^1\.1 /);
      assert.equal(seen.body, 'hop body');
    }
  } finally {
    session.close();
  }
});

test('other 1xx (102 Processing) are forwarded too, in order, on both protocols', async () => {
  const session = await h2session(outpost.url);
  try {
    const viaH2 = await h2Seen(session, '/processing');
    assert.deepEqual(viaH2.interim.map((i) => i.status), [102, 103]);
    assert.equal(viaH2.body, 'processed');
  } finally {
    session.close();
  }
  const viaH1 = await h1Seen('/processing');
  assert.deepEqual(viaH1.interim.map((i) => i.status), [102, 103]);
  assert.equal(viaH1.body, 'processed');
});

test('an HTTP/1.0 client gets no 1xx, only the final response', async () => {
  const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: await testCa(), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  // HTTP/1.0 without keep-alive: the server closes the connection after the response.
  socket.write('GET /hinted HTTP/1.0\r\nHost: localhost\r\n\r\n');
  let raw = '';
  socket.setEncoding('latin1');
  for await (const chunk of socket) raw += chunk;
  assert.match(raw, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(raw, /103|Early Hints/);
  assert.match(raw, /final body$/);
});

test('responses without 1xx are unchanged', async () => {
  const res = await h1(`${outpost.url}/plain`);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'plain');
});

test('sendInformational is a no-op after the final headers, on a closed stream, and detached from its context', async () => {
  const server = createServer();
  const outcomes: string[] = [];
  server.on('stream', (stream: ServerHttp2Stream, headers, _flags, rawHeaders: string[]) => {
    const ctx = contextFromHttp2(stream, headers, new AbortSource(), rawHeaders);
    const send = ctx.sendInformational!;
    try {
      // a copy of the context, as stages hand on, still reaches the client
      ({ ...ctx }).sendInformational!(103, { link: LINK, 'x-n': '1' });
      send(103, { link: LINK }); // not called as a method: nothing to send to, nothing thrown
      ctx.sendInformational!(101, {}); // never an interim response
      ctx.sendInformational!(103, { connection: 'close', link: LINK, 'x-n': '2' }); // the field HTTP/2 forbids is left out
      ctx.sendInformational!(103, { 'bad name': 'x', link: LINK, 'x-n': '3' }); // Node refuses it: dropped whole, not thrown
      respondHttp2(stream, 'GET', { status: 200, headers: {}, body: Buffer.from('done') });
      ctx.sendInformational!(103, { link: LINK }); // after the final headers
      stream.once('close', () => {
        ctx.sendInformational!(103, { link: LINK }); // on a closed stream
        outcomes.push('no throw');
      });
    } catch (err) {
      outcomes.push(`threw ${(err as Error).message}`);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const session = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  try {
    const seen = await h2Seen(session, '/');
    assert.deepEqual(seen.interim.map((i) => [i.status, i.headers['x-n'], i.headers.connection]), [[103, '1', undefined], [103, '2', undefined]]);
    assert.equal(seen.body, 'done');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(outcomes, ['no throw']);
  } finally {
    session.close();
    server.close();
  }
});

test('an origin\'s storm of 1xx is passed on only up to 8 per request; the final response comes whole', async () => {
  const session = await h2session(outpost.url);
  try {
    const seen = await h2Seen(session, '/storm');
    // Before: all 50, each a HEADERS frame the client had to read.
    assert.equal(seen.interim.length, 8);
    assert.equal(seen.interim[7].headers.link, '</s7.css>; rel=preload; as=style');
    assert.equal(seen.status, 200);
    assert.equal(seen.body, 'after the storm');
  } finally {
    session.close();
  }
});
