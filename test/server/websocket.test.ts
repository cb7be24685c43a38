import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createH2cServer } from 'node:http2';
import { Agent, WebSocket } from 'undici';
import { h1, startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { acceptOf, h2WsOrigin, wsOrigin } from '../helpers/ws-origin.ts';
import { manualTimers } from '../helpers/timers.ts';
import { responseEndChannel, type ResponseEndEvent } from '../../src/observability/channels.ts';
import { openTunnels } from '../../src/server/upgrade.ts';
import { until } from '../helpers/wait.ts';

/**
 * WebSocket upgrades over HTTP/1.1 (server/upgrade.ts): through the chain, then a tunnel to the
 * origin on its 101; any other answer is an ordinary response and the connection closes.
 */

/** A raw HTTP/1.1 client connection to `url`'s listener (TLS for https). */
async function rawConnection(url: string): Promise<Socket> {
  const { protocol, port } = new URL(url);
  const socket = protocol === 'https:'
    ? tlsConnect({ host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: await testCa(), ALPNProtocols: ['http/1.1'] })
    : netConnect({ host: '127.0.0.1', port: Number(port) });
  await once(socket, protocol === 'https:' ? 'secureConnect' : 'connect');
  return socket;
}

/** What `socket` receives, as one growing string; `closed` once it has closed. */
function reader(socket: Socket) {
  const state = { text: '', closed: false };
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => { state.text += chunk; });
  socket.on('error', () => {});
  socket.on('close', () => { state.closed = true; });
  return state;
}

const upgradeRequest = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/**
 * undici's WebSocket client through Outpost (on `port`, over what `dispatcher` offers by ALPN) to
 * an echoing origin at /ws: the first subprotocol agreed, two messages both ways, a clean close.
 */
async function chatThrough(port: number, dispatcher: Agent): Promise<void> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { protocols: ['chat', 'other'], dispatcher });
  await once(ws, 'open');
  assert.equal(ws.protocol, 'chat');
  const messages: string[] = [];
  ws.addEventListener('message', (event) => messages.push(String(event.data)));
  ws.send('hello');
  ws.send('and again');
  await until(() => messages.length === 2);
  assert.deepEqual(messages, ['hello', 'and again']);
  const closed = once(ws, 'close');
  ws.close(1000, 'done');
  const [event] = await closed as [{ code: number; wasClean: boolean }];
  assert.deepEqual({ code: event.code, clean: event.wasClean }, { code: 1000, clean: true });
}

test('WebSocket upgrades over HTTPS and plain HTTP: the origin\'s 101, then bytes both ways (the first sent with the request too); either side closing closes the other', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ listen: { http: 0, httpMode: 'serve' }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    for (const url of [outpost.url, `http://127.0.0.1:${outpost.httpPort}`]) {
      const socket = await rawConnection(url);
      const got = reader(socket);
      socket.write(`${upgradeRequest('/raw')}HELLO`);
      await until(() => got.text.includes('echo:HELLO'));
      const [head] = got.text.split('\r\n\r\n');
      assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/, url);
      assert.match(head, /\r\nupgrade: websocket\r\n/i);
      assert.match(head, /\r\nconnection: upgrade\r\n/i);
      assert.match(head, new RegExp(`\r\nsec-websocket-accept: ${acceptOf('dGhlIHNhbXBsZSBub25jZQ==').replace(/[+/=]/g, '\\$&')}\r\n`, 'i'));
      assert.match(head, /\r\nvia: 1\.1 outpost\r\n/i);
      assert.doesNotMatch(head, /content-length|transfer-encoding/i);
      socket.write('MORE');
      await until(() => got.text.endsWith('echo:MORE'));
      assert.equal(openTunnels(), 1, 'outpost_open_websockets');
      // The origin asked to switch, with the client's WebSocket fields and the forwarded ones.
      const seen = origin.upgrades.at(-1)!;
      assert.equal(seen.url, '/raw');
      assert.equal(seen.headers.upgrade, 'websocket');
      assert.equal(seen.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==');
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
      // The client goes: so does the origin's side.
      const originSide = origin.sockets.at(-1)!;
      socket.end();
      await until(() => originSide.destroyed || originSide.readableEnded);
      await until(() => openTunnels() === 0);
    }
    // And the other way round: the origin closes, the client's connection closes.
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    socket.write(upgradeRequest('/raw'));
    await until(() => got.text.includes('\r\n\r\n'));
    origin.sockets.at(-1)!.end();
    await until(() => got.closed);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('a WebSocket client (undici\'s) talks to the origin through Outpost, over HTTP/1.1 and over HTTP/2 (RFC 8441): subprotocol, messages both ways, a clean close, one access report', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  const ends: ResponseEndEvent[] = [];
  const onEnd = (event: unknown) => ends.push(event as ResponseEndEvent);
  responseEndChannel.subscribe(onEnd);
  try {
    // undici offers h2 by ALPN and opens its WebSocket on a stream where the server allows it.
    for (const [allowH2, version, status] of [[false, '1.1', 101], [true, '2', 200]] as const) {
      ends.length = 0;
      const dispatcher = new Agent({ allowH2, connect: { ca: await testCa(), servername: 'localhost' } });
      try {
        await chatThrough(outpost.httpsPort, dispatcher);
        // Reported when the tunnel closes: the 101 (over HTTP/2 the 200), what the origin sent through it.
        await until(() => ends.length === 1);
        assert.deepEqual({ version: ends[0].request.httpVersion, status: ends[0].status }, { version, status });
        assert.equal(ends[0].outcome, 'ok');
        assert.equal(ends[0].request.target, '/ws');
        assert.ok(ends[0].bytes >= 2 * 7 + 4, `${ends[0].bytes} bytes`); // two echoed frames and the close frame
      } finally {
        await dispatcher.close();
      }
    }
  } finally {
    responseEndChannel.unsubscribe(onEnd);
    await outpost.close();
    await origin.close();
  }
});

