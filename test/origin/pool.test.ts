import { test } from 'node:test';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { connect as connectH2 } from 'node:http2';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { h1, h2, startOrigin, startOutpost, testClock, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { manualTimers, type ManualTimers } from '../helpers/timers.ts';
import type { UpstreamEvent } from '../../src/observability/channels.ts';
import { until, waitFor } from '../helpers/wait.ts';
import { startEndlessOrigin } from '../helpers/endless-origin.ts';
import { refusedPort } from '../helpers/refused-port.ts';
import { tempSpace } from '../../src/origin/temp-file.ts';
import { rawH2, frame, FRAME, FLAG } from '../server/h2-frames.ts';

/**
 * Upstream pools against real origins: balancing, active health checks (their timers moved by
 * hand), passive failures, backups, retries and what /stats says.
 */

const TOKEN = 'pool-test-admin-token-0123';

interface Backend extends TestOrigin {
  readonly name: string;
  /** What /health answers. */
  health: number;
  /** ok: 200 naming this backend; fail: 503; reset: the connection is dropped before any byte; hold: kept waiting. */
  mode: 'ok' | 'fail' | 'reset' | 'hold';
  readonly held: ServerResponse[];
  /** Requests other than health probes. */
  work(): number;
}

async function backend(name: string, onRequest?: () => void): Promise<Backend> {
  const state = { health: 200, mode: 'ok' as Backend['mode'], held: [] as ServerResponse[] };
  const origin = await startOrigin((req, res, seen) => {
    res.on('error', () => {});
    if (req.url === '/health') {
      res.writeHead(state.health, { 'content-length': 0 });
      return void res.end();
    }
    onRequest?.();
    if (state.mode === 'reset') return void req.socket.destroy();
    if (state.mode === 'hold') return void state.held.push(res);
    req.on('end', () => {
      if (state.mode === 'fail') {
        res.writeHead(503, { 'content-type': 'text/plain' });
        return void res.end(`${name} failing`);
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': req.url?.startsWith('/cached') ? 'max-age=1' : 'no-store' });
      res.end(`${name} ${req.method} ${req.url} ${seen.bodyLength}`);
    });
    req.resume();
  });
  return Object.assign(state, origin, {
    name,
    work: () => origin.seen.filter((r) => r.url !== '/health').length,
  });
}

async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await refusedPort()}`;
}

const checks = { path: '/health', interval: '1s', timeout: '500ms', fails: 2, passes: 2 };

/**
 * One probe of every upstream. With the jitter's random fixed at 0.5 the first probes run half an
 * interval after start and then one interval after the last ended: the clock is moved to exactly
 * that moment, so it never jumps past a probe's timeout while the probe is on the wire.
 */
async function probeRound(outpost: RunningOutpost, timers: ManualTimers): Promise<void> {
  timers.advance(timers.now() === 0 ? 500 : 1000);
  await outpost.probesSettled();
}
const random = () => 0.5;

const who = (res: { body: Buffer }) => res.body.toString().split(' ')[0];

async function stats(outpost: RunningOutpost): Promise<any> {
  const res = await fetch(`${outpost.adminUrl}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return res.json();
}

