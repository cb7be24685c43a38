import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { h1, h2session, startOrigin, startOutpost, type RunningOutpost } from '../helpers/outpost.ts';
import { frontStats } from '../../src/server/listener.ts';
import { startLogs } from '../../src/observability/log.ts';
import { rawH2, frame, headerBlock, FRAME, FLAG, ERROR, errorCodeOf, requestFields, statusOf, type Frame, type RawH2 } from './h2-frames.ts';

/** Per-client connection limits, slow bodies, logs that cannot be flooded, HTTP/2 errors confined to their stream. */

const tlsHandshake = (port: number, ca: string) => new Promise<TLSSocket>((resolve, reject) => {
  const socket = tlsConnect({ port, host: '127.0.0.1', ca, servername: 'localhost', ALPNProtocols: ['h2'] });
  socket.once('secureConnect', () => resolve(socket));
  socket.once('error', reject);
});

/** A connection over the limit: closed before the handshake, so the client sees no server bytes at all. */
const refusedBeforeHandshake = (port: number, ca: string) => new Promise<string>((resolve) => {
  const socket = tlsConnect({ port, host: '127.0.0.1', ca, servername: 'localhost', ALPNProtocols: ['h2'] });
  socket.once('secureConnect', () => { socket.destroy(); resolve('handshake completed'); });
  socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  socket.once('close', () => resolve('closed'));
});

const settle = (ms = 50) => new Promise((resolve) => setTimeout(resolve, ms));

test('connectionsPerClient: the 257th TLS connection from one address is closed before its handshake (default 256); a closed one frees its slot', async () => {
  const origin = await startOrigin((_req, res) => res.end('ok'));
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  const held: TLSSocket[] = [];
  try {
    const before = frontStats().connectionsRefused;
    // 256 real TLS connections, each with a completed handshake, held open
    for (let i = 0; i < 256; i++) held.push(await tlsHandshake(outpost.httpsPort, outpost.ca));
    // the 257th: reset without a handshake, and counted
    assert.match(await refusedBeforeHandshake(outpost.httpsPort, outpost.ca), /ECONNRESET|closed/);
    assert.equal(frontStats().connectionsRefused, before + 1);
    // one held connection closes: its slot is free again
    held.pop()!.destroy();
    await settle();
    held.push(await tlsHandshake(outpost.httpsPort, outpost.ca));
    assert.equal(frontStats().connectionsRefused, before + 1);
  } finally {
    for (const socket of held) socket.destroy();
    await outpost.close();
    await origin.close();
  }
});

test('connectionsPerClient with a front door (TLS passthrough configured): counted where connections are accepted, once', async () => {
  const origin = await startOrigin((_req, res) => res.end('ok'));
  const outpost = await startOutpost({
    limits: { connectionsPerClient: 2 },
    tls: { passthrough: [{ hosts: ['elsewhere.test'], to: '127.0.0.1:9' }] },
    sites: [{ hosts: ['*'], origin: origin.url }],
  });
  const held: TLSSocket[] = [];
  try {
    // two terminated connections fill the slots: each counted once, at the front door
    held.push(await tlsHandshake(outpost.httpsPort, outpost.ca), await tlsHandshake(outpost.httpsPort, outpost.ca));
    assert.match(await refusedBeforeHandshake(outpost.httpsPort, outpost.ca), /ECONNRESET|closed/);
    held.pop()!.destroy();
    await settle();
    assert.equal((await h1(`${outpost.url}/`)).status, 200, 'a closed one frees its slot');
  } finally {
    for (const socket of held) socket.destroy();
    await outpost.close();
    await origin.close();
  }
});

