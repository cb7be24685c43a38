import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ClientHttp2Session, ClientHttp2Stream } from 'node:http2';
import { h2request, h2session, startOutpost } from '../helpers/outpost.ts';
import { h2WsOrigin, wsOrigin } from '../helpers/ws-origin.ts';
import { manualTimers } from '../helpers/timers.ts';
import { until } from '../helpers/wait.ts';
import { responseEndChannel, type ResponseEndEvent } from '../../src/observability/channels.ts';
import { openTunnels } from '../../src/server/upgrade.ts';

/**
 * WebSockets over HTTP/2 (RFC 8441, server/upgrade.ts tunnelResponder): Outpost advertises
 * SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT goes through the chain as the handshake's
 * GET, the origin is asked over HTTP/1.1, and its 101 becomes the stream's 200.
 */

/** A session whose peer's SETTINGS have come (the extended CONNECT needs them first). */
async function settledSession(url: string): Promise<ClientHttp2Session> {
  const session = await h2session(url);
  if (session.remoteSettings.enableConnectProtocol !== true) {
    await Promise.race([once(session, 'remoteSettings'), new Promise((resolve) => setTimeout(resolve, 2000))]);
  }
  return session;
}

function openWebSocket(session: ClientHttp2Session, path: string, extra: Record<string, string> = {}): ClientHttp2Stream {
  return session.request({
    ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'https', ':path': path, ':authority': 'localhost',
    'sec-websocket-version': '13', ...extra,
  }, { endStream: false });
}

/** A masked client frame (RFC 6455 §5.3): text (1) or close (8), payload under 126 bytes. */
function clientFrame(opcode: number, payload: string): Buffer {
  const data = Buffer.from(payload);
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | data.length]), mask, Buffer.from(data.map((b, i) => b ^ mask[i % 4]))]);
}

/** What `stream` receives, as one growing buffer; `closed` once it has closed. */
function received(stream: ClientHttp2Stream) {
  const state = { bytes: Buffer.alloc(0), closed: false, rstCode: -1 };
  stream.on('data', (chunk: Buffer) => { state.bytes = Buffer.concat([state.bytes, chunk]); });
  stream.on('error', () => {});
  stream.on('close', () => { state.closed = true; state.rstCode = stream.rstCode ?? -1; });
  return state;
}

const serverFrame = (opcode: number, payload: string) => Buffer.concat([Buffer.from([0x80 | opcode, Buffer.byteLength(payload)]), Buffer.from(payload)]);

