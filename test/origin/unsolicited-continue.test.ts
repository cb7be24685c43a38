import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { makeCa, makeLeaf } from '../helpers/pki.ts';
import { h1, h2, startOutpost } from '../helpers/outpost.ts';

/**
 * RFC 9110 §15.2: a client MUST be able to parse 1xx responses it did not ask for. An origin that
 * sends 100 (Continue) ahead of its answer (Outpost never forwards Expect) is answered through,
 * on the same keep-alive connection (src/origin/unsolicited-continue.ts).
 */

const FINAL = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\nok';
const pause = () => new Promise((resolve) => setTimeout(resolve, 20));

/** What the origin sends for each path: pieces written one after another, a moment apart. */
const ANSWERS: Record<string, string[]> = {
  '/one': ['HTTP/1.1 100 Continue\r\n\r\n' + FINAL],
  '/apart': ['HTTP/1.1 100 Continue\r\n\r\n', FINAL],
  '/split': ['HTTP/1.1 10', '0 Continue\r\nx-note: split\r\n\r\nHTTP/1.1 200 OK\r\n', 'content-length: 2\r\ncache-control: no-store\r\n\r\nok'],
  '/two': ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 100 Continue\r\n\r\n', FINAL],
  '/plain': [FINAL],
};
/** More 100s than a response may have in front of it (8, as 1xx storms are cut off): a 502. */
const STORM = ['HTTP/1.1 100 Continue\r\n\r\n'.repeat(20) + FINAL];

/**
 * A raw HTTP/1.1 origin: reads each request (its body by Content-Length) and writes the answer for
 * its path; over TLS when given a certificate.
 */
async function rawOrigin(tls?: { cert: string; key: string }): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const serve = (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    let busy = false;
    const next = async () => {
      if (busy) return;
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = pending.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (pending.length < end + 4 + length) return;
      pending = pending.subarray(end + 4 + length);
      busy = true;
      const path = head.split(' ')[1];
      for (const [i, piece] of (path === '/storm' ? STORM : ANSWERS[path] ?? [FINAL]).entries()) {
        if (i > 0) await pause();
        socket.write(piece);
      }
      busy = false;
      void next();
    };
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      void next();
    });
    socket.on('error', () => {});
  };
  const server: Server = tls === undefined ? createServer(serve) : createTlsServer(tls, serve);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as { port: number }).port}`,
    connections: () => connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('an origin\'s unsolicited 100 (Continue), whole, apart, split, or twice, is skipped: the final answer reaches the client, and the connection is kept; a storm of them is a 502', async () => {
  const origin = await rawOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    await answeredThrough(outpost, origin);
    assert.equal((await h1(`${outpost.url}/storm`)).status, 502);
    assert.equal((await h1(`${outpost.url}/plain`)).status, 200, 'and the next request is served');
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('the same over TLS to the origin', async () => {
  const ca = await makeCa('continue-ca');
  const leaf = await makeLeaf(ca, 'origin.internal', { dns: ['origin.internal'] });
  const origin = await rawOrigin(leaf);
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: { upstreams: [{ url: origin.url, tls: { ca: ca.certFile, servername: 'origin.internal' } }] } }] });
  try {
    await answeredThrough(outpost, origin);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

/** Every path of ANSWERS, by GET over HTTP/1.1 and POST over HTTP/2, is the origin's 200 "ok", all over one origin connection. */
async function answeredThrough(outpost: { url: string }, origin: { connections: () => number }): Promise<void> {
  for (const path of Object.keys(ANSWERS)) {
    const get = await h1(`${outpost.url}${path}`);
    assert.deepEqual({ status: get.status, body: get.body.toString() }, { status: 200, body: 'ok' }, `GET ${path}`);
    const post = await h2(`${outpost.url}${path}`, { method: 'POST', body: Buffer.from('a body') });
    assert.deepEqual({ status: post.status, body: post.body.toString() }, { status: 200, body: 'ok' }, `POST ${path}`);
  }
  assert.equal(origin.connections(), 1, 'one keep-alive connection to the origin served them all');
}