test('connectionsPerClient: one count for the HTTPS and plain-HTTP listeners; trusted proxies are exempt', async () => {
  const origin = await startOrigin((_req, res) => res.end('ok'));
  const outpost = await startOutpost({ listen: { http: 0 }, limits: { connectionsPerClient: 2 }, sites: [{ hosts: ['*'], origin: origin.url }] });
  const held: Array<TLSSocket | Socket> = [];
  try {
    held.push(await tlsHandshake(outpost.httpsPort, outpost.ca));
    const plain = netConnect(outpost.httpPort!, '127.0.0.1');
    await once(plain, 'connect');
    held.push(plain);
    await settle();
    // a third connection, on either listener, is closed without an answer
    const third = netConnect(outpost.httpPort!, '127.0.0.1');
    const received: Buffer[] = [];
    third.on('data', (d: Buffer) => received.push(d));
    third.on('error', () => {}); // ECONNRESET: reset while connecting
    third.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await new Promise((resolve) => third.once('close', resolve));
    assert.equal(Buffer.concat(received).length, 0);
    assert.match(await refusedBeforeHandshake(outpost.httpsPort, outpost.ca), /ECONNRESET|closed/);
    // the plain connection still works, and closing it frees a slot for HTTPS
    plain.destroy();
    await settle();
    assert.equal((await h1(`${outpost.url}/`)).status, 200);
  } finally {
    for (const socket of held) socket.destroy();
    await outpost.close();
    held.length = 0;
  }
  const trusted = await startOutpost({ limits: { connectionsPerClient: 1 }, trustedProxies: ['127.0.0.0/8'], sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    for (let i = 0; i < 3; i++) held.push(await tlsHandshake(trusted.httpsPort, trusted.ca));
  } finally {
    for (const socket of held) socket.destroy();
    await trusted.close();
    await origin.close();
  }
});

/** An origin that reads uploads to the end, answering with their length. */
const uploadOrigin = () => startOrigin((req, res) => {
  let length = 0;
  req.on('data', (chunk: Buffer) => { length += chunk.length; });
  req.on('end', () => res.end(`received ${length}`));
});

test('minBodyRate: a trickled HTTP/2 upload is cut off with 408 soon after the grace; a fast one goes through', async () => {
  const origin = await uploadOrigin();
  // 1 s of grace, then 10 KB/s; the trickle sends 1 KB/s; requestTimeout stays at its 60 s.
  const outpost = await startOutpost({ limits: { bodyGrace: '1s', minBodyRate: '10KB/s' }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats().slowBodies;
    const session = await h2session(outpost.url);
    const started = Date.now();
    const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false });
    const trickle = setInterval(() => stream.write(Buffer.alloc(100)), 100);
    const [headers] = await once(stream, 'response');
    clearInterval(trickle);
    const elapsed = Date.now() - started;
    assert.equal(headers[':status'], 408);
    assert.ok(elapsed >= 900 && elapsed < 3000, `cut off after ${elapsed} ms`);
    assert.equal(frontStats().slowBodies, before + 1);
    stream.destroy();
    // 1 MB at once: far above the rate
    const fast = session.request({ ':method': 'POST', ':path': '/upload' });
    fast.end(Buffer.alloc(1024 * 1024));
    const [fastHeaders] = await once(fast, 'response');
    fast.resume();
    assert.equal(fastHeaders[':status'], 200);
    session.close();
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('minBodyRate: a trickled HTTP/1.1 upload is cut off with 408, and the connection closes', async () => {
  const origin = await uploadOrigin();
  const outpost = await startOutpost({ limits: { bodyGrace: '1s', minBodyRate: '10KB/s' }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const socket = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    const started = Date.now();
    socket.write('POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n');
    // 16 bytes every 100 ms keeps every idle timer awake; only the rate notices
    const trickle = setInterval(() => socket.write(Buffer.alloc(16)), 100);
    let out = '';
    socket.on('data', (d: Buffer) => { out += d; });
    socket.on('error', () => {});
    await once(socket, 'close');
    clearInterval(trickle);
    const elapsed = Date.now() - started;
    assert.match(out, /^HTTP\/1\.1 408 /);
    assert.ok(elapsed < 3000, `cut off after ${elapsed} ms`);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

/** Error-log lines written while `fn` runs, through the real log subscriber. */
async function errorLines(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _encoding, callback) { lines.push(...String(chunk).split('\n').filter(Boolean)); callback(); } });
  const logs = startLogs({ access: 'off', format: 'text' }, sink);
  try {
    await fn();
  } finally {
    await logs.close();
  }
  return lines;
}

const frameSummary = (c: RawH2) => c.frames.map((f) => `${f.type}@${f.stream}${f.type === FRAME.RST_STREAM || f.type === FRAME.GOAWAY ? `:${errorCodeOf(f)}` : ''}`).join(' ');

test('logs: one connection that exceeds the stream limit 100 times writes a bounded number of lines; counted instead', async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => { release = resolve; });
  const origin = await startOrigin((_req, res) => { void held.then(() => res.end('late')); });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats();
    const lines = await errorLines(async () => {
      for (const ackSettings of [true, false]) {
        const c = await rawH2(outpost.httpsPort, outpost.ca, { ackSettings });
        if (ackSettings) await c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0);
        // 128 requests held at the origin, then 100 more than the limit allows
        for (let i = 0; i < 228; i++) c.request(1 + 2 * i, requestFields(`/s${i}`));
        await Promise.race([c.closed, settle(1000)]);
        c.close();
        await settle(200);
      }
    });
    assert.ok(lines.length <= 4, `${lines.length} lines:\n${lines.slice(0, 10).join('\n')}`);
    const after = frontStats();
    assert.ok(after.h2SessionErrors + after.h2StreamErrors > before.h2SessionErrors + before.h2StreamErrors, 'counted');
  } finally {
    release();
    await outpost.close();
    await origin.close();
  }
});

