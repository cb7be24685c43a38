import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { encodeBuffer } from '../../src/compress/encoders.ts';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HELPER_PATH, loadMallocHelper, type MallocHelper } from '../../src/runtime/malloc-trim.ts';
import { SPARE_IDLE_MS, allocateFromHeap, releaseIdleSpares, slabAllocatorOf, spareBytesFor } from '../../src/cache/store/slab-memory.ts';

test('memory store: a body that is a view into a larger allocation is kept as its own bytes', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  // An origin body that arrived in one socket read shares that read's 64 KB allocation.
  const read = Buffer.alloc(64 * 1024, 7);
  const body = read.subarray(1000, 4000);
  await store.set('k', { meta: { a: 1 }, body }, 60_000);
  const kept = (await store.get('k'))!.body;
  assert.deepEqual(kept, body);
  assert.notEqual(kept.buffer, read.buffer, 'copied into the store\'s slab, not holding the 64 KB read');
  assert.deepEqual(store.usage!().slabs, { count: 1, bytes: 64 * 1024, live: 3000 }, 'one slab of a sixteenth of maxSize');
  // A body too large for a slab (over an eighth of it) keeps an allocation of its own: no copy when it owns it ...
  const own = Buffer.allocUnsafeSlow(10_000).fill(1);
  await store.set('o', { meta: null, body: own }, 60_000);
  assert.equal((await store.get('o'))!.body, own);
  // ... and a copy of just its bytes when it is a view into more.
  const big = Buffer.alloc(200_000, 3).subarray(0, 20_000);
  await store.set('b', { meta: null, body: big }, 60_000);
  assert.equal((await store.get('b'))!.body.buffer.byteLength, 20_000);
});

test('memory store: slabs come from the given allocator, by default mapped from the system by the native helper', async (t) => {
  const sizes: number[] = [];
  const store = createMemoryStore({ maxSize: 1 << 20, allocateSlab: (size) => { sizes.push(size); return Buffer.alloc(size); } });
  for (let i = 0; i < 40; i++) await store.set(`k${i}`, { meta: null, body: Buffer.alloc(3000, i) }, 60_000);
  assert.deepEqual(sizes, [64 * 1024, 64 * 1024], 'a slab when the open one is full');
  assert.deepEqual((await store.get('k39'))!.body, Buffer.alloc(3000, 39));

  const { helper, why } = loadMallocHelper(HELPER_PATH, 'system');
  if (helper === null) {
    if (process.env.OUTPOST_REQUIRE_MALLOC_TRIM === '1') throw new Error(`OUTPOST_REQUIRE_MALLOC_TRIM=1 but ${why}`);
    t.skip(why);
    return;
  }
  const before = helper.mappedBytes();
  const mapped = createMemoryStore({ maxSize: 16 << 20 });
  await mapped.set('page', { meta: null, body: Buffer.alloc(30_000, 5) }, 60_000);
  assert.equal(helper.mappedBytes() - before, 1 << 20, 'the store\'s one slab (1 MiB) is mapped memory');
  assert.deepEqual((await mapped.get('page'))!.body, Buffer.alloc(30_000, 5));
});