test('an upstream failing its health checks leaves the rotation before clients see errors (POST included) and returns when healthy', async () => {
  const timers = manualTimers();
  const a = await backend('A');
  const b = await backend('B');
  const events: UpstreamEvent[] = [];
  const onEvent = (e: unknown) => events.push(e as UpstreamEvent);
  diagnostics.subscribe('outpost:upstream', onEvent);
  const outpost = await startOutpost({
    admin: { token: TOKEN },
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [a.url, b.url], healthCheck: checks } }],
  }, { timers, random });
  try {
    await probeRound(outpost, timers);
    // both healthy: round-robin
    const first = await Promise.all([1, 2, 3, 4].map((i) => h2(`${outpost.url}/w/${i}`)));
    assert.deepEqual(first.map(who).sort(), ['A', 'A', 'B', 'B']);

    // B's health endpoint starts failing (it is draining); two failed probes take it out
    b.health = 503;
    await probeRound(outpost, timers);
    let s = await stats(outpost);
    assert.equal(s.origins['sites[0]'].upstreams[1].healthy, true, 'one failed probe is not yet two');
    assert.equal(s.origins['sites[0]'].upstreams[1].failing, 1);
    await probeRound(outpost, timers);
    s = await stats(outpost);
    assert.deepEqual(
      (({ url, healthy, checks: state, failing, lastCheck }) => ({ url, healthy, state, failing, lastCheck }))(s.origins['sites[0]'].upstreams[1]),
      { url: b.url, healthy: false, state: 'down', failing: 2, lastCheck: 'status 503' },
    );
    // and now its application fails too: nobody notices, GET or POST
    b.mode = 'fail';
    const before = b.work();
    for (let i = 0; i < 4; i++) {
      const get = await h1(`${outpost.url}/g/${i}`);
      const post = await h2(`${outpost.url}/p/${i}`, { method: 'POST', body: 'data' });
      assert.equal(get.status, 200);
      assert.equal(post.status, 200);
      assert.equal(post.body.toString(), `A POST /p/${i} 4`);
    }
    assert.equal(b.work(), before, 'B got no requests while out of rotation');

    // B recovers: two good probes bring it back
    b.health = 200;
    b.mode = 'ok';
    await probeRound(outpost, timers);
    await probeRound(outpost, timers);
    const after = await Promise.all([1, 2, 3, 4].map((i) => h2(`${outpost.url}/back/${i}`)));
    assert.deepEqual(after.map(who).sort(), ['A', 'A', 'B', 'B']);
    assert.deepEqual(events.map((e) => `${e.pool} ${e.upstream} ${e.up ? 'up' : 'down'}`), [
      `sites[0] ${b.url} down`,
      `sites[0] ${b.url} up`,
    ]);
    s = await stats(outpost);
    const stat = s.origins['sites[0]'];
    assert.equal(stat.balance, 'round-robin');
    assert.equal(stat.healthChecks, true);
    for (const u of stat.upstreams) {
      assert.equal(u.healthy, true);
      assert.equal(u.inFlight, 0);
      assert.ok(u.requests > 0 && u.latencyMs > 0, JSON.stringify(u));
    }
  } finally {
    diagnostics.unsubscribe('outpost:upstream', onEvent);
    await outpost.close();
    await a.close();
    await b.close();
  }
});

test('a request that provably never reached an upstream (connection refused) is retried on another, POST and PUT bodies whole', async () => {
  const a = await backend('A');
  // failTimeout 0: the dead upstream stays in rotation, so every other request meets it first
  const outpost = await startOutpost({ proxy: { failTimeout: '0s' }, sites: [{ hosts: ['*'], cache: { enabled: false }, origin: [await deadUrl(), a.url] }] });
  try {
    const body = Buffer.alloc(100_000, 'x');
    for (let i = 0; i < 4; i++) {
      const post = await h2(`${outpost.url}/p/${i}`, { method: 'POST', body });
      assert.equal(post.status, 200);
      assert.equal(post.body.toString(), `A POST /p/${i} 100000`);
      const put = await h1(`${outpost.url}/u/${i}`, { method: 'PUT', body, headers: { 'content-length': String(body.length) } });
      assert.equal(put.body.toString(), `A PUT /u/${i} 100000`);
    }
  } finally {
    await outpost.close();
    await a.close();
  }
});

test('a reset before any response byte: an idempotent request is retried, a POST is not (it may have been applied)', async () => {
  const r = await backend('R');
  const a = await backend('A');
  r.mode = 'reset';
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: [r.url, a.url] }] });
  try {
    for (let i = 0; i < 4; i++) {
      const res = await h2(`${outpost.url}/g/${i}`, { method: i % 2 ? 'DELETE' : 'GET' });
      assert.equal(res.status, 200);
      assert.equal(who(res), 'A');
    }
    const before = r.work();
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await h2(`${outpost.url}/p/${i}`, { method: 'POST', body: 'x' })).status);
    const reachedR = r.work() - before;
    assert.ok(reachedR > 0, 'some POSTs met the resetting upstream');
    assert.equal(statuses.filter((s) => s === 502).length, reachedR, `statuses ${statuses}`);
    assert.equal(statuses.filter((s) => s === 200).length, 4 - reachedR);
  } finally {
    await outpost.close();
    await r.close();
    await a.close();
  }
});

