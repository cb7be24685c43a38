import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { channel, subscribe, unsubscribe } from 'node:diagnostics_channel';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { buildConnector, Client } from 'undici';
import { limitBody } from '../../src/server/body.ts';
import { ORIGIN_SOCKET_BUFFERS } from '../../src/origin/dispatcher.ts';
import { BATCH_BYTES } from '../../src/origin/upload-writes.ts';
import { h2, startOrigin, startOutpost } from '../helpers/outpost.ts';

/**
 * A request body's chunks reach an HTTP/1.1 origin in fewer socket writes than chunks
 * (src/origin/upload-writes.ts): up to 1 MiB across turns of the event loop, against a real
 * origin through a real undici client with Outpost's origin socket buffers (dispatcher.ts). The
 * socket's writes are counted where Node's Writable hands them to the connection (_write, _writev).
 */

const CHUNKS = 20;
const CHUNK = 1000;
const RECORD = 16 * 1024;

/** The next turn of the event loop. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** CHUNKS chunks of CHUNK bytes in one turn. */
function inOneTurn(source: PassThrough): void {
  for (let i = 0; i < CHUNKS; i++) source.write(Buffer.alloc(CHUNK, i));
  source.end();
}

/**
 * `count` TLS records' worth of chunks, each in a turn of its own, as a client's body comes: an
 * HTTP/1.1 client's a record each; an HTTP/2 client's DATA frames straddle records (`split`: each
 * record's bytes as a large chunk and a small one, in turns of their own).
 */
const recordPerTurn = (count: number, split = false) => async (source: PassThrough): Promise<void> => {
  for (let i = 0; i < count; i++) {
    if (split) {
      source.write(Buffer.alloc(RECORD - 100, i));
      await nextTurn();
      source.write(Buffer.alloc(100, i));
    } else source.write(Buffer.alloc(RECORD, i));
    await nextTurn();
  }
  source.end();
};

/** Outpost's origin sockets (dispatcher.ts), or undici's own (64 KB each way). */
const outpostSockets = { connect: buildConnector(ORIGIN_SOCKET_BUFFERS as unknown as buildConnector.BuildOptions) };
const undiciSockets = {};