test('logs: an HTTP/2 session error is counted once, not once per open stream or twice', async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => { release = resolve; });
  const origin = await startOrigin((_req, res) => { void held.then(() => res.end('late')); });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats();
    const lines = await errorLines(async () => {
      const c = await rawH2(outpost.httpsPort, outpost.ca);
      for (let i = 0; i < 10; i++) c.request(1 + 2 * i, requestFields(`/s${i}`));
      await settle(100);
      // DATA on stream 0: a connection error (RFC 9113 §6.1)
      c.send(frame(FRAME.DATA, 0, 0, Buffer.from('x')));
      const goaway = await c.waitFor((f) => f.type === FRAME.GOAWAY);
      assert.equal(errorCodeOf(goaway), ERROR.PROTOCOL_ERROR);
      await c.closed;
      await settle(100);
    });
    assert.deepEqual(lines, []);
    const after = frontStats();
    assert.equal(after.h2SessionErrors - before.h2SessionErrors, 1);
    assert.equal(after.h2StreamErrors - before.h2StreamErrors, 0, 'the streams it took down are the same event');
  } finally {
    release();
    await outpost.close();
    await origin.close();
  }
});

/** A request, then a second one on the same connection: its answer proves the connection survived. */
async function secondRequestAnswered(c: RawH2, stream: number): Promise<number | undefined> {
  c.request(stream, requestFields('/after'));
  const headers = await c.waitFor((f: Frame) => f.type === FRAME.HEADERS && f.stream === stream);
  return statusOf(headers.payload);
}

