import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Http2Session } from 'node:http2';
import { startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { manualTimers } from '../helpers/timers.ts';
import { until } from '../helpers/wait.ts';
import { startEndlessOrigin } from '../helpers/endless-origin.ts';
import { MOVING, stalledStreamWatch } from '../../src/server/h2-stalls.ts';

/**
 * limits.sendTimeout for HTTP/2 responses (h2-stalls.ts): a client that holds a stream back by
 * flow control gets it reset, whatever else moves on its connection; a slow one that keeps taking
 * bytes keeps its response, large bodies written whole included (their one write does not go out
 * whole until the end).
 */

const SEND_TIMEOUT = 20_000;
const STEP = SEND_TIMEOUT / 4; // the watch looks every quarter of sendTimeout

async function withSite<T>(run: (site: { url: string; timers: ReturnType<typeof manualTimers>; large: Buffer; medium: Buffer[] }) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'outpost-stalls-'));
  writeFileSync(join(root, 'small.txt'), 'x'.repeat(10_000));
  const large = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < large.length; i++) large[i] = (i * 7) & 0xff;
  writeFileSync(join(root, 'large.bin'), large);
  // Eight bodies of 200 KB, each its own bytes.
  const medium = Array.from({ length: 8 }, (_, n) => Buffer.from(large.subarray(n * 1000, n * 1000 + 200_000)));
  medium.forEach((body, n) => writeFileSync(join(root, `medium-${n}.bin`), body));
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { sendTimeout: '20s' }, sites: [{ hosts: ['*'], static: root }] }, { timers });
  try {
    return await run({ url: outpost.url, timers, large, medium });
  } finally {
    await outpost.close();
    rmSync(root, { recursive: true, force: true });
  }
}

async function session(url: string, initialWindowSize?: number): Promise<ClientHttp2Session> {
  const client = connect(url, { ca: await testCa(), ...(initialWindowSize === undefined ? {} : { settings: { initialWindowSize } }) });
  await once(client, 'connect');
  return client;
}

/** Lets the server's sockets and the watch's turn run after the clock moved. */
const turns = () => new Promise((resolve) => setTimeout(resolve, 20));