/** An origin that answers with the number of body bytes it received; `onBytes` sees the count grow. */
async function origin(onBytes: (received: number) => void = () => {}): Promise<Server> {
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => { bytes += chunk.length; onBytes(bytes); });
    req.on('end', () => res.end(String(bytes)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Posts `body` while `feed` writes into `source`; the socket writes made for the body, and what the origin received. */
async function upload(source: PassThrough, body: Readable, length: number, feed: (source: PassThrough) => unknown, sockets: Client.Options = outpostSockets): Promise<{ writes: number; received: string }> {
  const server = await origin();
  const client = new Client(`http://127.0.0.1:${(server.address() as { port: number }).port}`, sockets);
  let writes = 0;
  let socket: Writable | null = null;
  const onHeaders = (message: unknown) => {
    socket = (message as { socket: Writable }).socket;
    const target = socket as Writable & { _write: (...args: unknown[]) => void; _writev: (...args: unknown[]) => void };
    const write = target._write;
    const writev = target._writev;
    target._write = function (...args) { writes++; return write.apply(this, args); };
    target._writev = function (...args) { writes++; return writev.apply(this, args); };
  };
  subscribe('undici:client:sendHeaders', onHeaders);
  try {
    const response = client.request({ method: 'POST', path: '/', body, headers: { 'content-length': String(length) } });
    // The head goes out first (its own write); the body's chunks come once undici reads the stream.
    while (socket === null) await nextTurn();
    await nextTurn();
    const before = writes;
    await feed(source);
    const { body: reply } = await response;
    return { writes: writes - before, received: await reply.text() };
  } finally {
    unsubscribe('undici:client:sendHeaders', onHeaders);
    await client.close();
    server.close();
  }
}

const limits = { maxBytes: 1e9, deadline: 60_000, minRate: 0, grace: 0 } as const;

test('the chunks of one turn leave in one write to the origin, all of them', async () => {
  const source = new PassThrough();
  const body = limitBody(source, limits);
  const { writes, received } = await upload(source, body, CHUNKS * CHUNK, inOneTurn);
  assert.equal(received, String(CHUNKS * CHUNK));
  assert.ok(writes <= 2, `${writes} socket writes for ${CHUNKS} chunks`);
});

test('control: the same chunks from a plain stream are written one by one', async () => {
  const source = new PassThrough();
  const { writes, received } = await upload(source, source, CHUNKS * CHUNK, inOneTurn);
  assert.equal(received, String(CHUNKS * CHUNK));
  assert.ok(writes >= CHUNKS, `${writes} socket writes for ${CHUNKS} chunks`);
});

for (const [client, split] of [['HTTP/1.1', false], ['HTTP/2', true]] as const) {
  test(`an ${client} client's records, one per turn, leave 1 MiB at a time`, async () => {
    assert.equal(BATCH_BYTES, 64 * RECORD);
    const source = new PassThrough();
    // A wait longer than the test: only the batch's size and the body's end send anything.
    const body = limitBody(source, { ...limits, gatherWaitMs: 60_000 });
    const { writes, received } = await upload(source, body, 128 * RECORD, recordPerTurn(128, split));
    assert.equal(received, String(128 * RECORD));
    // Two batches (256 KB ones made eight).
    assert.ok(writes <= 3, `${writes} socket writes for 128 records (2 MiB)`);
  });
}

test("control: through undici's own socket buffers (64 KB) the batches end at 64 KB", async () => {
  const source = new PassThrough();
  const body = limitBody(source, { ...limits, gatherWaitMs: 60_000 });
  const { writes, received } = await upload(source, body, 64 * RECORD, recordPerTurn(64), undiciSockets);
  assert.equal(received, String(64 * RECORD));
  assert.ok(writes >= 16, `${writes} socket writes for 64 records (1 MiB)`);
});

test("Outpost's origin sockets take a whole batch before they ask for a pause; their read side stays undici's", async () => {
  const origin = await startOrigin((req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] });
  const marks: number[] = [];
  const onHeaders = (message: unknown) => {
    const socket = (message as { socket: Writable & Readable }).socket;
    marks.push(socket.writableHighWaterMark, socket.readableHighWaterMark);
  };
  subscribe('undici:client:sendHeaders', onHeaders);
  try {
    assert.equal((await h2(`${outpost.url}/up`, { method: 'POST', body: 'x'.repeat(1000) })).body.toString(), 'ok');
    assert.deepEqual(marks, [BATCH_BYTES, 64 * 1024]);
  } finally {
    unsubscribe('undici:client:sendHeaders', onHeaders);
    await outpost.close();
    await origin.close();
  }
});

test('a partial batch leaves after the wait, while the body goes on', { timeout: 10_000 }, async () => {
  const source = new PassThrough();
  const body = limitBody(source, { ...limits, gatherWaitMs: 5 });
  let arrived!: () => void;
  const originHasIt = new Promise<void>((resolve) => { arrived = resolve; });
  const server = await origin((received) => { if (received >= CHUNK) arrived(); });
  const client = new Client(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  try {
    const response = client.request({ method: 'POST', path: '/', body, headers: { 'content-length': String(2 * CHUNK) } });
    source.write(Buffer.alloc(CHUNK, 1));
    // The first chunk reaches the origin though the body has not ended and the batch is small.
    await originHasIt;
    source.end(Buffer.alloc(CHUNK, 2));
    const { body: reply } = await response;
    assert.equal(await reply.text(), String(2 * CHUNK));
  } finally {
    await client.close();
    server.close();
  }
});

test('undici\'s sendHeaders channel is subscribed only while a body waits for its socket', async () => {
  const sendHeaders = channel('undici:client:sendHeaders');
  // With a subscriber, undici joins every HTTP/2 origin request's fields into a string for it.
  assert.equal(sendHeaders.hasSubscribers, false, 'no body registered: no subscriber');

  const ended = new PassThrough();
  const a = limitBody(ended, limits);
  const destroyed = new PassThrough();
  const b = limitBody(destroyed, limits);
  assert.equal(sendHeaders.hasSubscribers, true);
  ended.end('done');
  a.resume();
  await once(a, 'end');
  assert.equal(sendHeaders.hasSubscribers, true, 'one body still waits');
  b.destroy();
  assert.equal(sendHeaders.hasSubscribers, false, 'ended and destroyed: none waits');

  // A body that reached its origin's socket waits no more, though it is still being sent.
  let received = 0;
  const server = await origin((bytes) => { received = bytes; });
  const client = new Client(`http://127.0.0.1:${(server.address() as { port: number }).port}`, outpostSockets);
  try {
    const source = new PassThrough();
    const body = limitBody(source, limits);
    assert.equal(sendHeaders.hasSubscribers, true);
    const response = client.request({ method: 'POST', path: '/', body, headers: { 'content-length': String(2 * CHUNK) } });
    source.write(Buffer.alloc(CHUNK));
    while (received === 0) await nextTurn();
    assert.equal(sendHeaders.hasSubscribers, false, 'half sent, attached: no longer waiting');
    source.end(Buffer.alloc(CHUNK));
    assert.equal(await (await response).body.text(), String(2 * CHUNK));
  } finally {
    await client.destroy(); // not close(): a failed check above leaves the request unfinished
    server.close();
  }
});
