import type { IncomingMessage, ServerResponse } from 'node:http';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import { randomBytes } from 'node:crypto';
import { brotliDecompressSync } from 'node:zlib';
import { performance } from 'node:perf_hooks';
import type { ClientHttp2Session } from 'node:http2';
import type { Readable } from 'node:stream';
import { h2session, startOutpost, testCa, type RunningOutpost } from '../helpers/outpost.ts';
import { startRoutedOrigin, type OriginRoute, type RoutedOrigin } from '../helpers/routed-origin.ts';

/**
 * Collapsed forwarding through the real listener (TLS, HTTP/2 and HTTP/1.1) against a real origin
 * that streams its body slowly: waiters read the leader's body as it arrives (shared-body.ts), the
 * fetch outlives the client that started it, a slow reader holds back nobody, a waiter of another
 * variant or of an uncacheable answer goes to the origin with its own request (flights.ts).
 *
 * Times are in ms since the start of each test (`t0`), from performance.now().
 */
type Route = OriginRoute;
let origin: RoutedOrigin;
let outpost: RunningOutpost;
const ADMIN_TOKEN = 'coalescing-test-token';
const sessions: ClientHttp2Session[] = [];

const count = (path: string) => origin.count(path);
const seenFor = (path: string) => origin.seenFor(path);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let unique = 0;
const fresh = (name: string) => `/${name}-${++unique}`;

const route = (path: string, handler: Route) => origin.route(path, handler);

before(async () => {
  origin = await startRoutedOrigin();
  outpost = await startOutpost({ admin: { token: ADMIN_TOKEN }, sites: [{ hosts: ['*'], origin: origin.url }] });
});

after(async () => {
  for (const session of sessions) session.destroy();
  await outpost.close();
  await origin.close();
});

async function session(): Promise<ClientHttp2Session> {
  const s = await h2session(outpost.url);
  sessions.push(s);
  return s;
}

/** Resolves once `check` holds; fails after `ms`. */
async function until(check: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The promise's value, or a failure naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- an origin that streams -------------------------------------------------------------------

interface Streamed {
  /** When the origin wrote its last byte, per request (ms since the test's t0). */
  readonly ends: number[];
}

/**
 * Headers and the first chunk at once, then one chunk every `every` ms; `body(req, n)` is the
 * whole body for that request. Stops writing when the connection is gone.
 */
function streamed(t0: () => number, body: (req: IncomingMessage, n: number) => Buffer, options: { chunks: number; every: number; headers: Record<string, string> }): Route & Streamed {
  const ends: number[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse, n: number) => {
    const bytes = body(req, n);
    // a type the compression stage leaves alone: the bytes the client reads are the origin's
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), ...options.headers });
    const size = Math.ceil(bytes.length / options.chunks);
    let i = 0;
    const send = () => {
      if (res.destroyed) return;
      res.write(bytes.subarray(i * size, (i + 1) * size));
      i++;
      if (i < options.chunks) setTimeout(send, options.every);
      else {
        res.end();
        ends.push(t0());
      }
    };
    send();
  };
  return Object.assign(handler, { ends });
}

// ---- clients that say when their bytes arrive ---------------------------------------------------

interface Received {
  readonly body: Buffer;
  /** When the body ended. */
  readonly at: number;
}

interface Opened {
  readonly status: number;
  readonly headers: Record<string, string | string[] | number | undefined>;
  /** When the first body byte arrived (when the body ended, for an empty one). */
  readonly firstByte: Promise<number>;
  readonly done: Promise<Received>;
  /** Bytes read so far. */
  readonly read: () => number;
  pause(): void;
  resume(): void;
  /** Leaves: resets the HTTP/2 stream, closes the HTTP/1.1 connection. */
  abort(): void;
}

interface OpenOptions {
  readonly t0: number;
  readonly headers?: Record<string, string>;
  readonly method?: string;
  /** Do not read the body until resume(): HTTP/2 flow control (or TCP for HTTP/1.1) holds the sender. */
  readonly paused?: boolean;
}