test('a stream its client grants no window gets no byte and is reset after sendTimeout; the connection goes on', async () => {
  await withSite(async ({ url, timers }) => {
    const client = await session(url, 0);
    try {
      const stream = client.request({ ':path': '/small.txt' });
      stream.on('error', () => {});
      const [headers] = await once(stream, 'response');
      assert.equal(headers[':status'], 200);
      let closed = false;
      stream.on('close', () => { closed = true; });
      // Its PINGs keep the connection busy: that is no progress of the stream.
      for (let i = 0; i < 3; i++) {
        client.ping(() => {});
        timers.advance(STEP);
        await turns();
      }
      assert.equal(closed, false, 'held for less than sendTimeout: still open');
      for (let i = 0; i < 3 && !closed; i++) {
        timers.advance(STEP);
        await turns();
      }
      await until(() => closed);
      assert.equal(stream.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
      // The connection itself is not closed: once the client opens its windows, it is served.
      client.settings({ initialWindowSize: 65_535 });
      const next = client.request({ ':path': '/small.txt' });
      const chunks: Buffer[] = [];
      next.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(next, 'end');
      assert.equal(Buffer.concat(chunks).length, 10_000);
    } finally {
      client.close();
    }
  });
});

/** Reads `stream` (paused) until `total` bytes have come, or it ends. */
async function readUpTo(stream: ClientHttp2Stream, chunks: Buffer[], total: () => number, goal: number): Promise<void> {
  while (total() < goal && !stream.readableEnded) {
    const chunk = stream.read() as Buffer | null;
    if (chunk !== null) chunks.push(chunk);
    else await new Promise<void>((resolve) => {
      const done = () => {
        stream.off('readable', done);
        stream.off('end', done);
        resolve();
      };
      stream.on('readable', done);
      stream.on('end', done);
    });
  }
}

test('a slow client that keeps taking a large body is not cut off, however long the whole takes', async () => {
  await withSite(async ({ url, timers, large }) => {
    const client = await session(url);
    try {
      // Twice: the chain's answer (the file read and kept), then the reply kept ready for it.
      for (let round = 0; round < 2; round++) {
        const stream = client.request({ ':path': '/large.bin' });
        stream.pause();
        const [headers] = await once(stream, 'response');
        assert.equal(headers[':status'], 200);
        let closed = false;
        stream.on('close', () => { closed = true; });
        stream.on('error', () => {});
        const chunks: Buffer[] = [];
        const total = () => chunks.reduce((sum, chunk) => sum + chunk.length, 0);
        // 128 KiB per quarter of sendTimeout: the whole body takes twice sendTimeout, and the
        // kept reply's one write stays queued, the same length at every look, until its end: what
        // moves is the connection.
        let steps = 0;
        while (!stream.readableEnded && !closed) {
          await readUpTo(stream, chunks, total, Math.min(large.length, (steps + 1) * 128 * 1024));
          timers.advance(STEP);
          await turns();
          steps++;
        }
        assert.ok(steps >= 6, `it took ${steps} quarters of sendTimeout`);
        assert.equal(closed && !stream.readableEnded, false, `cut off after ${total()} bytes`);
        assert.ok(Buffer.concat(chunks).equals(large), 'the body, whole and in order');
      }
    } finally {
      client.close();
    }
  });
});

/**
 * Requests `paths` at once on `client` and reads the answers in turn, 32 KiB a quarter of
 * sendTimeout in all, taken from the first stream that has bytes: the later ones wait many times
 * sendTimeout. Then checks that none was reset and each came whole; at least 20 quarters went by.
 */
async function readInTurn(client: ClientHttp2Session, paths: string[], bodies: Buffer[], timers: ReturnType<typeof manualTimers>): Promise<void> {
  const streams = paths.map((path) => {
    const stream = client.request({ ':path': path });
    stream.pause();
    return { stream, chunks: [] as Buffer[], got: 0, reset: false };
  });
  for (const s of streams) s.stream.on('error', () => { s.reset = true; });
  const total = bodies.reduce((n, body) => n + body.length, 0);
  /** What has reached the client: read, or waiting in the streams. */
  const arrived = () => streams.reduce((n, s) => n + s.got + s.stream.readableLength, 0);
  let steps = 0;
  while (streams.some((s, i) => s.got < bodies[i].length && !s.reset) && steps < 400) {
    let budget = 32 * 1024;
    for (const s of streams) {
      const take = Math.min(budget, s.stream.readableLength);
      const chunk = take > 0 ? s.stream.read(take) as Buffer | null : null;
      if (chunk === null) continue;
      s.chunks.push(chunk);
      s.got += chunk.length;
      budget -= chunk.length;
    }
    // The clock moves on once Outpost has sent more for what was taken (when the windows it opened
    // let it: else after 100 ms): on a busy machine 20 ms can pass without Outpost's turn, and
    // quarters would pass without its bytes, which is a stall to the watch.
    const read = arrived();
    await until(() => arrived() > read || read >= total || streams.some((s) => s.reset), 100).catch(() => {});
    timers.advance(STEP);
    await turns();
    steps++;
  }
  assert.ok(steps >= 20, `it took ${steps} quarters of sendTimeout`);
  streams.forEach((s, i) => {
    assert.equal(s.reset, false, `${paths[i]} reset after ${s.got} bytes`);
    assert.ok(Buffer.concat(s.chunks).equals(bodies[i]), `${paths[i]} whole`);
  });
}

test('a slow client with many responses queued on one connection keeps them all while it takes bytes, however long each waits', async () => {
  await withSite(async ({ url, timers, medium }) => {
    const client = await session(url);
    try {
      const paths = medium.map((_, i) => `/medium-${i}.bin`);
      // Each read once first, so that all are kept in memory and go in one write each.
      for (const path of paths) {
        const warm = client.request({ ':path': path });
        warm.resume();
        await once(warm, 'end');
      }
      // The last responses wait many times sendTimeout for their one write to go.
      await readInTurn(client, paths, medium, timers);
    } finally {
      client.destroy(); // the streams' ends are not read
    }
  });
});

test('streamed responses too: one waiting while its connection carries another is not cut off', async () => {
  const SIZE = 600_000;
  const bodies = [0, 1, 2].map((n) => Buffer.alloc(SIZE, 65 + n));
  const origin = await startOrigin((req, res) => {
    const body = bodies[Number(req.url!.slice(-1))];
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'content-length': body.length });
    res.end(body);
  });
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { sendTimeout: '20s' }, sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }] }, { timers });
  const client = await session(outpost.url);
  try {
    // The last waits ~9 x sendTimeout before its first byte is read.
    await readInTurn(client, bodies.map((_, n) => `/big/${n}`), bodies, timers);
  } finally {
    client.destroy();
    await outpost.close();
    await origin.close();
  }
});

