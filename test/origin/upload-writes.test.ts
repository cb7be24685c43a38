import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { Client } from 'undici';
import { limitBody } from '../../src/server/body.ts';

/**
 * A request body's chunks of one event-loop turn reach an HTTP/1.1 origin in one socket write
 * (src/origin/upload-writes.ts), against a real origin through a real undici client. The socket's
 * writes are counted where Node's Writable hands them to the connection (_write, _writev).
 */

const CHUNKS = 20;
const CHUNK = 1000;

async function origin(): Promise<Server> {
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => { bytes += chunk.length; });
    req.on('end', () => res.end(String(bytes)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Posts `body` while CHUNKS chunks are written into `source` in one turn; the socket writes made for the body, and what the origin received. */
async function upload(source: PassThrough, body: Readable): Promise<{ writes: number; received: string }> {
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
    const response = client.request({ method: 'POST', path: '/', body, headers: { 'content-length': String(CHUNKS * CHUNK) } });
    // The head goes out first (its own write); the body's chunks come once undici reads the stream.
    while (socket === null) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const before = writes;
    for (let i = 0; i < CHUNKS; i++) source.write(Buffer.alloc(CHUNK, i));
    source.end();
    const { body: reply } = await response;
    return { writes: writes - before, received: await reply.text() };
  } finally {
    unsubscribe('undici:client:sendHeaders', onHeaders);
    await client.close();
    server.close();
  }
}

test('the chunks of one turn leave in one write to the origin, all of them', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 60_000, minRate: 0, grace: 0 });
  const { writes, received } = await upload(source, body);
  assert.equal(received, String(CHUNKS * CHUNK));
  assert.ok(writes <= 2, `${writes} socket writes for ${CHUNKS} chunks`);
});

test('control: the same chunks from a plain stream are written one by one', async () => {
  const source = new PassThrough();
  const { writes, received } = await upload(source, source);
  assert.equal(received, String(CHUNKS * CHUNK));
  assert.ok(writes >= CHUNKS, `${writes} socket writes for ${CHUNKS} chunks`);
});