test('memory store: slabs V8 collects are kept as spares for the next ones, up to an eighth of maxSize (at most 64 MiB for the process)', async (t) => {
  assert.deepEqual([16 << 20, 512 << 20, 4 * 2 ** 30].map(spareBytesFor), [2 << 20, 64 << 20, 64 << 20]);
  const { helper, why } = loadMallocHelper(HELPER_PATH, 'system');
  if (helper === null) {
    if (process.env.OUTPOST_REQUIRE_MALLOC_TRIM === '1') throw new Error(`OUTPOST_REQUIRE_MALLOC_TRIM=1 but ${why}`);
    t.skip(why);
    return;
  }
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const collected = async (done: () => boolean) => {
    for (let i = 0; i < 50 && !done(); i++) { gc(); await new Promise((r) => setTimeout(r, 20)); }
  };
  const store = createMemoryStore({ maxSize: 16 << 20 });
  helper.releaseSpareSlabs!(); // none left from other tests (the store's first slab resumes keeping them)
  for (let i = 0; i < 120; i++) await store.set(`k${i}`, { meta: null, body: Buffer.alloc(30_000, i) }, 60_000);
  assert.equal(store.usage!().slabs?.count, 4, '3.6 MB of bodies in 1 MiB slabs');
  await store.clear();
  await collected(() => helper.spareBytes!() >= 2 << 20);
  assert.equal(helper.spareBytes!(), 2 << 20, 'of the four slabs let go, two (an eighth of 16 MiB) are kept mapped');
  const mapped = helper.mappedBytes();
  await store.set('again', { meta: null, body: Buffer.alloc(30_000, 9) }, 60_000);
  assert.equal(helper.mappedBytes(), mapped, 'the new slab is a spare: nothing more mapped');
  assert.equal(helper.spareBytes!(), 1 << 20);
  assert.deepEqual((await store.get('again'))!.body, Buffer.alloc(30_000, 9));
  // A cache that stops taking slabs (hits only, or nothing) gives its spares back after a while.
  const taken = performance.now();
  assert.equal(releaseIdleSpares(taken + SPARE_IDLE_MS - 1_000), 0, 'a slab taken within SPARE_IDLE_MS: the spares stay');
  assert.equal(helper.spareBytes!(), 1 << 20);
  assert.equal(releaseIdleSpares(taken + SPARE_IDLE_MS), 1 << 20, 'none taken for SPARE_IDLE_MS: they go back');
  assert.equal(helper.spareBytes!(), 0);
  const inUse = helper.mappedBytes();
  await store.clear();
  await collected(() => helper.mappedBytes() < inUse);
  assert.equal(helper.spareBytes!(), 0, 'and none are kept until the next slab is mapped');
  helper.releaseSpareSlabs!();
});

test('slab memory: the heap when there is no helper, when it has no mapSlab, or when mapSlab fails here', () => {
  const base = { trim: () => false, info: () => ({ heap: 0, inUse: 0, free: 0, mmapped: 0 }), mappedBytes: () => 0 };
  assert.equal(slabAllocatorOf(null), allocateFromHeap);
  assert.equal(slabAllocatorOf(base as unknown as MallocHelper), allocateFromHeap, 'a helper built before mapSlab');
  assert.equal(slabAllocatorOf({ ...base, mapSlab: () => { throw new Error('mapSlab: this runtime takes no external buffers'); } }), allocateFromHeap);
  assert.equal(slabAllocatorOf({ ...base, mapSlab: () => undefined as unknown as Buffer }), allocateFromHeap);
  const sizes: number[] = [];
  const mapped = slabAllocatorOf({ ...base, mapSlab: (size) => { sizes.push(size); return Buffer.alloc(size); } });
  assert.equal(mapped(1 << 20).length, 1 << 20);
  assert.deepEqual(sizes, [4096, 1 << 20], 'tried once, then used');
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

test('memory store: records replaced while the store has room are not kept alive by the eviction hand', async () => {
  // The CLOCK hand was a Map iterator made up front. A Map iterator keeps the table it walks, and
  // every table the Map was rehashed into since, with the records each held: a cache with room
  // that re-stores its URLs (revalidated every few seconds) kept replaced records and their bodies
  // (bench/soak.ts: 10,000 records more in two minutes). Here: the same 100 URLs stored 12 times,
  // with full GCs between rounds (the tables grow old, as they do in a server).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = async () => { await new Promise((resolve) => setTimeout(resolve, 1)); gc(); };
  const store = createMemoryStore({ maxSize: 1 << 30 });
  const replaced: WeakRef<object>[] = [];
  for (let round = 0; round < 12; round++) {
    for (let i = 0; i < 100; i++) {
      const meta = { round, i };
      if (round === 1) replaced.push(new WeakRef(meta));
      await store.set(`k${i}`, { meta, body: Buffer.alloc(16) }, 60_000);
    }
    await settle();
  }
  await settle();
  await settle();
  assert.equal(replaced.filter((ref) => ref.deref() !== undefined).length, 0, 'records replaced ten rounds ago are collectable');
  assert.equal(store.usage?.().entries, 100);
});
