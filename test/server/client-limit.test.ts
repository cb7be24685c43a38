import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { clientConnectionLimit } from '../../src/server/client-limit.ts';

/** The per-client table on real TCP listeners (the TLS ones are in protection.test.ts). */

const listen = async (server: Server, host: string) => {
  server.listen(0, host);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
};

/** Connects and reports whether the server kept the connection (it writes "ok") or closed it. */
const tryConnect = (port: number, held: Socket[]) => new Promise<'kept' | 'refused'>((resolve) => {
  const socket = connect(port, '127.0.0.1');
  held.push(socket);
  socket.once('data', () => resolve('kept'));
  socket.once('error', () => resolve('refused'));
  socket.once('close', () => resolve('refused'));
});

test('an IPv4 client seen as ::ffff:127.0.0.1 on one listener and 127.0.0.1 on another is one client', async () => {
  const limit = clientConnectionLimit(1);
  const greet = (socket: Socket) => socket.write('ok');
  const mapped = createServer(greet); // a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
  const plain = createServer(greet);
  limit.attach(mapped);
  limit.attach(plain);
  const held: Socket[] = [];
  try {
    const mappedPort = await listen(mapped, '::ffff:127.0.0.1');
    const plainPort = await listen(plain, '127.0.0.1');
    assert.equal(await tryConnect(mappedPort, held), 'kept');
    assert.equal(limit.openFrom('127.0.0.1'), 1);
    assert.equal(limit.openFrom('::ffff:127.0.0.1'), 1);
    assert.equal(await tryConnect(plainPort, held), 'refused');
    // the first one goes: the address is free on both listeners
    held[0].destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(limit.openFrom('127.0.0.1'), 0);
    assert.equal(await tryConnect(plainPort, held), 'kept');
  } finally {
    for (const socket of held) socket.destroy();
    mapped.close();
    plain.close();
  }
});

test('exempt peers (trusted proxies) are never limited, matched after the IPv4-mapped form is read as IPv4', async () => {
  const limit = clientConnectionLimit(1, ['127.0.0.0/8']);
  const server = createServer((socket) => socket.write('ok'));
  limit.attach(server);
  const held: Socket[] = [];
  try {
    const port = await listen(server, '::ffff:127.0.0.1');
    for (let i = 0; i < 3; i++) assert.equal(await tryConnect(port, held), 'kept');
  } finally {
    for (const socket of held) socket.destroy();
    server.close();
  }
});

test('an IPv6 client is its /64, as for the rate limits: addresses rotated within one /64 share its limit; another /64 has its own', () => {
  const limit = clientConnectionLimit(2, ['2001:db8:0:9::/64']);
  const first = limit.take('2001:db8::1');
  assert.notEqual(first, null);
  assert.notEqual(limit.take('2001:db8::ffff:2'), null);
  assert.equal(limit.take('2001:db8:0:0:abcd::3'), null, 'a third address of the same /64: over the limit of 2');
  assert.equal(limit.openFrom('2001:db8::77'), 2);
  assert.notEqual(limit.take('2001:db8:0:1::1'), null, 'the next /64 is another client');
  assert.notEqual(limit.take('192.0.2.1'), null);
  first!();
  assert.notEqual(limit.take('2001:db8::5'), null, 'a place given back is free for any address of the /64');
  // Exemptions (trusted proxies) still match the whole address against their ranges.
  for (let i = 0; i < 5; i++) assert.notEqual(limit.take(`2001:db8:0:9::${i + 1}`), null);
});