/** Reads `stream`, noting the first byte and the end; both promises reject when it fails first. */
function receive(stream: Readable, options: OpenOptions) {
  const chunks: Buffer[] = [];
  let length = 0;
  let onFirst!: (at: number) => void;
  let onDone!: (received: Received) => void;
  let onFail!: (error: Error) => void;
  const firstByte = new Promise<number>((resolve, reject) => { onFirst = resolve; stream.once('close', () => { if (!stream.readableEnded) reject(new Error('stream closed before its first byte')); }); });
  const done = new Promise<Received>((resolve, reject) => { onDone = resolve; onFail = reject; });
  // Failures are read by whoever awaits these; an abort on purpose must not be an unhandled rejection.
  firstByte.catch(() => {});
  done.catch(() => {});
  stream.on('data', (chunk: Buffer) => {
    if (length === 0) onFirst(performance.now() - options.t0);
    chunks.push(chunk);
    length += chunk.length;
  });
  let left = false;
  stream.once('end', () => {
    // Node ends an HTTP/2 stream that the client destroys: that is no complete body.
    if (left) return onFail(new Error('the client left'));
    const at = performance.now() - options.t0;
    onFirst(at);
    onDone({ body: Buffer.concat(chunks), at });
  });
  stream.on('error', () => {}); // reported through 'close'
  stream.once('close', () => { if (!stream.readableEnded) onFail(stream.errored ?? new Error('stream closed before its end')); });
  if (options.paused) stream.pause();
  return {
    firstByte, done,
    read: () => length,
    pause: () => { stream.pause(); },
    resume: () => { stream.resume(); },
    leave: () => { left = true; },
  };
}

/** A request on an HTTP/2 session; resolves with the response headers, the body still coming. */
function openH2(s: ClientHttp2Session, path: string, options: OpenOptions): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const stream = s.request({ ':method': options.method ?? 'GET', ':path': path, ...options.headers }, { endStream: true });
    const r = receive(stream, options);
    stream.once('error', reject);
    stream.once('response', (headers) => {
      const { ':status': status, ...rest } = headers;
      resolve({ status: Number(status), headers: rest, ...r, abort: () => { r.leave(); stream.destroy(); } });
    });
  });
}

/** A request on its own HTTP/1.1 connection over TLS; resolves with the response headers. */
async function openH1(path: string, options: OpenOptions): Promise<Opened> {
  const ca = await testCa();
  return new Promise((resolve, reject) => {
    // ALPN offers only http/1.1 (a TLS option https passes on to tls.connect)
    const tlsOptions: HttpsRequestOptions & { ALPNProtocols: string[] } = {
      method: options.method ?? 'GET', headers: options.headers, agent: false, ca, ALPNProtocols: ['http/1.1'], servername: 'localhost',
    };
    const req = httpsRequest(`${outpost.url}${path}`, tlsOptions, (res) => {
      const r = receive(res, options);
      resolve({ status: res.statusCode ?? 0, headers: res.headers, ...r, abort: () => { r.leave(); req.destroy(); } });
    });
    req.on('error', reject);
    req.end();
  });
}

const cacheStatus = (o: Opened) => String(o.headers['cache-status']);

// ---- the tests ------------------------------------------------------------------------------------

test('collapsed waiters stream the body as it arrives, long before the origin finishes (HTTP/2 and HTTP/1.1)', async () => {
  let t0 = performance.now();
  const body = randomBytes(20 * 1024);
  // 20 KB in 10 chunks, 100 ms apart: the origin takes ~900 ms
  const origin = streamed(() => performance.now() - t0, () => body, { chunks: 10, every: 100, headers: { 'cache-control': 'max-age=60' } });
  const path = route(fresh('stream'), origin);
  const [a, b] = [await session(), await session()];
  t0 = performance.now();
  // the leader starts the fetch
  const leader = openH2(a, path, { t0 });
  await until(() => count(path) === 1, 'the leader to reach the origin');
  // five more while the first is in flight, both protocols
  const waiters = [openH2(a, path, { t0 }), openH1(path, { t0 }), openH2(b, path, { t0 }), openH1(path, { t0 }), openH2(b, path, { t0 })];
  const opened = await within(Promise.all([leader, ...waiters]), 5000, 'every response\'s headers');
  const received = await within(Promise.all(opened.map((o) => o.done)), 5000, 'every body');
  const firsts = await Promise.all(opened.map((o) => o.firstByte));
  const originTime = origin.ends[0];

  assert.equal(count(path), 1, 'one origin request');
  for (const [i, o] of opened.entries()) {
    assert.equal(o.status, 200, `client ${i}`);
    assert.ok(received[i].body.equals(body), `client ${i}: the whole body, byte for byte (${received[i].body.length} bytes)`);
    // the first byte long before the origin's last: streamed, not handed over once stored
    assert.ok(firsts[i] < originTime * 0.5, `client ${i}: first byte at ${firsts[i].toFixed(0)} ms, origin done at ${originTime.toFixed(0)} ms`);
  }
  assert.doesNotMatch(cacheStatus(opened[0]), /collapsed/);
  for (const o of opened.slice(1)) assert.match(cacheStatus(o), /^Outpost; fwd=uri-miss; collapsed; fwd-status=200$/);
});

