import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import { createServer, type Http2Server } from 'node:http2';
import { exchange, type ExchangeRequest } from '../../src/origin/exchange.ts';
import { AbortSource } from '../../src/pipeline/abort-watch.ts';
import { startOrigin, type TestOrigin } from '../helpers/outpost.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * One exchange with an upstream through undici's dispatch (src/origin/exchange.ts): a response
 * that is in whole soon after its header is one Buffer, anything slower streams as it arrives.
 */

let origin: TestOrigin;
let h2c: Http2Server;
let h2cUrl: string;
let pool: Pool;
let h2Pool: Pool;
let closedEarly = 0;
/** The /slow responses waiting for the rest of their body. */
const slowEnds: Array<() => void> = [];
const finishSlow = () => { for (const end of slowEnds.splice(0)) end(); };

before(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url === '/small') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5', connection: 'keep-alive', 'x-kept': 'yes' });
      res.end('small');
    } else if (req.url === '/slow') {
      // A declared length and half the body; the rest when a test says (finishSlow).
      res.writeHead(200, { 'content-length': '10' });
      res.write('first');
      slowEnds.push(() => res.end('-last'));
    } else if (req.url === '/parts') {
      // Chunked: each write is a chunk of its own, each a call of the dispatch handler.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('ab');
      res.write('cd');
      res.end('ef');
    } else if (req.url === '/hang') {
      res.on('close', () => { if (!res.writableFinished) closedEarly++; });
    } else if (req.url === '/echo') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    } else {
      res.writeHead(404, { 'content-length': '0' });
      res.end();
    }
  });
  // An HTTP/2 origin writes DATA after HEADERS: the small body comes a moment behind its header.
  h2c = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': '9' });
    res.end('h2 answer');
  });
  await new Promise<void>((resolve) => h2c.listen(0, '127.0.0.1', () => resolve()));
  h2cUrl = `http://127.0.0.1:${(h2c.address() as { port: number }).port}`;
  pool = new Pool(origin.url, { connections: 4 });
  h2Pool = new Pool(h2cUrl, { connections: 1, allowH2: true, connect: { allowH2: true, useH2c: true } as never });
});

after(async () => {
  await pool.close();
  await h2Pool.close();
  await origin.close();
  await new Promise<void>((resolve) => h2c.close(() => resolve()));
});

const request = (path: string, extra: Partial<ExchangeRequest> = {}): ExchangeRequest => ({
  method: 'GET', path, headers: { host: 'example.test' }, body: undefined, signal: undefined, onInfo: undefined,
  responseHeaders: (headers) => ({ ...headers }), ...extra,
});

const readAll = async (body: unknown) => {
  if (Buffer.isBuffer(body)) return body.toString();
  const chunks: Buffer[] = [];
  for await (const chunk of body as Readable) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
};

test('a response that arrives with its header is one Buffer, its fields through responseHeaders', async () => {
  const reply = await exchange(pool, request('/small', { responseHeaders: (h) => ({ 'x-kept': h['x-kept'], via: '1.1 test' }) }));
  assert.equal(reply.status, 200);
  assert.ok(Buffer.isBuffer(reply.body));
  assert.equal(String(reply.body), 'small');
  assert.deepEqual(reply.headers, { 'x-kept': 'yes', via: '1.1 test' });
});

test('a body that comes in several chunks with its header is one Buffer of them all; an empty one is an empty Buffer', async () => {
  const parts = await exchange(pool, request('/parts'));
  assert.ok(Buffer.isBuffer(parts.body));
  assert.equal(String(parts.body), 'abcdef');
  const none = await exchange(pool, request('/none'));
  assert.equal(none.status, 404);
  assert.ok(Buffer.isBuffer(none.body));
  assert.equal((none.body as Buffer).length, 0);
});

test('a body still on its way after the short wait streams as it arrives, long before it ends', async () => {
  // The rest of the body comes only after the exchange resolved (or after 10 s, failing the test, not hanging it).
  let endedByTimer = false;
  const timer = setTimeout(() => { endedByTimer = true; finishSlow(); }, 10_000);
  const reply = await exchange(pool, request('/slow'));
  clearTimeout(timer);
  assert.equal(endedByTimer, false, 'resolved at the header, not at the end of the body');
  finishSlow();
  assert.ok(reply.body instanceof Readable);
  assert.equal(await readAll(reply.body), 'first-last');
});

test('an HTTP/2 origin\'s small body, a moment behind its HEADERS, comes as one Buffer (at least one of 20: timing on a busy machine)', async () => {
  let whole = 0;
  for (let i = 0; i < 20; i++) {
    const reply = await exchange(h2Pool, request('/'));
    if (Buffer.isBuffer(reply.body)) whole++;
    assert.equal(await readAll(reply.body), 'h2 answer');
  }
  assert.ok(whole > 0, 'no response came whole within the wait');
});

test('the request body goes to the origin', async () => {
  const reply = await exchange(pool, request('/echo', { method: 'POST', body: Readable.from([Buffer.from('abc'), Buffer.from('def')]) }));
  assert.equal(await readAll(reply.body), 'abcdef');
});

test('the client going away before the header aborts the origin request (RequestAbortedError)', async () => {
  const controller = new AbortController();
  const pending = exchange(pool, request('/hang', { signal: controller.signal }));
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(pending, (err: Error & { code?: string }) => err.code === 'UND_ERR_ABORTED');
  await waitFor(() => (closedEarly === 1 ? true : undefined));
});

test('the server\'s client signal (AbortSource, watched without a listener) aborts the origin request too', async () => {
  const client = new AbortSource();
  const before = closedEarly;
  const pending = exchange(pool, request('/hang', { signal: client.signal }));
  setTimeout(() => client.abort(), 50);
  await assert.rejects(pending, (err: Error & { code?: string }) => err.code === 'UND_ERR_ABORTED');
  await waitFor(() => (closedEarly === before + 1 ? true : undefined));
  // An exchange that ended stopped watching: a later abort tells nobody and throws nothing.
  const done = new AbortSource();
  assert.equal(String((await exchange(pool, request('/small', { signal: done.signal }))).body), 'small');
  done.abort();
});

test('an already aborted signal fails at once; destroying a streamed body aborts the exchange', async () => {
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(exchange(pool, request('/small', { signal: controller.signal })), (err: Error & { code?: string }) => err.code === 'UND_ERR_ABORTED');
  const reply = await exchange(pool, request('/slow'));
  const body = reply.body as Readable;
  body.destroy();
  await once(body, 'close');
  // The pool is still usable afterwards.
  assert.equal(String((await exchange(pool, request('/small'))).body), 'small');
});