test('an origin that refuses the upgrade: its answer reaches the client, the connection closes, and what the client sent after its request never reaches the origin', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    // A request smuggled behind the refused upgrade, as if the connection had switched.
    socket.write(`${upgradeRequest('/refuse')}GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await until(() => got.closed);
    assert.match(got.text, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(got.text, /\r\n\r\nno, no\.$/);
    assert.match(got.text, /\r\nconnection: close\r\n/i);
    assert.equal(got.text.match(/HTTP\/1\.1 /g)!.length, 1, 'one response only');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(origin.seen.map((s) => s.url), [], 'the origin saw no plain request');
    assert.deepEqual(origin.upgrades.map((u) => u.url), ['/refuse']);
    // A 101 to another protocol than asked for is no answer: 502, and its connection goes.
    const wrong = await rawConnection(outpost.url);
    const bad = reader(wrong);
    wrong.write(upgradeRequest('/wrong'));
    await until(() => bad.closed);
    assert.match(bad.text, /^HTTP\/1\.1 502 /);
    const wrongSide = origin.sockets.at(-1)!;
    await until(() => wrongSide.destroyed || wrongSide.readableEnded);
    // A request the listener refuses (an invalid Host) is answered and closed, as any other.
    const invalid = await rawConnection(outpost.url);
    const badHost = reader(invalid);
    invalid.write(upgradeRequest('/raw').replace('Host: localhost', 'Host: bad host!'));
    await until(() => badHost.closed);
    assert.match(badHost.text, /^HTTP\/1\.1 400 /);
    assert.deepEqual(origin.upgrades.map((u) => u.url), ['/refuse', '/wrong']);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('an upgrade goes past the cache (never answered from it, never stored), the access rules still apply; Upgrade: h2c is a plain request', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({
    guard: { rules: [{ path: '^/private/', action: 'deny' }] },
    sites: [{ hosts: ['*'], origin: origin.url }],
  });
  try {
    assert.equal((await h1(`${outpost.url}/cached`)).body.toString(), 'stored body');
    assert.equal((await h1(`${outpost.url}/cached`)).headers['cache-status']?.toString().includes('hit'), true);
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    socket.write(upgradeRequest('/cached'));
    await until(() => got.text.includes('\r\n\r\n'));
    assert.match(got.text, /^HTTP\/1\.1 101 /);
    assert.match(got.text, /\r\ncache-status: outpost; fwd=bypass; fwd-status=101\r\n/i);
    assert.deepEqual(origin.upgrades.map((u) => u.url), ['/cached']);
    socket.destroy();
    // Denied by the rules: a 403 from Outpost, the origin never asked.
    const denied = await rawConnection(outpost.url);
    const refused = reader(denied);
    denied.write(upgradeRequest('/private/feed'));
    await until(() => refused.closed);
    assert.match(refused.text, /^HTTP\/1\.1 403 /);
    assert.deepEqual(origin.upgrades.map((u) => u.url), ['/cached']);
    // Not a WebSocket: served as the GET it also is, without the hop-by-hop Upgrade.
    const h2c = await rawConnection(outpost.url);
    const plain = reader(h2c);
    h2c.write('GET /other HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    await until(() => plain.text.includes('upgrade=-'));
    assert.match(plain.text, /^HTTP\/1\.1 200 /);
    h2c.destroy();
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('a tunnel with no byte either way for limits.idleTimeout is closed, and its origin connection with it; shutdown closes tunnels at its deadline', async () => {
  const origin = await wsOrigin();
  const timers = manualTimers();
  const outpost = await startOutpost({
    listen: { http: 0, httpMode: 'serve' },
    limits: { idleTimeout: '40s', shutdownTimeout: '200ms' },
    sites: [{ hosts: ['*'], origin: origin.url }],
  }, { timers });
  try {
    for (const url of [outpost.url, `http://127.0.0.1:${outpost.httpPort}`]) {
      const socket = await rawConnection(url);
      const got = reader(socket);
      socket.write(upgradeRequest('/raw'));
      await until(() => got.text.includes('\r\n\r\n'));
      const originSide = origin.sockets.at(-1)!;
      // Bytes keep it open however long it lasts...
      for (let i = 0; i < 8; i++) {
        socket.write(`ping${i}`);
        await until(() => got.text.endsWith(`echo:ping${i}`));
        timers.advance(10_000);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(got.closed, false, `${url}: kept while bytes pass`);
      // ... silence does not.
      for (let i = 0; i < 6 && !got.closed; i++) {
        timers.advance(10_000);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await until(() => got.closed && originSide.destroyed);
    }
    // One left open when the server stops: closed at the shutdown deadline, and close() returns.
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    socket.write(upgradeRequest('/raw'));
    await until(() => got.text.includes('\r\n\r\n'));
    const stopped = Date.now();
    await outpost.close();
    await until(() => got.closed);
    assert.ok(Date.now() - stopped < 5000);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('with least-connections balancing an open tunnel counts as its upstream\'s connection until it closes', async () => {
  const origins = [await wsOrigin(), await wsOrigin()];
  const outpost = await startOutpost({
    sites: [{ hosts: ['*'], origin: { upstreams: origins.map((o) => o.url), balance: 'least-connections' } }],
  });
  const plainCounts = () => origins.map((o) => o.seen.length);
  try {
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    socket.write(upgradeRequest('/raw'));
    await until(() => got.text.includes('\r\n\r\n'));
    const busy = origins.findIndex((o) => o.upgrades.length === 1);
    const other = 1 - busy;
    for (let i = 0; i < 4; i++) await h1(`${outpost.url}/plain-${i}`);
    assert.equal(origins[busy].seen.length, 0, 'every plain request went to the upstream without the tunnel');
    assert.equal(origins[other].seen.length, 4);
    // Closed: both upstreams are free again, and take turns.
    const originSide = origins[busy].sockets[0];
    socket.destroy();
    await until(() => originSide.destroyed || originSide.readableEnded);
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 4; i++) await h1(`${outpost.url}/after-${i}`);
    assert.deepEqual(plainCounts().map((n, i) => n - (i === other ? 4 : 0)), [2, 2]);
  } finally {
    await outpost.close();
    for (const origin of origins) await origin.close();
  }
});

test('an HTTP/2 upstream is asked to switch with RFC 8441\'s extended CONNECT: WebSocket clients over HTTP/1.1 and HTTP/2 talk to it through Outpost; its refusal reaches the client; one that does not offer extended CONNECT is a 502', async () => {
  const origin = await h2WsOrigin();
  const without = await h2WsOrigin({ extendedConnect: false });
  const outpost = await startOutpost({
    sites: [{
      hosts: ['*'],
      origin: { upstreams: [{ url: origin.url, http2: true }] },
      routes: [{ path: '/old/', origin: { upstreams: [{ url: without.url, http2: true }] } }],
    }],
  });
  try {
    // undici's client checks the Sec-WebSocket-Accept over HTTP/1.1: Outpost made it for the client's key.
    for (const allowH2 of [false, true]) {
      const dispatcher = new Agent({ allowH2, connect: { ca: await testCa(), servername: 'localhost' } });
      try {
        await chatThrough(outpost.httpsPort, dispatcher);
      } finally {
        await dispatcher.close();
      }
    }
    // RFC 8441 §4-5: CONNECT with :protocol, and no key (HTTP/2's handshake has none).
    assert.deepEqual(origin.connects.map((h) => ({ method: h[':method'], protocol: h[':protocol'], path: h[':path'], key: h['sec-websocket-key'], version: h['sec-websocket-version'] })),
      [1, 2].map(() => ({ method: 'CONNECT', protocol: 'websocket', path: '/ws', key: undefined, version: '13' })));

    const refused = await rawConnection(outpost.url);
    const answer = reader(refused);
    refused.write(upgradeRequest('/refuse'));
    await until(() => answer.closed);
    assert.match(answer.text, /^HTTP\/1\.1 403 /);
    assert.match(answer.text, /\r\n\r\n7\r\nno, no\.\r\n0\r\n\r\n$/); // the origin's body, sent as it streamed

    const old = await rawConnection(outpost.url);
    const oldAnswer = reader(old);
    old.write(upgradeRequest('/old/ws'));
    await until(() => oldAnswer.closed);
    assert.match(oldAnswer.text, /^HTTP\/1\.1 502 /);
    assert.equal(without.connects.length, 0);
  } finally {
    await outpost.close();
    await origin.close();
    await without.close();
  }
});

test('an upgrade pipelined behind a request whose response is still on its way waits for it: answers in order, then the tunnel', async () => {
  const origin = await wsOrigin();
  const slow = await startOrigin((req, res) => { setTimeout(() => res.end(`slow ${req.url}`), 200); });
  const outpost = await startOutpost({
    sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/slow', origin: slow.url, cache: { enabled: false } }] }],
  });
  try {
    const socket = await rawConnection(outpost.url);
    const got = reader(socket);
    socket.write(`GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n${upgradeRequest('/raw')}HELLO`);
    await until(() => got.text.endsWith('echo:HELLO'));
    assert.match(got.text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nslow \/slowHTTP\/1\.1 101 Switching Protocols\r\n/);
    socket.write('MORE');
    await until(() => got.text.endsWith('echo:MORE'));
    socket.destroy();
  } finally {
    await outpost.close();
    await slow.close();
    await origin.close();
  }
});

test('a tunnel whose client stops reading what the origin sends is closed after limits.sendTimeout, and its origin connection with it', async () => {
  const origin = await wsOrigin();
  const timers = manualTimers();
  const outpost = await startOutpost({
    limits: { sendTimeout: '20s' },
    sites: [{ hosts: ['*'], origin: origin.url }],
  }, { timers });
  try {
    const socket = await rawConnection(outpost.url);
    let received = 0;
    socket.on('error', () => {});
    let holding = true;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (holding) socket.pause(); // one read (the 101), then nothing more until told
    });
    socket.write(upgradeRequest('/flood'));
    await until(() => received > 0);
    const originSide = origin.sockets.at(-1)!;
    // Until every buffer between the origin and the client is full, bytes move.
    let last = -1;
    await until(() => { const written = (originSide as Socket).bytesWritten; const stalled = written === last; last = written; return stalled; }, 10_000, 200);
    for (let i = 0; i < 3; i++) {
      timers.advance(5000); // the watch looks every quarter of sendTimeout
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(originSide.destroyed, false, 'held for less than sendTimeout: still open');
    for (let i = 0; i < 4 && !originSide.destroyed; i++) {
      timers.advance(5000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await until(() => originSide.destroyed);
    assert.equal(openTunnels(), 0);
    // The client's side is closed too (a paused socket sees it once it reads again).
    const closed = once(socket, 'close');
    holding = false;
    socket.resume();
    await closed;
  } finally {
    await outpost.close();
    await origin.close();
  }
});