test('the client that caused the fetch leaves mid-body: the waiters get the whole body, it is stored, one origin request', async () => {
  for (const leaderProtocol of ['h2', 'h1'] as const) {
    let t0 = performance.now();
    const body = randomBytes(20 * 1024);
    // ~720 ms of body
    const origin = streamed(() => performance.now() - t0, () => body, { chunks: 10, every: 80, headers: { 'cache-control': 'max-age=60' } });
    const path = route(fresh(`leaves-${leaderProtocol}`), origin);
    const s = await session();
    t0 = performance.now();
    const leader = await within(leaderProtocol === 'h2' ? openH2(s, path, { t0 }) : openH1(path, { t0 }), 2000, 'the leader\'s headers');
    await leader.firstByte;
    // waiters join while the body is still coming (their headers come at once: they read from byte 0)
    const waiters = [openH2(s, path, { t0 }), openH1(path, { t0 }), openH2(s, path, { t0 })];
    await Promise.race([Promise.all(waiters), sleep(300)]);
    // the leader leaves mid-body
    assert.ok(leader.read() < body.length, `${leaderProtocol}: the leader leaves before the end (${leader.read()} bytes read)`);
    leader.abort();
    await assert.rejects(leader.done, Error, `${leaderProtocol}: the leader's body was cut off`);
    const received = await within(Promise.all(waiters.map(async (w) => (await w).done)), 5000, 'the waiters\' bodies');
    for (const [i, r] of received.entries()) assert.ok(r.body.equals(body), `${leaderProtocol}, waiter ${i}: the whole body (${r.body.length} bytes)`);
    assert.equal(count(path), 1, `${leaderProtocol}: one origin request`);
    assert.equal(origin.ends.length, 1, `${leaderProtocol}: the origin wrote its whole body`);

    // next request: served from cache
    const next = await within(openH1(path, { t0 }), 2000, 'the next request');
    assert.ok((await next.done).body.equals(body));
    assert.match(cacheStatus(next), /^Outpost; hit; ttl=\d+$/, leaderProtocol);
    assert.equal(count(path), 1);
  }
});

test('a client that does not read holds back no one: the others finish in about the origin\'s time', async () => {
  let t0 = performance.now();
  // 1 MiB: far more than an HTTP/2 stream window (64 KB) and the socket buffers of a paused HTTP/1.1
  // client hold, so a reader that does not read really stops taking bytes; 6 clients, 6 MiB in all.
  const body = randomBytes(1024 * 1024);
  const origin = streamed(() => performance.now() - t0, () => body, { chunks: 10, every: 50, headers: { 'cache-control': 'max-age=60' } });
  const path = route(fresh('slow-reader'), origin);
  const [slowSession, fastSession] = [await session(), await session()];
  t0 = performance.now();
  // the slow ones: the leader itself (HTTP/2, its own connection, never read) and an HTTP/1.1 waiter (res.pause())
  const slow = [openH2(slowSession, path, { t0, paused: true })];
  await until(() => count(path) === 1, 'the leader to reach the origin');
  slow.push(openH1(path, { t0, paused: true }));
  const fast = [openH2(fastSession, path, { t0 }), openH1(path, { t0 }), openH2(fastSession, path, { t0 }), openH1(path, { t0 })];
  try {
    // Exact rather than timed: the slow clients are resumed only once every fast one has its whole
    // body, so the fast ones cannot depend on them. A reader that held the others back would make
    // this time out (after 4 s; the origin needs ~0.5 s).
    const received = await within(Promise.all(fast.map(async (o) => (await o).done)), 4000, 'the fast clients while two others do not read');
    const originTime = origin.ends[0];
    for (const [i, r] of received.entries()) {
      assert.ok(r.body.equals(body), `fast client ${i}: the whole body`);
      // generous: a loaded 2-core machine moves 1 MiB over TLS in well under a second
      assert.ok(r.at < originTime + 1000, `fast client ${i}: done at ${r.at.toFixed(0)} ms, origin done at ${originTime.toFixed(0)} ms`);
    }
    const [leader, waiter] = await within(Promise.all(slow), 1000, 'the slow clients\' headers');
    assert.equal(leader.read() + waiter.read(), 0, 'the slow clients have read nothing yet');
    assert.doesNotMatch(cacheStatus(leader), /collapsed/, 'the slow HTTP/2 client is the leader');
  } finally {
    for (const o of slow) o.then((opened) => opened.resume(), () => {});
  }
  // the slow ones get the whole body too once they read
  for (const o of slow) assert.ok((await within((await o).done, 4000, 'a slow client')).body.equals(body));
  assert.equal(count(path), 1);
  for (const o of [slow[1], ...fast]) assert.match(cacheStatus(await o), /collapsed/);
});

