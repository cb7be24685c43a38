import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { h1, startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { manualTimers } from '../helpers/timers.ts';
import { until } from '../helpers/wait.ts';

/**
 * limits.sendTimeout for HTTP/1.1 responses written whole (idle-watch.ts socketWritesWatched): a
 * client that reads nothing of a cache hit has its connection closed after sendTimeout, as nginx's
 * send_timeout does, where only idleTimeout (twice as long by default) ended it before; a slow
 * client that keeps taking bytes keeps it.
 */

const SEND_TIMEOUT = 20_000;
const STEP = SEND_TIMEOUT / 4; // the watch looks every quarter of sendTimeout
// Larger than loopback's socket buffers take from a client that reads nothing (~4 MB seen): the
// rest waits in Outpost.
const SIZE = 12 * 1024 * 1024;

async function withCachedBody<T>(run: (site: { url: string; plainUrl: string; timers: ReturnType<typeof manualTimers> }) => Promise<T>): Promise<T> {
  const body = Buffer.alloc(SIZE);
  for (let i = 0; i < body.length; i++) body[i] = (i * 13) & 0xff;
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'public, max-age=3600', 'content-length': SIZE });
    res.end(body);
  });
  const timers = manualTimers();
  const outpost = await startOutpost({
    listen: { http: 0, httpMode: 'serve' },
    limits: { sendTimeout: '20s' },
    sites: [{ hosts: ['*'], routes: [{ path: '/', origin: origin.url }] }],
  }, { timers });
  try {
    // Stored on the first request: the next are hits, sent whole.
    const first = await h1(`${outpost.url}/big`);
    assert.equal(first.body.length, SIZE);
    assert.ok(first.body.equals(body));
    return await run({ url: outpost.url, plainUrl: `http://127.0.0.1:${outpost.httpPort}`, timers });
  } finally {
    await outpost.close();
    await origin.close();
  }
}

interface PausedClient {
  readonly socket: Socket;
  received(): number;
  closed(): boolean;
  /** Reads `bytes` more (at least), then stops reading again; resolves then, or when the connection closes. */
  take(bytes: number): Promise<void>;
}

/** A raw HTTP/1.1 client (over TLS for an https URL) that asks for `path` and reads only when told. */
async function pausedClient(url: string, path: string): Promise<PausedClient> {
  const { port, protocol } = new URL(url);
  let socket: Socket;
  if (protocol === 'https:') {
    socket = tlsConnect({ host: '127.0.0.1', port: Number(port), servername: 'localhost', ca: await testCa(), ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
  } else {
    socket = netConnect({ host: '127.0.0.1', port: Number(port) });
    await once(socket, 'connect');
  }
  let received = 0;
  let closed = false;
  // Stops reading in the data handler itself: a poll would let megabytes in between two looks.
  let quota: { until: number; done: () => void } | null = { until: 1, done: () => {} };
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (quota !== null && received >= quota.until) {
      socket.pause();
      const { done } = quota;
      quota = null;
      done();
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    quota?.done();
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  await until(() => received > 0);
  return {
    socket,
    received: () => received,
    closed: () => closed,
    take: (bytes) => new Promise<void>((resolve) => {
      if (closed) return resolve();
      quota = { until: received + bytes, done: resolve };
      socket.resume();
    }),
  };
}

/** Lets the server's sockets and the watch's turn run after the clock moved. */
const turns = () => new Promise((resolve) => setTimeout(resolve, 20));

test('HTTP/1.1: a client that reads nothing of a cache hit is closed after sendTimeout, not idleTimeout (HTTPS and plain HTTP)', async () => {
  await withCachedBody(async ({ url, plainUrl, timers }) => {
    for (const base of [url, plainUrl]) {
      const client = await pausedClient(base, '/big');
      // Outpost has handed what it can to the kernel: the rest waits for the client.
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (let i = 0; i < 3; i++) {
        timers.advance(STEP);
        await turns();
      }
      assert.equal(client.closed(), false, `${base}: held for less than sendTimeout: still open`);
      // Up to three sendTimeouts in all (the kernel may still have been taking bytes at the first
      // looks), half of idleTimeout: the close is the send watch's.
      for (let i = 0; i < 9; i++) {
        timers.advance(STEP);
        await turns();
      }
      client.socket.resume(); // what the kernel holds is read, then the end
      await until(() => client.closed());
      assert.ok(client.received() < SIZE, `${base}: the response was cut off (${client.received()} bytes came)`);
    }
    // Other clients are served as before.
    assert.equal((await h1(`${url}/big`)).body.length, SIZE);
  });
});

test('HTTP/1.1: a slow client that keeps taking bytes of a cache hit gets all of it', async () => {
  await withCachedBody(async ({ url, timers }) => {
    const client = await pausedClient(url, '/big');
    await new Promise((resolve) => setTimeout(resolve, 200));
    // 1 MiB a quarter of sendTimeout, for one and a half sendTimeout. (What moves is what the kernel
    // takes of Outpost's queue, and the kernel takes more only once its send buffer has room for a
    // good part of it again, a few MB on loopback: nginx's write events come the same way.)
    for (let i = 0; i < 6; i++) {
      await client.take(1024 * 1024);
      await turns(); // the kernel takes more of the queue from Outpost
      timers.advance(STEP);
      await turns();
    }
    assert.ok(client.received() < SIZE, `read slowly: ${client.received()} bytes so far`);
    client.socket.resume();
    await until(() => client.received() >= SIZE || client.closed(), 10_000);
    assert.equal(client.closed(), false, `closed after ${client.received()} bytes`);
    assert.ok(client.received() > SIZE, 'all of it came (and the header)');
    client.socket.destroy();
  });
});
