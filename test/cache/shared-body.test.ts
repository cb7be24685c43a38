import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { SharedBody } from '../../src/cache/shared-body.ts';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test('a body that came whole: onDone gets it after the constructor returns, every reader gets all of it', async () => {
  const bytes = Buffer.from('whole body');
  const done: Array<Buffer | null> = [];
  let constructed = false;
  const body = new SharedBody(bytes, { maxKept: 1024, maxLag: 1024, onDone: (whole) => { assert.ok(constructed); done.push(whole); } });
  constructed = true;
  const first = body.attach()!;
  await Promise.resolve();
  assert.deepEqual(done, [bytes]);
  const second = body.attach()!;
  assert.deepEqual(await readAll(first), bytes);
  assert.deepEqual(await readAll(second), bytes);
  assert.equal(body.received, bytes.length);
});

test('a whole body over maxKept is not kept (onDone null) but still read by who attaches', async () => {
  const bytes = Buffer.alloc(4096, 7);
  const done: Array<Buffer | null> = [];
  const body = new SharedBody(bytes, { maxKept: 1024, maxLag: 1024, onDone: (whole) => done.push(whole) });
  const reader = body.attach()!;
  await Promise.resolve();
  assert.deepEqual(done, [null]);
  assert.deepEqual(await readAll(reader), bytes);
});