test('Vary: waiters whose Accept-Language differs from the leader\'s get their own language from one fetch of their own, without waiting for the leader\'s body', async () => {
  let t0 = performance.now();
  const bodyFor = (req: IncomingMessage, n: number) => Buffer.from(`${req.headers['accept-language']} #${n} `.repeat(200));
  // each answer streams over ~900 ms
  const origin = streamed(() => performance.now() - t0, bodyFor, { chunks: 10, every: 100, headers: { 'cache-control': 'max-age=60', vary: 'Accept-Language' } });
  const path = route(fresh('vary'), origin);
  const s = await session();
  t0 = performance.now();
  const fr = openH2(s, path, { t0, headers: { 'accept-language': 'fr' } });
  await until(() => count(path) === 1, 'the leader to reach the origin');
  const others = [
    openH1(path, { t0, headers: { 'accept-language': 'en' } }),
    openH2(s, path, { t0, headers: { 'accept-language': 'en' } }),
    openH1(path, { t0, headers: { 'accept-language': 'fr' } }),
  ];
  const opened = await within(Promise.all([fr, ...others]), 5000, 'every response\'s headers');
  const [frLeader, enH1, enH2, frWaiter] = opened;
  const received = await within(Promise.all(opened.map((o) => o.done)), 5000, 'every body');
  const text = received.map((r) => r.body.toString());

  // the leader's variant: shared with the waiter that asked for the same language
  assert.equal(text[0], bodyFor({ headers: { 'accept-language': 'fr' } } as IncomingMessage, 1).toString());
  assert.equal(text[3], text[0]);
  assert.match(cacheStatus(frWaiter), /collapsed/);
  // the other variant: never the leader's body, the origin's answer in its language
  for (const [i, en] of [[1, enH1], [2, enH2]] as const) {
    assert.equal(en.status, 200);
    assert.match(text[i], /^en #\d /, `en client ${i}`);
    assert.doesNotMatch(text[i], /fr/, `en client ${i}`);
    // released when the leader's headers came, not when its body was stored
    const first = await en.firstByte;
    assert.ok(first < origin.ends[0] * 0.5, `en client ${i}: first byte at ${first.toFixed(0)} ms, the fr body ended at ${origin.ends[0].toFixed(0)} ms`);
  }
  const languages = seenFor(path).map((r) => r.headers['accept-language']).sort();
  // Each variant has its flight once the URI is known to vary: the two en requests shared one
  // (before, each went to the origin alone and neither answer was stored).
  assert.deepEqual(languages, ['en', 'fr'], 'the fr waiter shared the leader\'s fetch, the en requests one fetch of their own');
  assert.doesNotMatch(cacheStatus(frLeader), /collapsed/);
  const later = await within(openH2(s, path, { t0, headers: { 'accept-language': 'en' } }), 5000, 'a later en response');
  assert.match((await later.done).body.toString(), /^en #\d /);
  assert.match(cacheStatus(later), /hit/, 'the en fetch was stored');
  assert.equal(count(path), 2);
  // A third language once the URI is known to vary (each lookup a vary-miss): one fetch for the three.
  const de = { t0, headers: { 'accept-language': 'de' } };
  const des = await within(Promise.all([openH2(s, path, de), openH1(path, de), openH2(s, path, de)]), 5000, 'the de responses');
  for (const o of des) assert.match((await o.done).body.toString(), /^de #3 /);
  assert.equal(count(path), 3);
});

test('an uncacheable answer (private) releases the waiters to the origin, each with its own request', async () => {
  const t0 = performance.now();
  const ETAG = '"p"';
  // personal: the body names the user; the origin itself honours Range and If-None-Match
  const path = route(fresh('private'), (req, res, n) => {
    setTimeout(() => {
      const body = Buffer.from(`hello ${req.headers['x-user']} #${n}`);
      const headers = { 'content-type': 'text/plain', 'cache-control': 'private, max-age=60', etag: ETAG };
      if (String(req.headers['if-none-match'] ?? '').includes(ETAG)) {
        res.writeHead(304, headers);
        return void res.end();
      }
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
      if (m) {
        const [start, end] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
        res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': String(end - start + 1) });
        return void res.end(body.subarray(start, end + 1));
      }
      res.writeHead(200, { ...headers, 'content-length': String(body.length) });
      res.end(body);
    }, 400);
  });
  const s = await session();
  const leader = openH2(s, path, { t0, headers: { 'x-user': 'ann' } });
  await until(() => count(path) === 1, 'the leader to reach the origin');
  // while the leader waits for the origin's headers (400 ms): four waiters, each asking something else
  const waiters = Promise.all([
    openH1(path, { t0, headers: { 'x-user': 'bob' } }),
    openH2(s, path, { t0, headers: { 'x-user': 'cy', range: 'bytes=0-4' } }),
    openH2(s, path, { t0, headers: { 'x-user': 'dee', 'if-none-match': ETAG } }),
    openH1(path, { t0, method: 'HEAD', headers: { 'x-user': 'eve' } }),
  ]);
  const [ann, [bob, cy, dee, eve]] = await within(Promise.all([leader, waiters]), 5000, 'every response\'s headers');
  const [annBody, bobBody, cyBody, deeBody, eveBody] = (await within(Promise.all([ann, bob, cy, dee, eve].map((o) => o.done)), 5000, 'every body')).map((r) => r.body.toString());

  assert.equal(ann.status, 200);
  assert.equal(annBody, 'hello ann #1');
  // plain GET: its own personal body, not the leader's
  assert.equal(bob.status, 200);
  assert.match(bobBody, /^hello bob #\d$/);
  // Range: the origin's 206, with the client's Range forwarded
  assert.equal(cy.status, 206);
  assert.equal(cyBody, 'hello');
  assert.match(String(cy.headers['content-range']), /^bytes 0-4\/\d+$/);
  // If-None-Match: the origin's 304
  assert.equal(dee.status, 304);
  assert.equal(deeBody, '');
  // HEAD: headers only, forwarded as HEAD
  assert.equal(eve.status, 200);
  assert.equal(eveBody, '');
  assert.equal(eve.headers['content-length'], '12', 'the length of `hello eve #N`');
  // the leader learnt why; the waiters waited on its forward, then went on their own
  assert.match(cacheStatus(ann), /^Outpost; fwd=uri-miss; fwd-status=200; detail=private$/);
  for (const w of [bob, cy, dee, eve]) assert.match(cacheStatus(w), /^Outpost; fwd=bypass; collapsed; fwd-status=\d+$/);

  // every waiter went to the origin itself, as it asked
  assert.equal(count(path), 5);
  const byUser = new Map(seenFor(path).map((r) => [r.headers['x-user'], r]));
  assert.equal(byUser.get('cy')?.headers.range, 'bytes=0-4');
  assert.equal(byUser.get('dee')?.headers['if-none-match'], ETAG);
  assert.equal(byUser.get('eve')?.method, 'HEAD');
  assert.equal(byUser.get('bob')?.headers.range, undefined);
});

test('a body that comes whole is stored, and its waiters get the stored bytes in one piece, encoded as the leader\'s (encode-once.test.ts: one encode for all)', async () => {
  const t0 = performance.now();
  const page = Buffer.from(`<!doctype html><title>new</title>${'<p>the same paragraph, again and again</p>\n'.repeat(400)}`);
  // the whole page in one write, 300 ms after the request: every waiter is woken by the stored body
  const path = route(fresh('whole'), (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'max-age=60', etag: '"w1"', 'content-length': String(page.length) });
      res.end(page);
    }, 300);
  });
  const [a, b] = [await session(), await session()];
  const br = { 'accept-encoding': 'br' };
  const leader = openH2(a, path, { t0, headers: br });
  await until(() => count(path) === 1, 'the leader to reach the origin');
  const waiters = [
    ...Array.from({ length: 6 }, (_, i) => openH2(i % 2 === 0 ? a : b, path, { t0, headers: br })),
    openH1(path, { t0, headers: br }),
    openH2(b, path, { t0 }), // identity
  ];
  const opened = await within(Promise.all([leader, ...waiters]), 5000, 'every response\'s headers');
  const received = await within(Promise.all(opened.map((o) => o.done)), 5000, 'every body');

  assert.equal(count(path), 1, 'one origin request');
  const coded = opened.slice(0, -1);
  const first = received[0].body;
  assert.ok(brotliDecompressSync(first).equals(page), 'the leader: the page, in Brotli');
  for (const [i, o] of coded.entries()) {
    assert.equal(o.status, 200, `client ${i}`);
    assert.equal(o.headers['content-encoding'], 'br', `client ${i}`);
    // whole, not streamed: a waiter that read the tee through an encoder had no length
    assert.equal(Number(o.headers['content-length']), received[i].body.length, `client ${i}: Content-Length of the stored encoding`);
    assert.ok(received[i].body.equals(first), `client ${i}: the same encoded bytes as the leader`);
    assert.equal(o.headers.etag, '"w1-br2"', `client ${i}: the fast encoding's tag`);
  }
  const identity = opened.at(-1)!;
  assert.equal(identity.headers['content-encoding'], undefined);
  assert.equal(Number(identity.headers['content-length']), page.length);
  assert.ok(received.at(-1)!.body.equals(page));
  for (const o of opened.slice(1)) assert.match(cacheStatus(o), /^Outpost; fwd=uri-miss; collapsed; fwd-status=200$/);
  assert.match(cacheStatus(opened[0]), /^Outpost; fwd=uri-miss; fwd-status=200; stored$/);

  // the encoding was kept: a hit sends it as stored
  const hit = await within(openH2(a, path, { t0, headers: br }), 5000, 'the hit');
  assert.ok((await hit.done).body.equals(first));
  assert.match(cacheStatus(hit), /^Outpost; hit/);
});