test('a streamed response (pass-through) its client grants no window is reset after sendTimeout, and the origin response it paced is let go', async () => {
  const origin = await startEndlessOrigin();
  const timers = manualTimers();
  const outpost = await startOutpost({
    proxy: { connections: 1, maxTempFileSize: 0 }, // no temp file: the client paces the origin
    limits: { sendTimeout: '20s' },
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }],
  }, { timers });
  const client = await session(outpost.url, 0);
  try {
    const stream = client.request({ ':path': '/endless' });
    stream.on('error', () => {});
    const [headers] = await once(stream, 'response');
    assert.equal(headers[':status'], 200);
    let closed = false;
    stream.on('close', () => { closed = true; });
    // Until every buffer between the origin and Outpost's stream is full, the count moves.
    let last = -1;
    await until(() => { const stalled = origin.written() === last; last = origin.written(); return stalled; }, 10_000, 200);
    for (let i = 0; i < 3; i++) {
      client.ping(() => {});
      timers.advance(STEP);
      await turns();
    }
    assert.equal(closed || origin.closed(), false, 'held for less than sendTimeout: still open');
    for (let i = 0; i < 3 && !closed; i++) {
      timers.advance(STEP);
      await turns();
    }
    await until(() => closed && origin.closed());
    assert.equal(stream.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
    // The one origin connection is free for the next request, on the same client connection.
    client.settings({ initialWindowSize: 65_535 });
    const next = client.request({ ':path': '/after' });
    const chunks: Buffer[] = [];
    next.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(next, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'quick /after');
  } finally {
    client.destroy();
    await outpost.close();
    await origin.close();
  }
});

test('the watch: a queue that stays the same and not empty for sendTimeout; moved or empty it is left alone', () => {
  const timers = manualTimers();
  const streams = new Map<string, { destroyed: boolean; writableLength: number; destroyedWith?: Error; destroy(err: Error): void }>();
  const stream = (name: string, writableLength: number) => {
    const s = { destroyed: false, writableLength, destroyedWith: undefined as Error | undefined, destroy(err: Error) { this.destroyed = true; this.destroyedWith = err; } };
    streams.set(name, s);
    return s;
  };
  const stalled = stream('stalled', 5000);
  const moving = stream('moving', 5000);
  const empty = stream('empty', 0);
  const timedOut = new Error('timed out');
  const session = { destroyed: false } as Http2Session;
  const watch = stalledStreamWatch(1000, { timedOut: () => timedOut, timers, streamsOf: () => streams.values(), sentBy: () => 100 });
  watch.add(session);
  for (let i = 0; i < 4; i++) {
    moving.writableLength -= 1000;
    timers.advance(250);
  }
  assert.equal(stalled.destroyed, false, 'first seen at 250 ms: not yet a whole sendTimeout');
  for (let i = 0; i < 2; i++) timers.advance(250);
  assert.equal(stalled.destroyedWith, timedOut);
  assert.equal(moving.destroyed, false);
  assert.equal(empty.destroyed, false);
  // A session let go is no longer looked at, and with none left no timer waits.
  watch.delete(session);
  timers.advance(250);
  assert.equal(timers.pending, 0);
  watch.stop();
});

test('the watch: a stream that waits while its connection moves a DATA frame a quarter is kept; once the connection stops, it goes', () => {
  const timers = manualTimers();
  const waiting = { destroyed: false, writableLength: 5000, destroy() { this.destroyed = true; } };
  let sent = 0;
  const watch = stalledStreamWatch(1000, { timedOut: () => new Error('timed out'), timers, streamsOf: () => [waiting], sentBy: () => sent });
  watch.add({ destroyed: false } as Http2Session);
  // Three times sendTimeout with the others' bytes going out: its own write has not gone, but the client takes what comes.
  for (let i = 0; i < 12; i++) {
    sent += MOVING;
    timers.advance(250);
  }
  assert.equal(waiting.destroyed, false);
  // PING answers and the like are not a DATA frame's worth: a sendTimeout later it is reset.
  for (let i = 0; i < 3; i++) {
    sent += 17;
    timers.advance(250);
  }
  assert.equal(waiting.destroyed, false, 'the connection last moved 750 ms ago');
  sent += 17;
  timers.advance(250);
  assert.equal(waiting.destroyed, true);
  watch.stop();
});