test('HTTP/2: a WebSocket on a stream (extended CONNECT): the origin\'s 101 as a 200, frames both ways beside other requests, a clean close, one access report', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  const reports: ResponseEndEvent[] = [];
  const onEnd = (event: unknown) => reports.push(event as ResponseEndEvent);
  responseEndChannel.subscribe(onEnd);
  const session = await settledSession(outpost.url);
  try {
    assert.equal(session.remoteSettings.enableConnectProtocol, true, 'RFC 8441 §3: the setting is advertised');
    const stream = openWebSocket(session, '/ws?room=1', { 'sec-websocket-protocol': 'chat, superchat', origin: 'https://localhost' });
    const got = received(stream);
    const [headers] = await once(stream, 'response') as [Record<string, string>];
    assert.equal(headers[':status'], 200);
    assert.equal(headers['sec-websocket-protocol'], 'chat');
    assert.equal(headers['sec-websocket-accept'], undefined, 'RFC 8441 §5: no Accept over HTTP/2');
    assert.equal(headers.upgrade, undefined);
    assert.equal(headers.via, '1.1 outpost');
    assert.equal(openTunnels(), 1);
    // The origin was asked over HTTP/1.1 with a key of Outpost's, and the client's fields.
    const asked = origin.upgrades.at(-1)!;
    assert.equal(asked.url, '/ws?room=1');
    assert.equal(asked.headers.upgrade, 'websocket');
    assert.equal(asked.headers['sec-websocket-version'], '13');
    assert.match(String(asked.headers['sec-websocket-key']), /^[A-Za-z0-9+/]{22}==$/);
    assert.equal(asked.headers.origin, 'https://localhost');
    stream.write(clientFrame(1, 'hello over h2'));
    await until(() => got.bytes.equals(serverFrame(1, 'hello over h2')));
    // Another request on the same connection while the tunnel is open.
    const plain = await h2request(session, '/plain');
    assert.equal(plain.status, 200);
    assert.equal(plain.body.toString(), 'plain /plain upgrade=-');
    stream.write(clientFrame(1, 'again'));
    await until(() => got.bytes.length === serverFrame(1, 'hello over h2').length + serverFrame(1, 'again').length);
    // The client's close frame: the origin answers it and ends; the stream ends, then closes.
    stream.write(clientFrame(8, ''));
    await until(() => got.closed);
    assert.equal(got.rstCode, 0, 'closed without an error');
    assert.ok(origin.sockets.at(-1)!.destroyed);
    await until(() => openTunnels() === 0);
    const report = reports.find((r) => r.request.target === '/ws?room=1');
    assert.equal(report?.status, 200);
    assert.equal(report?.request.httpVersion, '2');
    assert.equal(report?.outcome, 'ok');
  } finally {
    responseEndChannel.unsubscribe(onEnd);
    session.close();
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: an extended CONNECT the origin refuses gets its answer and the stream closes; a wrong Accept is a 502, a page or file instead of a tunnel a 501; other CONNECTs are refused with 405', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/files/', static: 'public' }] }] });
  const session = await settledSession(outpost.url);
  try {
    // A 2xx would tell the client its WebSocket is open: a page or a file in its place is a 501.
    for (const [path, status, body] of [['/refuse', 403, 'no, no.'], ['/badaccept', 502, /did not answer the key/], ['/wrong', 502, /switched to "h2c"/], ['/files/index.html', 501, /no WebSocket/]] as const) {
      const stream = openWebSocket(session, path);
      const got = received(stream);
      const [headers] = await once(stream, 'response') as [Record<string, string>];
      assert.equal(headers[':status'], status, path);
      await until(() => got.closed);
      if (typeof body === 'string') assert.equal(got.bytes.toString(), body);
      else assert.match(got.bytes.toString(), body);
    }
    assert.equal(openTunnels(), 0);
    // Another protocol, and RFC 9113 §8.5's CONNECT (no :path): this is no forward proxy.
    const other = session.request({ ':method': 'CONNECT', ':protocol': 'something-else', ':scheme': 'https', ':path': '/ws', ':authority': 'localhost' }, { endStream: false });
    other.on('error', () => {});
    const [otherHeaders] = await once(other, 'response') as [Record<string, string>];
    assert.equal(otherHeaders[':status'], 405);
    other.close();
    const tunnel = session.request({ ':method': 'CONNECT', ':authority': 'localhost:443' }, { endStream: false });
    tunnel.on('error', () => {});
    const [tunnelHeaders] = await once(tunnel, 'response') as [Record<string, string>];
    assert.equal(tunnelHeaders[':status'], 405);
    tunnel.close();
    assert.deepEqual(origin.upgrades.map((u) => u.url), ['/refuse', '/badaccept', '/wrong'], 'the others never reached the origin');
    // The session is still good.
    assert.equal((await h2request(session, '/plain')).status, 200);
  } finally {
    session.close();
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: a tunnel with no byte either way for limits.idleTimeout is closed with its origin connection; shutdown closes tunnels at its deadline', async () => {
  const origin = await wsOrigin();
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { idleTimeout: '40s', shutdownTimeout: '200ms' }, sites: [{ hosts: ['*'], origin: origin.url }] }, { timers });
  const session = await settledSession(outpost.url);
  try {
    const stream = openWebSocket(session, '/raw');
    const got = received(stream);
    await once(stream, 'response');
    const originSide = origin.sockets.at(-1)!;
    // Bytes keep it open however long it lasts (and the connection's own idle watch, which sees
    // the same bytes, leaves it too) ...
    for (let i = 0; i < 8; i++) {
      stream.write(`ping${i}`);
      await until(() => got.bytes.toString().endsWith(`echo:ping${i}`));
      timers.advance(10_000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(got.closed, false, 'kept while bytes pass');
    // ... silence does not.
    for (let i = 0; i < 6 && !got.closed; i++) {
      timers.advance(10_000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await until(() => got.closed && originSide.destroyed);
    session.close();
    // One left open when the server stops: closed at the shutdown deadline, and close() returns.
    const second = await settledSession(outpost.url);
    const open = openWebSocket(second, '/raw');
    const left = received(open);
    await once(open, 'response');
    const stopped = Date.now();
    await outpost.close();
    await until(() => left.closed);
    assert.ok(Date.now() - stopped < 5000);
    second.close();
  } finally {
    session.close();
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2 on both sides (an HTTP/2 upstream takes the extended CONNECT too): the tunnel is kept while frames pass, and after limits.idleTimeout of silence closed with the upstream\'s stream', async () => {
  const origin = await h2WsOrigin();
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { idleTimeout: '40s' }, sites: [{ hosts: ['*'], origin: { upstreams: [{ url: origin.url, http2: true }] } }] }, { timers });
  const session = await settledSession(outpost.url);
  try {
    const stream = openWebSocket(session, '/ws');
    const got = received(stream);
    const [headers] = await once(stream, 'response') as [Record<string, unknown>];
    assert.equal(headers[':status'], 200);
    assert.equal(headers['sec-websocket-accept'], undefined, 'RFC 8441 §5: no Accept over HTTP/2');
    for (let i = 0; i < 8; i++) {
      stream.write(clientFrame(1, `ping${i}`));
      await until(() => got.bytes.toString().endsWith(`ping${i}`));
      timers.advance(10_000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(got.closed, false, 'kept while bytes pass');
    assert.deepEqual(got.bytes.subarray(0, 7), serverFrame(1, 'ping0'));
    for (let i = 0; i < 6 && !got.closed; i++) {
      timers.advance(10_000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await until(() => got.closed && origin.openStreams() === 0);
  } finally {
    session.close();
    await outpost.close();
    await origin.close();
  }
});

test('HTTP/2: each WebSocket on a stream counts as one of its client\'s connections (limits.connectionsPerClient): past the limit a 429, and a closed one gives its place back', async () => {
  const origin = await wsOrigin();
  const outpost = await startOutpost({ limits: { connectionsPerClient: 3 }, sites: [{ hosts: ['*'], origin: origin.url }] });
  const session = await settledSession(outpost.url);
  try {
    // The connection itself is one; two tunnels make three.
    const tunnels: ClientHttp2Stream[] = [];
    for (let i = 0; i < 2; i++) {
      const stream = openWebSocket(session, '/raw');
      received(stream);
      const [headers] = await once(stream, 'response') as [Record<string, string>];
      assert.equal(headers[':status'], 200);
      tunnels.push(stream);
    }
    const over = openWebSocket(session, '/raw');
    const refused = received(over);
    const [overHeaders] = await once(over, 'response') as [Record<string, string>];
    assert.equal(overHeaders[':status'], 429);
    await until(() => refused.closed);
    assert.equal(origin.upgrades.length, 2, 'the refused one never reached the origin');
    // Plain requests on the same connection are not counted.
    assert.equal((await h2request(session, '/plain')).status, 200);
    // One closes: its place is free again.
    tunnels[0].close();
    await until(() => openTunnels() === 1);
    const again = openWebSocket(session, '/raw');
    received(again);
    const [againHeaders] = await once(again, 'response') as [Record<string, string>];
    assert.equal(againHeaders[':status'], 200);
  } finally {
    session.close();
    await outpost.close();
    await origin.close();
  }
});