test('a stored 404 that comes whole: its waiters get the stored bytes and the cache keeps no coding for it (codings are kept for 200s)', async () => {
  const t0 = performance.now();
  const page = Buffer.from(`<!doctype html><title>gone</title>${'<p>nothing here, nothing at all</p>\n'.repeat(200)}`);
  const path = route(fresh('missing'), (_req, res) => {
    setTimeout(() => {
      res.writeHead(404, { 'content-type': 'text/html', 'cache-control': 'max-age=60', 'content-length': String(page.length) });
      res.end(page);
    }, 200);
  });
  const s = await session();
  const br = { 'accept-encoding': 'br' };
  const leader = openH2(s, path, { t0, headers: br });
  await until(() => count(path) === 1, 'the leader to reach the origin');
  const waiters = Array.from({ length: 4 }, () => openH2(s, path, { t0, headers: br }));
  const opened = await within(Promise.all([leader, ...waiters]), 5000, 'every response\'s headers');
  const received = await within(Promise.all(opened.map((o) => o.done)), 5000, 'every body');
  assert.equal(count(path), 1, 'one origin request');
  for (const [i, o] of opened.entries()) {
    assert.equal(o.status, 404, `client ${i}`);
    const body = o.headers['content-encoding'] === 'br' ? brotliDecompressSync(received[i].body) : received[i].body;
    assert.ok(body.equals(page), `client ${i}: the page`);
  }
  for (const o of opened.slice(1)) assert.match(cacheStatus(o), /^Outpost; fwd=uri-miss; collapsed; fwd-status=404$/);

  const hit = await within(openH2(s, path, { t0, headers: br }), 5000, 'the hit');
  assert.equal(hit.status, 404);
  assert.match(cacheStatus(hit), /^Outpost; hit/);
  await hit.done;
  const res = await fetch(`${outpost.adminUrl}/explain?url=${encodeURIComponent(outpost.url + path)}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const explained = await res.json() as { codings: Array<{ coding: string }> };
  assert.deepEqual(explained.codings.map((c) => c.coding), ['identity'], 'no coding kept for a 404');
});