test('a 502/503/504 answer: an idempotent request gets another upstream\'s answer, a POST gets the 503; retries: 0 turns it off', async () => {
  const f = await backend('F');
  const a = await backend('A');
  f.mode = 'fail';
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: [f.url, a.url],
    routes: [{ path: '/once/', origin: [f.url, a.url], proxy: { retries: 0 } }] }] });
  try {
    for (let i = 0; i < 4; i++) assert.equal(who(await h1(`${outpost.url}/g/${i}`)), 'A');
    const posts = [];
    for (let i = 0; i < 4; i++) posts.push((await h1(`${outpost.url}/p/${i}`, { method: 'POST', body: 'x' })).status);
    assert.ok(posts.includes(503) && posts.includes(200), `statuses ${posts}`);
    const once = [];
    for (let i = 0; i < 4; i++) once.push((await h1(`${outpost.url}/once/${i}`)).status);
    assert.deepEqual(once.sort(), [200, 200, 503, 503]);
  } finally {
    await outpost.close();
    await f.close();
    await a.close();
  }
});

test('a retried request\'s answer goes through the origin decoder like any other: gzip from the origin, identity to a client that did not ask for it', async () => {
  let failed = 0;
  const f = await startOrigin((_req, res) => {
    failed++;
    res.writeHead(503, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
    res.end(gzipSync('F failing'));
  });
  const a = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'cache-control': req.url!.startsWith('/cached') ? 'max-age=60' : 'no-store' });
    res.end(gzipSync(`A ${req.url}`));
  });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: [f.url, a.url] }] });
  try {
    // Round-robin: every other request tries F first and is retried on A. Stored (decoded for the
    // cache) and passed through (decoded for a client that takes no coding) alike.
    for (const path of ['/cached/1', '/pass/1', '/cached/2', '/pass/2']) {
      const res = await h1(`${outpost.url}${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['content-encoding'], undefined, path);
      assert.equal(res.body.toString(), `A ${path}`);
    }
    assert.equal(failed, 2, 'two of the four went to F first');
  } finally {
    await outpost.close();
    await f.close();
    await a.close();
  }
});

test('no retry starts after retryDeadline', async () => {
  const timers = manualTimers();
  // F answers 503, but only after 11 s have passed (on the injected clock)
  const f = await backend('F', () => timers.advance(11_000));
  const a = await backend('A');
  f.mode = 'fail';
  const outpost = await startOutpost({ proxy: { retryDeadline: '10s' }, sites: [{ hosts: ['*'], cache: { enabled: false }, origin: [f.url, a.url] }] }, { timers, random });
  try {
    const res = await h1(`${outpost.url}/x`);
    assert.equal(res.status, 503);
    assert.equal(res.body.toString(), 'F failing');
    assert.equal(a.work(), 0);
  } finally {
    await outpost.close();
    await f.close();
    await a.close();
  }
});

test('backups serve only when no primary is healthy; with everything down a quick 503, or the stale copy within grace', async () => {
  const timers = manualTimers();
  const clock = testClock();
  const p = await backend('P');
  const k = await backend('K');
  const outpost = await startOutpost({
    sites: [{ hosts: ['*'], origin: { upstreams: [p.url, { url: k.url, backup: true }], healthCheck: checks } }],
  }, { timers, random, now: clock.now });
  try {
    await probeRound(outpost, timers);
    for (let i = 0; i < 3; i++) assert.equal(who(await h2(`${outpost.url}/w/${i}`)), 'P');
    const cached = await h2(`${outpost.url}/cached`);
    assert.equal(who(cached), 'P');
    assert.equal(k.work(), 0, 'the backup is idle while the primary is healthy');

    p.health = 500;
    await probeRound(outpost, timers);
    await probeRound(outpost, timers);
    for (let i = 0; i < 3; i++) assert.equal(who(await h2(`${outpost.url}/w2/${i}`)), 'K');

    k.health = 500;
    await probeRound(outpost, timers);
    await probeRound(outpost, timers);
    const seen = p.work() + k.work();
    const started = performance.now();
    const down = await h2(`${outpost.url}/w3`);
    assert.equal(down.status, 503);
    assert.match(down.body.toString(), /no healthy upstream/);
    assert.ok(performance.now() - started < 1000);
    // A URI the cache learnt is uncacheable (no-store) goes straight to the pool: its 503 carries the cache's word too.
    const passed = await h2(`${outpost.url}/w/0`);
    assert.equal(passed.status, 503);
    assert.equal(String(passed.headers['cache-status']), 'Outpost; fwd=bypass; detail=origin-error');
    // the stored copy, now stale, is served within the grace period instead
    clock.advance(3000);
    const stale = await h2(`${outpost.url}/cached`);
    assert.equal(stale.status, 200);
    assert.equal(who(stale), 'P');
    assert.match(String(stale.headers['cache-status']), /fwd=stale; fwd-status=503/);
    assert.equal(p.work() + k.work(), seen, 'no origin was asked');
  } finally {
    await outpost.close();
    await p.close();
    await k.close();
  }
});

test('least-connections: requests go to the upstream with fewer in flight', async () => {
  const x = await backend('X');
  const y = await backend('Y');
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [x.url, y.url], balance: 'least-connections' } }] });
  try {
    x.mode = 'hold';
    y.mode = 'hold';
    const slow = h2(`${outpost.url}/slow`);
    const holder = await waitFor(() => (x.held.length > 0 ? x : y.held.length > 0 ? y : undefined));
    const other = holder === x ? y : x;
    other.mode = 'ok';
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(who(await h1(`${outpost.url}/fast/${i}`)));
    assert.deepEqual(answers, Array(6).fill(other.name));
    holder.held[0].end('done');
    assert.equal((await slow).status, 200);
  } finally {
    await outpost.close();
    await x.close();
    await y.close();
  }
});

test('weights: round-robin shares 2:1', async () => {
  const a = await backend('A');
  const b = await backend('B');
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: [{ url: a.url, weight: 2 }, b.url] }] });
  try {
    const names = [];
    for (let i = 0; i < 12; i++) names.push(who(await h1(`${outpost.url}/w/${i}`)));
    assert.deepEqual(names, ['A', 'B', 'A', 'A', 'B', 'A', 'A', 'B', 'A', 'A', 'B', 'A']);
  } finally {
    await outpost.close();
    await a.close();
    await b.close();
  }
});

test('hash: each URL keeps one upstream; when one leaves, only its URLs move', async () => {
  const timers = manualTimers();
  const a = await backend('A');
  const b = await backend('B');
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [a.url, b.url], balance: 'hash', healthCheck: checks } }] }, { timers, random });
  try {
    await probeRound(outpost, timers);
    const paths = Array.from({ length: 24 }, (_, i) => `/item/${i}?v=${i % 3}`);
    const home = new Map<string, string>();
    for (const path of paths) home.set(path, who(await h2(`${outpost.url}${path}`)));
    for (const path of paths) assert.equal(who(await h1(`${outpost.url}${path}`)), home.get(path), path);
    assert.ok([...home.values()].includes('A') && [...home.values()].includes('B'));
    b.health = 503;
    await probeRound(outpost, timers);
    await probeRound(outpost, timers);
    for (const path of paths) assert.equal(who(await h2(`${outpost.url}${path}`)), 'A');
    b.health = 200;
    await probeRound(outpost, timers);
    await probeRound(outpost, timers);
    for (const path of paths) assert.equal(who(await h2(`${outpost.url}${path}`)), home.get(path), `${path} back home`);
  } finally {
    await outpost.close();
    await a.close();
    await b.close();
  }
});

test('a request waiting for a connection (every one busy) gets a 504 after proxy.headersTimeout, not an endless wait; it never reaches the origin', async () => {
  const timers = manualTimers();
  const held: ServerResponse[] = [];
  const origin = await startOrigin((req, res) => {
    if (req.url === '/hold') {
      // Its header and a first chunk now, the rest when the test lets go: undici's header
      // timeout is over, and its body timeout is far away (30 s).
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('held ');
      held.push(res);
    } else res.end(`quick ${req.url}`);
  });
  const outpost = await startOutpost({
    proxy: { connections: 1, headersTimeout: '5s' },
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }],
  }, { timers });
  try {
    // The only connection is taken by a response that is not coming yet (a client that stopped
    // reading a pass-through body holds one the same way).
    const holding = h1(`${outpost.url}/hold`);
    await until(() => held.length === 1);
    for (const [name, client] of [['h2', h2], ['h1', h1]] as const) {
      const waiting = client(`${outpost.url}/queued-${name}`);
      await new Promise((r) => setTimeout(r, 50)); // dispatched and queued in undici
      timers.advance(4999);
      await new Promise((r) => setTimeout(r, 20));
      timers.advance(1);
      const res = await waiting;
      assert.equal(res.status, 504, name);
      assert.match(res.body.toString(), /no connection to the origin became free in time/, name);
    }
    held[0].end('to the end');
    assert.equal((await holding).body.toString(), 'held to the end');
    // The queued ones were dropped when undici got to them: the origin never saw them.
    assert.equal((await h2(`${outpost.url}/after`)).body.toString(), 'quick /after');
    assert.deepEqual(origin.seen.map((s) => s.url), ['/hold', '/after']);
  } finally {
    for (const res of held) if (!res.writableEnded) res.end();
    await outpost.close();
    await origin.close();
  }
});

test('a client that takes no byte of a streamed response for limits.sendTimeout is cut off, and the origin connection it held is let go', async () => {
  const timers = manualTimers();
  // A large body written as fast as the proxy takes it: paced by the client through Outpost.
  const origin = await startEndlessOrigin();
  const outpost = await startOutpost({
    // No temp file: the client paces the origin, as it did before they came (the test after this one).
    proxy: { connections: 1, maxTempFileSize: 0 },
    limits: { sendTimeout: '20s' },
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }],
  }, { timers });
  try {
    // An HTTP/1.1 client that reads the response's head and then nothing more.
    const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write('GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const [head] = await once(socket, 'data') as [Buffer];
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 200 /);
    socket.pause();
    // Until every buffer between the origin and the client is full, the count moves.
    let last = -1;
    await until(() => { const stalled = origin.written() === last; last = origin.written(); return stalled; }, 10_000, 200);
    assert.equal(origin.closed(), false);
    for (let i = 0; i < 6 && !origin.closed(); i++) {
      timers.advance(5000); // the watch looks every quarter of sendTimeout
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => origin.closed());
    const closed = once(socket, 'close');
    socket.resume();
    await closed;
    // The connection is free for the next request.
    assert.equal((await h2(`${outpost.url}/after`)).body.toString(), 'quick /after');
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('a client slower than the origin: the response goes on into a temp file and the origin connection is let go; past maxTempFileSize or limits.tempFileSpace the client paces the origin again', async (t) => {
  const SIZE = 24 * 1024 * 1024; // more than every socket buffer between origin and client can hold
  const body = randomBytes(SIZE);
  let flushed = 0;
  const origin = await startOrigin((req, res) => {
    if (req.url !== '/big') return void res.end(`quick ${req.url}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SIZE });
    res.end(body, () => { flushed++; });
  });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-spill-'));
  /** An HTTP/1.1 client that reads the response's head, then nothing until `read()`. */
  async function slowClient(outpost: RunningOutpost) {
    const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write('GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    const [first] = await once(socket, 'data') as [Buffer];
    socket.pause();
    return Object.assign(async () => {
      const chunks = [first];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.resume();
      await once(socket, 'end');
      const response = Buffer.concat(chunks);
      const head = response.indexOf('\r\n\r\n') + 4;
      assert.match(response.subarray(0, head).toString('latin1'), /^HTTP\/1\.1 200 /);
      assert.ok(response.subarray(head).equals(body), `the body, whole and in order (${response.length - head} of ${SIZE} bytes)`);
    }, { socket });
  }
  const timers = manualTimers();
  const start = (more: Record<string, unknown> = {}, limits: Record<string, unknown> = {}) => startOutpost({
    proxy: { connections: 1, headersTimeout: '5s', tempPath: dir, ...more },
    limits,
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }],
  }, { timers });
  const spilling = await start();
  t.after(async () => {
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const read = await slowClient(spilling);
    // The origin's whole answer was taken while the client reads nothing ...
    await until(() => flushed === 1, 10_000);
    assert.deepEqual(readdirSync(dir), [], 'the temp file is unlinked as soon as it is open');
    assert.ok(tempSpace.used > SIZE / 2, `counted: ${tempSpace.used}`);
    // ... so its only connection serves the next request at once.
    assert.equal((await h2(`${spilling.url}/next`)).body.toString(), 'quick /next');
    await read();
    assert.equal(tempSpace.used, 0, 'the file is closed once read out');
    // A client that goes away with its response in a temp file: the file goes with it.
    const gone = await slowClient(spilling);
    await until(() => flushed === 2, 10_000);
    assert.ok(tempSpace.used > 0);
    gone.socket.destroy();
    await until(() => tempSpace.used === 0);
  } finally {
    await spilling.close();
  }
  // 1 MB of temp file, or of temp files in all: the origin is paced by the client again, and the
  // next request waits for the connection (504 after headersTimeout). The body still arrives
  // whole once read.
  for (const [more, limits] of [[{ maxTempFileSize: '1MB' }, {}], [{}, { tempFileSpace: '1MB' }]]) {
    const limited = await start(more, limits);
    try {
      const before = flushed;
      const read = await slowClient(limited);
      const waiting = h2(`${limited.url}/queued`);
      await new Promise((r) => setTimeout(r, 300)); // dispatched and queued in undici
      timers.advance(5000);
      assert.equal((await waiting).status, 504, JSON.stringify([more, limits]));
      assert.equal(flushed, before);
      // Checked after each chunk: the one that crosses the limit (up to 64 KiB), and any undici hands on in the same read.
      assert.ok(tempSpace.used <= 1024 * 1024 + 256 * 1024, `within the limit: ${tempSpace.used}`);
      await read();
      await until(() => flushed === before + 1);
      assert.equal(tempSpace.used, 0);
    } finally {
      await limited.close();
    }
  }
});

