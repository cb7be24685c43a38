import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, connect as netConnect, type Server as NetServer, type Socket } from 'node:net';
import { connect as http2Connect } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { startOrigin, startOutpost, testCa, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { makeCa, makeLeaf } from '../helpers/pki.ts';
import { encodeProxyHeader, readProxyHeader, V2_MAX } from '../../src/server/proxy-protocol.ts';
import type { ResponseEndEvent } from '../../src/observability/channels.ts';
import type { TunnelEvent } from '../../src/server/tunnel.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * PROXY protocol v1 and v2: read from trusted balancers (required from them, refused from anyone
 * else), so logs and X-Forwarded-For name the real client; written to passthrough backends.
 */

// --- the header, pure --------------------------------------------------------------------------------

const v2 = (versionCommand: number, family: number, body: Buffer) => {
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, versionCommand, family, 0, 0]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
};

test('v1: TCP4, TCP6 and UNKNOWN lines; every prefix asks for more; what is not one is invalid', () => {
  const line = Buffer.from('PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\nGET /');
  assert.deepEqual(readProxyHeader(line), { kind: 'header', length: 44, addresses: { source: { address: '203.0.113.7', port: 51234 }, destination: { address: '192.0.2.1', port: 443 } } });
  for (let n = 0; n < 44; n++) assert.equal(readProxyHeader(line.subarray(0, n)).kind, 'more', `${n} bytes`);
  const tcp6 = Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n');
  assert.deepEqual(readProxyHeader(tcp6),
    { kind: 'header', length: tcp6.length, addresses: { source: { address: '2001:db8::7', port: 1 }, destination: { address: '2001:db8::1', port: 65535 } } });
  const unknown = Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n');
  assert.deepEqual(readProxyHeader(unknown), { kind: 'header', length: unknown.length, addresses: null });
  const reason = (text: string | Buffer) => (readProxyHeader(Buffer.from(text)) as { reason?: string }).reason;
  assert.equal(reason('PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n'), 'PROXY v1 line malformed');
  assert.equal(reason('PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n'), 'PROXY v1 address not TCP4');
  assert.equal(reason('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n'), 'PROXY v1 port out of range');
  assert.equal(reason('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'), 'PROXY v1 port out of range');
  assert.equal(reason('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), 'PROXY v1 protocol "UDP4"');
  assert.equal(reason(`PROXY TCP4 ${'1'.repeat(120)}`), 'PROXY v1 line over 107 bytes');
  assert.equal(reason('\x16\x03\x01\x02\x00\x01'), 'no PROXY protocol header');
  assert.equal(reason('GET / HTTP/1.1\r\n'), 'no PROXY protocol header');
});

test('v2: PROXY over TCP4 and TCP6 (TLVs skipped), LOCAL, other families; bounds', () => {
  const tcp4 = Buffer.concat([Buffer.from([203, 0, 113, 7, 192, 0, 2, 1, 0xc8, 0x22, 0x01, 0xbb]), Buffer.from([0x04, 0x00, 0x02, 0xaa, 0xbb])]);
  const header = v2(0x21, 0x11, tcp4);
  assert.deepEqual(readProxyHeader(Buffer.concat([header, Buffer.from('rest')])),
    { kind: 'header', length: header.length, addresses: { source: { address: '203.0.113.7', port: 51234 }, destination: { address: '192.0.2.1', port: 443 } } });
  for (let n = 0; n < header.length; n++) assert.equal(readProxyHeader(header.subarray(0, n)).kind, 'more', `${n} bytes`);
  const tcp6 = Buffer.alloc(36);
  tcp6.write('20010db8000000000000000000000007', 0, 'hex');
  tcp6.write('00000000000000000000ffffc0000201', 16, 'hex');
  tcp6.writeUInt16BE(1234, 32);
  tcp6.writeUInt16BE(8443, 34);
  assert.deepEqual(readProxyHeader(v2(0x21, 0x21, tcp6)),
    { kind: 'header', length: 52, addresses: { source: { address: '2001:db8::7', port: 1234 }, destination: { address: '192.0.2.1', port: 8443 } } });
  assert.deepEqual(readProxyHeader(v2(0x20, 0x00, Buffer.alloc(0))), { kind: 'header', length: 16, addresses: null }); // LOCAL
  assert.deepEqual(readProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), { kind: 'header', length: 232, addresses: null }); // UNIX
  const reason = (data: Buffer) => (readProxyHeader(data) as { reason?: string }).reason;
  assert.equal(reason(v2(0x11, 0x11, tcp4)), 'PROXY v2 version not 2');
  assert.equal(reason(v2(0x22, 0x11, tcp4)), 'PROXY v2 command neither LOCAL nor PROXY');
  assert.equal(reason(v2(0x21, 0x21, tcp4)), 'PROXY v2 addresses truncated');
  assert.equal(reason(v2(0x21, 0x11, Buffer.alloc(V2_MAX))), `PROXY v2 header over ${V2_MAX} bytes`);
});

test('written headers read back the same, IPv4-mapped addresses as IPv4, mixed families as TCP6', () => {
  const cases = [
    { source: { address: '203.0.113.7', port: 51234 }, destination: { address: '192.0.2.1', port: 443 } },
    { source: { address: '2001:db8::7', port: 1 }, destination: { address: '::1', port: 8443 } },
  ];
  for (const addresses of cases) {
    for (const version of [1, 2] as const) {
      const header = encodeProxyHeader(version, addresses);
      assert.deepEqual(readProxyHeader(header), { kind: 'header', length: header.length, addresses }, `v${version}`);
    }
  }
  assert.equal(encodeProxyHeader(1, { source: { address: '::ffff:203.0.113.7', port: 5 }, destination: { address: '127.0.0.1', port: 6 } }).toString(),
    'PROXY TCP4 203.0.113.7 127.0.0.1 5 6\r\n');
  assert.equal(encodeProxyHeader(1, { source: { address: '203.0.113.7', port: 5 }, destination: { address: '::1', port: 6 } }).toString(),
    'PROXY TCP6 ::ffff:203.0.113.7 ::1 5 6\r\n');
});

// --- through Outpost -----------------------------------------------------------------------------------

let origin: TestOrigin;
let outpost: RunningOutpost;
const logged: string[] = [];
const onResponse = (e: unknown) => logged.push((e as ResponseEndEvent).request.remoteAddress);

before(async () => {
  origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ xff: req.headers['x-forwarded-for'], forwarded: req.headers.forwarded }));
  });
  diagnostics.subscribe('outpost:response-end', onResponse);
  outpost = await startOutpost({
    listen: { proxyProtocol: true, http: 0, httpMode: 'serve' },
    trustedProxies: ['127.0.0.1'],
    sites: [{ hosts: ['*'], origin: origin.url, cache: { enabled: false } }],
  });
});

