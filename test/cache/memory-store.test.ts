import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { encodeBuffer } from '../../src/compress/encoders.ts';

test('memory store: a body that is a view into a larger allocation is kept as its own bytes', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  // An origin body that arrived in one socket read shares that read's 64 KB allocation.
  const read = Buffer.alloc(64 * 1024, 7);
  const body = read.subarray(1000, 4000);
  await store.set('k', { meta: { a: 1 }, body }, 60_000);
  const kept = (await store.get('k'))!.body;
  assert.deepEqual(kept, body);
  assert.equal(kept.buffer.byteLength, body.length, 'holds 3,000 bytes, not the 64 KB read');
  // A body that owns its allocation is kept as it is (no copy).
  const own = Buffer.allocUnsafeSlow(5000).fill(1);
  await store.set('o', { meta: null, body: own }, 60_000);
  assert.equal((await store.get('o'))!.body, own);
});

test('encoded bodies own their bytes (zlib answers a view into its output chunk)', async () => {
  const input = Buffer.from('outpost '.repeat(2000));
  for (const quality of ['fast', 'high'] as const) {
    for (const coding of ['br', 'gzip', 'zstd'] as const) {
      const out = await encodeBuffer(coding, input, quality);
      assert.equal(out.buffer.byteLength, out.length, `${coding} ${quality}`);
    }
  }
});

test('memory store: evicts the least recently used, across many evictions and after a clear', async () => {
  const body = Buffer.alloc(1000);
  // Room for three records (each 1,000 bytes plus its allowance).
  const store = createMemoryStore({ maxSize: 3 * (1000 + 2 * 4 + 256) });
  for (const key of ['a', 'b', 'c']) await store.set(key, { meta: null, body }, 60_000);
  await store.get('a'); // a is used again: b is now the oldest
  await store.set('d', { meta: null, body }, 60_000);
  assert.equal(await store.get('b'), undefined);
  await store.set('e', { meta: null, body }, 60_000);
  assert.equal(await store.get('c'), undefined);
  assert.ok(await store.get('a'));
  for (let i = 0; i < 50; i++) await store.set(`k${i}`, { meta: null, body }, 60_000);
  assert.deepEqual(await Promise.all(['k47', 'k48', 'k49'].map(async (k) => (await store.get(k)) !== undefined)), [true, true, true]);
  assert.equal(store.usage!().entries, 3);
  await store.clear();
  for (const key of ['x', 'y', 'z', 'w']) await store.set(key, { meta: null, body }, 60_000);
  assert.equal(await store.get('x'), undefined, 'the oldest after the clear');
  assert.ok(await store.get('w'));
});
