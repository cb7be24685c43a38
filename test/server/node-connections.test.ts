import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { clientConnectionLimit } from '../../src/server/client-limit.ts';
import { createNodeConnections, nodeAdmission } from '../../src/server/node-connections.ts';
import { createWorkerChannel, type Peer } from '../../src/runtime/primary-channel.ts';
import { linkedWorkers } from '../helpers/linked-workers.ts';
import { makeCa, makeLeaf } from '../helpers/pki.ts';
import { waitFor } from '../helpers/wait.ts';

/** Connections per client for the node: the primary's count, and workers asking it over a channel. */

test('node connections (the primary\'s side): one count per client whichever worker asks; a release frees only its own ticket; a worker that exits frees its places', () => {
  const counts = createNodeConnections();
  const a = {} as Peer;
  const b = {} as Peer;
  const admit = (from: Peer, ticket: number, address = '198.51.100.1', max = 2) => counts.handle(from, 'admit', [ticket, address, max], undefined as never);
  const release = (from: Peer, ticket: number) => counts.handle(from, 'release', [ticket], undefined as never);
  assert.equal(admit(a, 1), true);
  assert.equal(admit(b, 1), true, 'tickets are per worker');
  assert.equal(admit(a, 2), false, 'the third from either worker is over the limit of 2');
  assert.equal(counts.openFrom('198.51.100.1'), 2);
  release(a, 2); // refused: nothing was held
  release(b, 7); // never asked
  assert.equal(counts.openFrom('198.51.100.1'), 2);
  assert.equal(admit(a, 3, '198.51.100.2'), true, 'another client counts apart');
  release(b, 1);
  assert.equal(counts.openFrom('198.51.100.1'), 1);
  release(b, 1); // twice: once freed
  assert.equal(counts.openFrom('198.51.100.1'), 1);
  assert.equal(admit(b, 2), true);
  counts.detach!(a); // worker a exits: its connections are gone
  assert.equal(counts.openFrom('198.51.100.1'), 1);
  assert.equal(counts.openFrom('198.51.100.2'), 0);
  assert.throws(() => admit(a, 1.5), /malformed/);
  assert.throws(() => counts.handle(a, 'admit', [1, 42, 2], undefined as never), /malformed/);
  assert.throws(() => counts.handle(a, 'count', [], undefined as never), /unknown operation/);
});

const listen = async (server: Server) => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
};

test('two workers\' TLS listeners hold a client to one limit for the node; a connection that waited for the primary completes its handshake; a closed one frees its place in the node', async () => {
  const ca = await makeCa('node-connections CA');
  const leaf = await makeLeaf(ca, 'localhost', { ips: ['127.0.0.1'] });
  const services = { connections: createNodeConnections() };
  const { workers } = linkedWorkers(2, services);
  const servers = workers.map(({ channel }) => {
    const server = createTlsServer({ cert: leaf.cert, key: leaf.key }, (socket) => socket.write('ok'));
    clientConnectionLimit(2, [], nodeAdmission({ channel })).attach(server);
    return server;
  });
  const held: Socket[] = [];
  /** 'kept' once the server's TLS greeting arrives, else 'refused'. */
  const tryTls = (port: number) => new Promise<'kept' | 'refused'>((resolve) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', ca: ca.cert });
    held.push(socket);
    socket.once('data', () => resolve('kept'));
    socket.once('error', () => resolve('refused'));
    socket.once('close', () => resolve('refused'));
  });
  try {
    const [first, second] = await Promise.all(servers.map(listen));
    assert.equal(await tryTls(first!), 'kept');
    assert.equal(await tryTls(second!), 'kept');
    assert.equal(services.connections.openFrom('127.0.0.1'), 2);
    // Each worker has one of this client's connections, under its own limit of 2: the node says no.
    assert.equal(await tryTls(first!), 'refused');
    assert.equal(await tryTls(second!), 'refused');
    held[0]!.destroy();
    await waitFor(() => services.connections.openFrom('127.0.0.1') === 1 || undefined);
    assert.equal(await tryTls(second!), 'kept', 'the place freed on one worker is taken on the other');
  } finally {
    for (const socket of held) socket.destroy();
    for (const server of servers) server.close();
    for (const worker of workers) worker.channel.close();
  }
});

test('a plain HTTP/1.1 listener reads the request that arrived while the node was asked', async () => {
  const services = { connections: createNodeConnections() };
  const { workers } = linkedWorkers(1, services);
  const server = createHttpServer((req, res) => res.end(`got ${req.url}`));
  clientConnectionLimit(4, [], nodeAdmission({ channel: workers[0]!.channel })).attach(server);
  try {
    const port = await listen(server);
    const body = await new Promise<string>((resolve, reject) => {
      httpRequest({ port, host: '127.0.0.1', path: '/first-bytes', agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk) => { text += chunk; }).on('end', () => resolve(text));
      }).on('error', reject).end();
    });
    assert.equal(body, 'got /first-bytes');
  } finally {
    server.close();
    workers[0]!.channel.close();
  }
});

test('a primary that does not answer in time leaves the decision to this worker\'s own count, counted and reported once a second', async () => {
  // A process with an IPC channel and nobody answering on it.
  const silent = fork(new URL('../helpers/silent-child.ts', import.meta.url).pathname, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await once(silent, 'spawn');
  const channel = createWorkerChannel({ send: (message) => silent.send(message as never), messages: silent });
  const errors: unknown[] = [];
  const admission = nodeAdmission({ channel, timeoutMs: 50, onError: (error) => errors.push(error) });
  let served = 0;
  const server = createHttpServer((_req, res) => { served++; res.end('ok'); });
  const limit = clientConnectionLimit(2, [], admission);
  limit.attach(server);
  const held: Socket[] = [];
  const tryPlain = (port: number) => new Promise<'kept' | 'refused'>((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    held.push(socket);
    socket.once('data', () => resolve('kept'));
    socket.once('error', () => resolve('refused'));
    socket.once('close', () => resolve('refused'));
  });
  try {
    const port = await listen(server);
    assert.deepEqual([await tryPlain(port), await tryPlain(port), await tryPlain(port)], ['kept', 'kept', 'refused'], 'this worker\'s own limit holds meanwhile');
    assert.equal(admission.fallbacks, 2, 'the third was refused by the local count before any question');
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /did not answer connections admit within 50 ms/);
    for (const socket of held) socket.destroy();
    await waitFor(() => limit.openFrom('127.0.0.1') === 0 || undefined);

    // A client that resets while the primary is asked: its socket's error is not thrown (an
    // unhandled 'error' would end the process), its place is given back, nothing is passed on.
    const reset = netConnect(port, '127.0.0.1', () => reset.resetAndDestroy());
    await once(reset, 'close');
    await new Promise((resolve) => setTimeout(resolve, 120)); // past the question's 50 ms
    assert.equal(limit.openFrom('127.0.0.1'), 0);
    assert.equal(served, 2, 'the reset connection reached no handler');
  } finally {
    for (const socket of held) socket.destroy();
    server.close();
    channel.close();
    silent.kill();
  }
});