test('HTTP/2: DATA beyond the Content-Length resets that stream with PROTOCOL_ERROR; the connection carries on (RFC 9113 §8.1.1)', async () => {
  const origin = await uploadOrigin();
  const outpost: RunningOutpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats().h2StreamErrorsConfined;
    const c = await rawH2(outpost.httpsPort, outpost.ca);
    c.request(1, requestFields('/upload', [['content-length', '3']], 'POST'), { endStream: false });
    c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('abcdef')));
    const reset = await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.stream === 1);
    assert.equal(errorCodeOf(reset), ERROR.PROTOCOL_ERROR);
    assert.equal(await secondRequestAnswered(c, 3), 200);
    assert.equal(c.frames.filter((f) => f.type === FRAME.GOAWAY).length, 0, frameSummary(c));
    assert.equal(frontStats().h2StreamErrorsConfined, before + 1);
    c.close();
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: two uploads past their Content-Length in one read reset both streams; the connection carries on', async () => {
  const origin = await uploadOrigin();
  const outpost: RunningOutpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats().h2StreamErrorsConfined;
    const c = await rawH2(outpost.httpsPort, outpost.ca);
    // Both in one write: nghttp2's report for the second came while the first was still being
    // looked at, and that second report destroyed the session (GOAWAY INTERNAL_ERROR, found by a
    // fuzzer with 8 streams in flight).
    c.send(...[1, 3].flatMap((id) => [
      frame(FRAME.HEADERS, FLAG.END_HEADERS, id, headerBlock(requestFields('/upload', [['content-length', '0']], 'POST'))),
      frame(FRAME.DATA, FLAG.END_STREAM, id, Buffer.from('abcde')),
    ]));
    for (const id of [1, 3]) assert.equal(errorCodeOf(await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.stream === id)), ERROR.PROTOCOL_ERROR);
    assert.equal(await secondRequestAnswered(c, 5), 200);
    assert.equal(c.frames.filter((f) => f.type === FRAME.GOAWAY).length, 0, frameSummary(c));
    assert.equal(frontStats().h2StreamErrorsConfined, before + 2);
    c.close();
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: a body shorter than its Content-Length resets that stream only; the origin request is abandoned', async () => {
  const origin = await uploadOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const c = await rawH2(outpost.httpsPort, outpost.ca);
    c.request(1, requestFields('/upload', [['content-length', '10']], 'POST'), { endStream: false });
    c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('abc')));
    const reset = await c.waitFor((f) => f.type === FRAME.RST_STREAM && f.stream === 1);
    assert.equal(errorCodeOf(reset), ERROR.PROTOCOL_ERROR);
    assert.equal(await secondRequestAnswered(c, 3), 200);
    assert.equal(c.frames.filter((f) => f.type === FRAME.HEADERS && f.stream === 1).length, 0, 'no answer on the reset stream');
    c.close();
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: a connection error still ends the connection (the confinement is for stream errors only)', async () => {
  const origin = await uploadOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const c = await rawH2(outpost.httpsPort, outpost.ca);
    // HEADERS on an even stream id: a client may only open odd ones (RFC 9113 §5.1.1)
    c.request(2, requestFields('/'));
    const goaway = await c.waitFor((f) => f.type === FRAME.GOAWAY);
    assert.equal(errorCodeOf(goaway), ERROR.PROTOCOL_ERROR);
    await c.closed;
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: a field value with CR, LF or NUL never reaches the origin (Node 24 drops the field; see request.ts)', async () => {
  const origin = await startOrigin((req, res) => res.end(JSON.stringify(req.headers['x-a'] ?? null)));
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const c = await rawH2(outpost.httpsPort, outpost.ca);
    let id = 1;
    for (const value of ['a\rb', 'a\nInjected: yes', 'a\u0000b', ' padded']) {
      c.request(id, requestFields('/f', [['x-a', value]]));
      await c.waitFor((f) => (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM) && f.stream === id);
      id += 2;
    }
    assert.equal(await secondRequestAnswered(c, id), 200);
    c.close();
    for (const seen of origin.seen) {
      assert.equal(seen.headers['x-a'], undefined);
      assert.equal(seen.headers.injected, undefined);
    }
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('config: minBodyRate takes a rate ("1KB/s", bytes a second as a number, 0 = off); a bad one names its key', async () => {
  const { validateConfig } = await import('../../src/config/load.ts');
  assert.equal(validateConfig({ limits: { minBodyRate: '1KB/s' } }).limits.minBodyRate, 1024);
  assert.equal(validateConfig({ limits: { minBodyRate: 0 } }).limits.minBodyRate, 0);
  assert.equal(validateConfig({}).limits.minBodyRate, 500);
  assert.equal(validateConfig({}).limits.connectionsPerClient, 256);
  assert.throws(() => validateConfig({ limits: { minBodyRate: 'fast', connectionsPerClient: 0 } }),
    (err: Error) => /limits\.minBodyRate: expected a data rate/.test(err.message) && /limits\.connectionsPerClient/.test(err.message));
});

test('logs: malformed requests are answered and counted, not logged', async () => {
  const origin = await uploadOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const before = frontStats().badRequests;
    const lines = await errorLines(async () => {
      for (let i = 0; i < 20; i++) {
        const res = await h1(`${outpost.url}/`, { headers: { 'transfer-encoding': 'gzip, chunked' }, method: 'POST', body: 'x' });
        assert.equal(res.status, 501);
      }
    });
    assert.deepEqual(lines, []);
    assert.equal(frontStats().badRequests, before + 20);
  } finally {
    await outpost.close();
    await origin.close();
  }
});
