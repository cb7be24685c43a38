import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect as netConnect, Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { h1, h2, startOrigin, startOutpost, testCa, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { makeCa, makeLeaf, type PemFiles } from '../helpers/pki.ts';
import { manualTimers } from '../helpers/timers.ts';
import { createFrontDoor } from '../../src/server/front-door.ts';
import type { TunnelEvent } from '../../src/server/tunnel.ts';
import { formatPassthroughLine } from '../../src/observability/log.ts';
import { waitFor } from '../helpers/wait.ts';
import { freePort } from '../helpers/ports.ts';

/**
 * TLS passthrough by SNI: a TLS backend with its own certificate behind Outpost's HTTPS listener.
 * Listed names reach the backend untouched (the client sees the backend's certificate); every
 * other name is terminated by Outpost as before.
 */

const TOKEN = 'passthrough-admin-token-0123';
let backendCa: PemFiles;
let backendLeaf: PemFiles;
let backend: HttpsServer;
let backendPort: number;
let origin: TestOrigin;
let outpost: RunningOutpost;
const events: TunnelEvent[] = [];
const onTunnel = (e: unknown) => events.push(e as TunnelEvent);

before(async () => {
  backendCa = await makeCa('Outpost Test Backend CA');
  backendLeaf = await makeLeaf(backendCa, 'legacy.test', { dns: ['legacy.test', '*.mtls.test'] });
  backend = createHttpsServer({ cert: backendLeaf.cert, key: backendLeaf.key }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`backend ${(req.socket as TLSSocket).servername} ${req.url}`);
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  backendPort = (backend.address() as { port: number }).port;
  origin = await startOrigin((req, res) => res.end(`origin ${req.url}`));
  diagnostics.subscribe('outpost:passthrough', onTunnel);
  outpost = await startOutpost({
    admin: { token: TOKEN },
    tls: { passthrough: [{ hosts: ['legacy.test', '*.mtls.test'], to: `127.0.0.1:${backendPort}` }] },
    sites: [{ hosts: ['*'], origin: origin.url, cache: { enabled: false } }],
  });
});

after(async () => {
  diagnostics.unsubscribe('outpost:passthrough', onTunnel);
  await outpost.close();
  await origin.close();
  backend.closeAllConnections();
  backend.close();
});

/** A TLS connection to Outpost with this SNI name; resolves once the handshake is done. */
async function tlsTo(port: number, servername: string, ca: string, alpn = ['http/1.1']): Promise<TLSSocket> {
  const socket = tlsConnect({ port, host: '127.0.0.1', servername, ca, ALPNProtocols: alpn });
  await once(socket, 'secureConnect');
  return socket;
}

async function httpOver(socket: TLSSocket, host: string, path: string): Promise<string> {
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

test('a listed name is passed through: the client sees the backend\'s certificate and talks to the backend', async () => {
  const before = events.length;
  const socket = await tlsTo(outpost.httpsPort, 'legacy.test', backendCa.cert);
  assert.equal(socket.authorized, true);
  assert.equal(socket.getPeerX509Certificate()?.fingerprint256, fingerprint(backendLeaf.cert));
  const response = await httpOver(socket, 'legacy.test', '/hello');
  assert.match(response, /^HTTP\/1\.1 200 /);
  assert.match(response, /backend legacy\.test \/hello/);
  // logged when both ends have closed: host, backend, bytes each way, duration
  const event = await waitFor(() => events.slice(before).find((e) => e.servername === 'legacy.test'));
  assert.equal(event.backend, `127.0.0.1:${backendPort}`);
  assert.equal(event.client, '127.0.0.1');
  assert.ok(event.bytesIn > 200 && event.bytesOut > 500, JSON.stringify(event));
  assert.ok(event.durationMs > 0);
  assert.equal(event.error, null);
  assert.match(formatPassthroughLine(event), new RegExp(`^127\\.0\\.0\\.1 legacy\\.test \\[[^\\]]+\\] "PASSTHROUGH 127\\.0\\.0\\.1:${backendPort}" ${event.bytesIn} ${event.bytesOut} [\\d.]+ms\n$`));
});

test('wildcards match one label; every other name is terminated by Outpost as before, HTTP/2 and HTTP/1.1', async () => {
  const wild = await tlsTo(outpost.httpsPort, 'a.mtls.test', backendCa.cert);
  assert.equal(wild.getPeerX509Certificate()?.fingerprint256, fingerprint(backendLeaf.cert));
  wild.destroy();
  const ours = fingerprint(await testCa());
  const deeper = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', servername: 'a.b.mtls.test', ca: await testCa(), checkServerIdentity: () => undefined });
  await once(deeper, 'secureConnect');
  assert.equal(deeper.getPeerX509Certificate()?.fingerprint256, ours);
  deeper.destroy();
  assert.equal((await h2(`${outpost.url}/x`)).body.toString(), 'origin /x');
  assert.equal((await h1(`${outpost.url}/y`)).body.toString(), 'origin /y');
  // a client that sends no name at all is terminated too
  const anonymous = tlsConnect({ port: outpost.httpsPort, host: '127.0.0.1', ca: await testCa(), checkServerIdentity: () => undefined });
  await once(anonymous, 'secureConnect');
  assert.equal(anonymous.getPeerX509Certificate()?.fingerprint256, ours);
  anonymous.destroy();
});

test('a malformed ClientHello is closed without an answer, and counted', async () => {
  const socket = netConnect(outpost.httpsPort, '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET / HTTP/1.1\r\nHost: legacy.test\r\n\r\n');
  const data: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => data.push(chunk));
  await closed(socket);
  assert.equal(Buffer.concat(data).length, 0);
  const stats = await (await fetch(`${outpost.adminUrl}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as any;
  assert.ok(stats.listener.https.closed.malformed >= 1);
  assert.ok(stats.listener.https.passthrough.connections >= 1);
});

test('a backend that refuses: the client\'s connection is closed, the failure logged', async () => {
  const deadPort = await freePort();
  const broken = await startOutpost({ tls: { passthrough: [{ hosts: ['gone.test'], to: `127.0.0.1:${deadPort}` }] } });
  try {
    const before = events.length;
    const socket = tlsConnect({ port: broken.httpsPort, host: '127.0.0.1', servername: 'gone.test', rejectUnauthorized: false });
    const [err] = await once(socket, 'error').catch((e) => [e]);
    assert.ok(err);
    const event = await waitFor(() => events.slice(before).find((e) => e.servername === 'gone.test'));
    assert.equal(event.error, 'ECONNREFUSED');
    assert.equal(event.bytesOut, 0);
  } finally {
    await broken.close();
  }
});

test('the connection limit covers passed-through connections', async () => {
  const limited = await startOutpost({
    limits: { maxConnections: 1 },
    tls: { passthrough: [{ hosts: ['legacy.test'], to: `127.0.0.1:${backendPort}` }] },
  });
  try {
    const first = await tlsTo(limited.httpsPort, 'legacy.test', backendCa.cert);
    const second = netConnect(limited.httpsPort, '127.0.0.1');
    second.on('error', () => {});
    await once(second, 'close');
    assert.equal(second.bytesRead, 0);
    first.destroy();
  } finally {
    await limited.close();
  }
});

// --- the front door alone, with its clock moved by hand ---------------------------------------------

async function doorFixture(options: { connectTimeout?: number; idleTimeout?: number; connect?: () => Socket } = {}) {
  const timers = manualTimers();
  // A TLS server standing in for Outpost's: terminated connections are handed to it.
  const tlsServer = createTlsServer({ cert: backendLeaf.cert, key: backendLeaf.key }, (s) => s.end('terminated\n'));
  const ended: TunnelEvent[] = [];
  const door = createFrontDoor({
    target: tlsServer,
    tls: true,
    trusted: null,
    passthrough: [{ hosts: ['legacy.test'], host: '127.0.0.1', port: backendPort, proxyProtocol: 0,
      connectTimeout: options.connectTimeout ?? 5000, idleTimeout: options.idleTimeout ?? 60_000 }],
    prefaceTimeout: 1000,
    maxConnections: 100,
    timers,
    onTunnel: (e) => ended.push(e),
    connect: options.connect,
  });
  await new Promise<void>((resolve) => door.server.listen(0, '127.0.0.1', resolve));
  const port = (door.server.address() as { port: number }).port;
  return { timers, door, port, ended, close: () => new Promise<void>((resolve) => { door.destroyAll(); door.server.close(() => resolve()); }) };
}

test('a slow ClientHello is closed at the deadline (injected clock)', async () => {
  const { timers, door, port, close } = await doorFixture();
  try {
    const socket = netConnect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(Buffer.from([22, 3, 1, 0, 200, 1])); // the start of a record, then nothing
    await waitFor(() => (timers.pending > 0 ? true : undefined)); // accepted: its deadline is set
    timers.advance(999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(socket.destroyed, false);
    timers.advance(1);
    await closed(socket);
    assert.equal(door.stats().closed.slow, 1);
  } finally {
    await close();
  }
});

test('an idle passed-through connection is closed after idleTimeout; a backend that does not answer after connectTimeout', async () => {
  const idle = await doorFixture({ idleTimeout: 5000 });
  try {
    const socket = await tlsTo(idle.port, 'legacy.test', backendCa.cert);
    socket.on('error', () => {});
    idle.timers.advance(4999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(socket.destroyed, false);
    idle.timers.advance(1);
    await closed(socket);
    const event = await waitFor(() => idle.ended[0]);
    assert.equal(event.error, 'idle');
  } finally {
    await idle.close();
  }
  // A backend whose TCP connection never completes (on loopback one always does: a socket that
  // never connects stands in for an address that drops SYNs).
  const slow = await doorFixture({ connectTimeout: 3000, connect: () => new Socket() });
  try {
    const socket = tlsConnect({ port: slow.port, host: '127.0.0.1', servername: 'legacy.test', rejectUnauthorized: false });
    socket.on('error', () => {});
    await waitFor(() => (slow.door.stats().passthrough.active === 1 ? true : undefined));
    slow.timers.advance(2999);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(socket.destroyed, false);
    slow.timers.advance(1);
    await closed(socket);
    const event = await waitFor(() => slow.ended[0]);
    assert.equal(event.error, 'connect timed out');
    assert.equal(slow.door.stats().passthrough.failed, 1);
  } finally {
    await slow.close();
  }
});

/** Resolves when the socket has closed, whether or not it errored first (events.once rejects on 'error'). */
const closed = (socket: Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));