after(async () => {
  diagnostics.unsubscribe('outpost:response-end', onResponse);
  await outpost.close();
  await origin.close();
});

/** A TCP connection that sends `header` first, as a balancer does, then whatever the test speaks over it. */
async function viaBalancer(port: number, header: Buffer): Promise<Socket> {
  const socket = netConnect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(header);
  return socket;
}

const ask = async (tls: TLSSocket | Socket, path: string) => {
  // HTTP/1.0: the body is not chunked and ends with the connection.
  tls.write(`GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of tls) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString();
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
};

test('v1 from a trusted balancer: the origin and the access log see the real client (HTTPS, HTTP/1.1)', async () => {
  const raw = await viaBalancer(outpost.httpsPort, Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 51234 443\r\n'));
  const tls = tlsConnect({ socket: raw, servername: 'localhost', ca: await testCa(), ALPNProtocols: ['http/1.1'] });
  await once(tls, 'secureConnect');
  const seen = await ask(tls, '/v1');
  assert.equal(seen.xff, '203.0.113.7');
  assert.equal(seen.forwarded, 'for=203.0.113.7;host="localhost";proto=https');
  assert.equal(logged.at(-1), '203.0.113.7');
});

test('v2 from a trusted balancer over HTTP/2: an IPv6 client', async () => {
  const tcp6 = encodeProxyHeader(2, { source: { address: '2001:db8::7', port: 4000 }, destination: { address: '::1', port: 443 } });
  const raw = await viaBalancer(outpost.httpsPort, tcp6);
  const session = http2Connect(outpost.url, { createConnection: () => tlsConnect({ socket: raw, servername: 'localhost', ca: outpost.ca, ALPNProtocols: ['h2'] }) });
  const stream = session.request({ ':path': '/v2' });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  session.close();
  const seen = JSON.parse(Buffer.concat(chunks).toString());
  assert.equal(seen.xff, '2001:db8::7');
  assert.equal(seen.forwarded, `for="[2001:db8::7]";host="127.0.0.1:${outpost.httpsPort}";proto=https`);
});

test('the plain-HTTP listener reads it too, whether the request comes with the header or after it', async () => {
  const together = await viaBalancer(outpost.httpPort!, Buffer.from('PROXY TCP4 198.51.100.9 127.0.0.1 1 80\r\n'));
  assert.equal((await ask(together, '/plain')).xff, '198.51.100.9');
  const apart = await viaBalancer(outpost.httpPort!, Buffer.from('PROXY TCP4 198.51.100.10 127.0.0.1 1 80\r\n'));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal((await ask(apart, '/plain')).xff, '198.51.100.10');
});

test('a LOCAL header (the balancer\'s own health check) keeps the connection\'s address', async () => {
  const raw = await viaBalancer(outpost.httpPort!, v2(0x20, 0x00, Buffer.alloc(0)));
  assert.equal((await ask(raw, '/local')).xff, '127.0.0.1');
});

test('a trusted balancer\'s connection without a header, or with a malformed one, is closed', async () => {
  for (const start of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'PROXY TCP4 nope\r\n']) {
    const raw = await viaBalancer(outpost.httpPort!, Buffer.from(start));
    raw.on('error', () => {});
    const data: Buffer[] = [];
    raw.on('data', (c: Buffer) => data.push(c));
    await new Promise((resolve) => raw.once('close', resolve));
    assert.equal(Buffer.concat(data).length, 0, start);
  }
  const stats = outpost.listenerStats();
  assert.ok(stats.http!.closed.noProxyHeader >= 1 && stats.http!.closed.malformed >= 1, JSON.stringify(stats));
  assert.ok(stats.https!.proxyProtocol >= 2);
});

test('from anyone else a header is not accepted: the client is who it is', async () => {
  // only ::1 is trusted here; the test connects from 127.0.0.1
  const strict = await startOutpost({ listen: { proxyProtocol: true, http: 0, httpMode: 'serve' }, trustedProxies: ['::1'], sites: [{ hosts: ['*'], origin: origin.url, cache: { enabled: false } }] });
  try {
    const direct = netConnect(strict.httpPort!, '127.0.0.1');
    await once(direct, 'connect');
    assert.equal((await ask(direct, '/direct')).xff, '127.0.0.1');
    const spoof = await viaBalancer(strict.httpPort!, Buffer.from('PROXY TCP4 6.6.6.6 127.0.0.1 1 80\r\nGET /spoof HTTP/1.1\r\nHost: x\r\n\r\n'));
    const answer: Buffer[] = [];
    for await (const chunk of spoof) answer.push(chunk as Buffer);
    assert.match(Buffer.concat(answer).toString(), /^HTTP\/1\.1 400 /);
  } finally {
    await strict.close();
  }
});

test('passthrough backends get the real client in a PROXY header of the configured version', async () => {
  const ca = await makeCa('Outpost Test PP Backend CA');
  const leaf = await makeLeaf(ca, 'pp.test', { dns: ['pp.test'] });
  const tlsBackend: HttpsServer = createHttpsServer({ cert: leaf.cert, key: leaf.key }, (_req, res) => res.end('backend'));
  const headers: string[] = [];
  // The backend reads the PROXY header itself, then hands the rest to its TLS server.
  const front: NetServer = createNetServer((socket) => {
    socket.once('readable', () => {
      const data: Buffer = socket.read();
      const header = readProxyHeader(data);
      assert.equal(header.kind, 'header');
      const { length, addresses } = header as { length: number; addresses: { source: { address: string } } };
      headers.push(`${data[0] === 0x50 ? 'v1' : 'v2'} ${addresses.source.address}`);
      socket.unshift(data.subarray(length));
      tlsBackend.emit('connection', socket);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  const port = (front.address() as { port: number }).port;
  const events: TunnelEvent[] = [];
  const onTunnel = (e: unknown) => events.push(e as TunnelEvent);
  diagnostics.subscribe('outpost:passthrough', onTunnel);
  const pp = await startOutpost({
    listen: { proxyProtocol: true },
    trustedProxies: ['127.0.0.1'],
    tls: { passthrough: [{ hosts: ['pp.test'], to: `127.0.0.1:${port}`, proxyProtocol: 1 }, { hosts: ['pp2.test'], to: `127.0.0.1:${port}`, proxyProtocol: 2 }] },
  });
  try {
    for (const [name, client] of [['pp.test', '203.0.113.7'], ['pp2.test', '2001:db8::9']]) {
      const raw = await viaBalancer(pp.httpsPort, encodeProxyHeader(1, { source: { address: client, port: 999 }, destination: { address: client.includes(':') ? '::1' : '127.0.0.1', port: 443 } }));
      const tls = tlsConnect({ socket: raw, servername: name, ca: ca.cert, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
      await once(tls, 'secureConnect');
      tls.write('GET / HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n');
      for await (const _ of tls) { /* read to the end */ }
    }
    assert.deepEqual(headers, ['v1 203.0.113.7', 'v2 2001:db8::9']);
    const ended = await waitFor(() => (events.length >= 2 ? events : undefined));
    assert.deepEqual(ended.map((e) => e.client).sort(), ['2001:db8::9', '203.0.113.7']);
  } finally {
    diagnostics.unsubscribe('outpost:passthrough', onTunnel);
    await pp.close();
    front.close();
    tlsBackend.close();
  }
});

test('outpost check: proxyProtocol needs trusted proxies', async () => {
  const { validateConfig } = await import('../../src/config/load.ts');
  assert.throws(() => validateConfig({ listen: { proxyProtocol: true } }), /listen\.proxyProtocol: needs trustedProxies/);
});
