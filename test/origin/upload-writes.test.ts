import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { Client } from 'undici';
import { limitBody } from '../../src/server/body.ts';

/**
 * A request body's chunks reach an HTTP/1.1 origin in fewer socket writes than chunks
 * (src/origin/upload-writes.ts): those of one event-loop turn ('turn', HTTP/2 clients), or up to
 * 64 KB across turns ('bytes', HTTP/1.1 clients), against a real origin through a real undici
 * client. The socket's writes are counted where Node's Writable hands them to the connection
 * (_write, _writev).
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

/** `count` chunks of a TLS record's size, each in a turn of its own, as an HTTP/1.1 client's body comes. */
const recordPerTurn = (count: number) => async (source: PassThrough): Promise<void> => {
  for (let i = 0; i < count; i++) {
    source.write(Buffer.alloc(RECORD, i));
    await nextTurn();
  }
  source.end();
};

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
async function upload(source: PassThrough, body: Readable, length: number, feed: (source: PassThrough) => unknown): Promise<{ writes: number; received: string }> {
  const server = await origin();
  const client = new Client(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
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
  for (const gather of ['turn', 'bytes'] as const) {
    const source = new PassThrough();
    const body = limitBody(source, { ...limits, gather });
    const { writes, received } = await upload(source, body, CHUNKS * CHUNK, inOneTurn);
    assert.equal(received, String(CHUNKS * CHUNK));
    assert.ok(writes <= 2, `${gather}: ${writes} socket writes for ${CHUNKS} chunks`);
  }
});

test('control: the same chunks from a plain stream are written one by one', async () => {
  const source = new PassThrough();
  const { writes, received } = await upload(source, source, CHUNKS * CHUNK, inOneTurn);
  assert.equal(received, String(CHUNKS * CHUNK));
  assert.ok(writes >= CHUNKS, `${writes} socket writes for ${CHUNKS} chunks`);
});

test("'bytes': an HTTP/1.1 client's records, one per turn, leave 64 KB at a time", async () => {
  const source = new PassThrough();
  // A wait longer than the test: only the batch's size and the body's end send anything.
  const body = limitBody(source, { ...limits, gather: 'bytes', gatherWaitMs: 60_000 });
  const { writes, received } = await upload(source, body, 16 * RECORD, recordPerTurn(16));
  assert.equal(received, String(16 * RECORD));
  assert.ok(writes <= 5, `${writes} socket writes for 16 records (256 KB)`);
});

test("'turn': the same records leave turn by turn", async () => {
  const source = new PassThrough();
  const body = limitBody(source, { ...limits, gather: 'turn' });
  const { writes, received } = await upload(source, body, 16 * RECORD, recordPerTurn(16));
  assert.equal(received, String(16 * RECORD));
  assert.ok(writes >= 16, `${writes} socket writes for 16 records`);
});

test("'bytes': a partial batch leaves after the wait, while the body goes on", { timeout: 10_000 }, async () => {
  const source = new PassThrough();
  const body = limitBody(source, { ...limits, gather: 'bytes', gatherWaitMs: 5 });
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