test('an upload the client breaks (malformed chunks, a cut HTTP/2 body, DATA past its content-length) is the client\'s doing: not counted against the upstream, nor logged as the origin\'s failure', async () => {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.once('end', () => res.end('stored'));
  });
  const outpost = await startOutpost({ admin: { token: TOKEN }, sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }] });
  const errors: unknown[] = [];
  const onError = (event: unknown) => errors.push(event);
  diagnostics.subscribe('outpost:error', onError);
  try {
    // HTTP/1.1: a chunk size that is not hex, after a first good chunk went on to the origin.
    const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write('POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    await new Promise((r) => setTimeout(r, 100));
    socket.write('zz\r\nbroken\r\n');
    socket.resume();
    await once(socket, 'close');
    // HTTP/2: a content-length the DATA does not reach.
    const session = connectH2(outpost.url, { ca: outpost.ca });
    const stream = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': '100' }, { endStream: false });
    stream.on('error', () => {});
    stream.write('only ten b');
    await new Promise((r) => setTimeout(r, 100));
    stream.end();
    await new Promise((resolve) => stream.once('close', resolve));
    session.close();
    // HTTP/2: DATA past the declared content-length (RFC 9113 §8.1.1: malformed, the stream reset
    // with PROTOCOL_ERROR while its first bytes are on their way to the origin).
    const raw = await rawH2(outpost.httpsPort, outpost.ca);
    raw.request(1, [[':method', 'POST'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/upload'], ['content-length', '4']], { endStream: false });
    raw.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('cdefgh')));
    await raw.waitFor((f) => f.type === FRAME.RST_STREAM && f.stream === 1);
    raw.close();
    await new Promise((r) => setTimeout(r, 100));
    const upstream = (await stats(outpost)).origins['sites[0]'].upstreams[0];
    assert.equal(upstream.failures, 0, `the client's doing: ${upstream.lastError}`);
    assert.deepEqual(errors.filter((e) => /origin/i.test(String((e as { error?: Error }).error?.message))), [], 'no "origin could not be reached" in the error log');
    assert.equal((await h2(`${outpost.url}/still`)).status, 200);
  } finally {
    diagnostics.unsubscribe('outpost:error', onError);
    await outpost.close();
    await origin.close();
  }
});
