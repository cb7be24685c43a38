import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createUpgradeQueue } from '../../src/compress/upgrades.ts';
import { createEncodedStore } from '../../src/static/encoded.ts';
import { createCompressStage } from '../../src/compress/stage.ts';
import { createOriginDecodeStage } from '../../src/compress/origin-decode.ts';
import { validateConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('upgrade queue: one job per key at a time, bounded concurrency, bounded bytes waiting', async () => {
  const errors: unknown[] = [];
  const queue = createUpgradeQueue({ concurrency: 1, maxQueuedBytes: 100, onError: (e) => errors.push(e) });
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  assert.equal(queue.schedule('a', 80, async () => { order.push('a start'); await gate; order.push('a end'); }), true);
  assert.equal(queue.schedule('a', 80, async () => { order.push('a again'); }), false, 'a is running');
  assert.equal(queue.schedule('b', 60, async () => { order.push('b'); }), true);
  assert.equal(queue.schedule('b', 10, async () => { order.push('b again'); }), false, 'b is queued');
  assert.equal(queue.schedule('c', 50, async () => { order.push('c'); }), false, '60 + 50 bytes would wait: dropped');
  assert.equal(queue.schedule('d', 40, async () => { throw new Error('boom'); }), true);
  await tick();
  assert.deepEqual(order, ['a start'], 'one at a time');
  release();
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(order, ['a start', 'a end', 'b']);
  assert.equal((errors[0] as Error).message, 'boom', 'a failed job is reported, not thrown');
  assert.equal(queue.schedule('a', 80, async () => { order.push('a later'); }), true, 'done: the key may run again');
  await tick();
  assert.equal(order.at(-1), 'a later');
  assert.throws(() => createUpgradeQueue({ concurrency: 0, maxQueuedBytes: 1, onError: () => {} }), /concurrency/);
});

test('encoded-file store: LRU by bytes, replacing, refusing entries over an eighth', () => {
  const store = createEncodedStore(800);
  assert.equal(store.maxEntrySize, 100);
  store.set('a', Buffer.alloc(100));
  store.set('too-big', Buffer.alloc(101));
  assert.equal(store.get('too-big'), undefined);
  for (const key of ['b', 'c', 'd', 'e', 'f', 'g', 'h']) store.set(key, Buffer.alloc(100));
  assert.equal(store.size, 800);
  store.get('a'); // a is now the most recent
  store.set('i', Buffer.alloc(100));
  assert.equal(store.get('b'), undefined, 'the least recently used went');
  assert.ok(store.get('a'));
  store.set('a', Buffer.alloc(50)); // a fast encoding replaced by a smaller, better one
  assert.equal(store.size, 750);
  assert.equal(store.get('a')?.length, 50);
  assert.throws(() => createEncodedStore(-1), /staticMemory/);
});

test('bad options are refused at creation, naming the option', () => {
  assert.throws(() => createCompressStage({ encodings: [], minSize: 1024 }), /compression\.encodings/);
  assert.throws(() => createCompressStage({ encodings: ['br', 'deflate' as 'br'], minSize: 1024 }), /compression\.encodings: unknown coding "deflate"/);
  assert.throws(() => createCompressStage({ encodings: ['br', 'br'], minSize: 1024 }), /listed twice/);
  assert.throws(() => createCompressStage({ encodings: ['br'], minSize: -1 }), /compression\.minSize/);
  assert.throws(() => createOriginDecodeStage({ maxDecodedSize: 0 }), /compression\.maxDecodedSize/);
  assert.throws(() => validateConfig({ compression: { maxDecodedSize: 0, encodings: ['lzma'] } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.ok(err.problems.some((p) => p.startsWith('compression.maxDecodedSize')), err.message);
    assert.ok(err.problems.some((p) => p.startsWith('compression.encodings')), err.message);
    return true;
  });
  const config = validateConfig({});
  assert.equal(config.compression.maxDecodedSize, 1024 ** 3);
  assert.equal(config.compression.staticMemory, 32 * 1024 ** 2);
});
