import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { createBodyArena, slabSizeFor, type Held } from '../../src/cache/store/body-arena.ts';
import { createCacheEngine } from '../../src/cache/engine.ts';
import type { StoredResponse } from '../../src/cache/policy.ts';

/** A body of `length` bytes that says which record it is. */
const bodyOf = (name: string, length: number) => Buffer.alloc(length, name);
const slabs = (store: ReturnType<typeof createMemoryStore>) => store.usage!().slabs!;

test('body arena: slab sizes follow the store\'s size', () => {
  assert.equal(slabSizeFor(512 * 2 ** 20), 2 ** 20);
  assert.equal(slabSizeFor(2 ** 20), 64 * 1024);
  assert.equal(slabSizeFor(4 * 2 ** 20), 256 * 1024);
  assert.equal(slabSizeFor(1000), 64 * 1024);
});

test('memory store: bodies share slabs, and a slab goes when the records in it are gone', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 }); // 64 KiB slabs, bodies up to 8 KiB in them
  for (let i = 0; i < 16; i++) await store.set(`k${i}`, { meta: null, body: bodyOf(`${i}`, 8000) }, 60_000);
  // 8 bodies of 8,000 bytes per 64 KiB slab.
  assert.deepEqual(slabs(store), { count: 2, bytes: 2 * 65536, live: 128_000 });
  const first = (await store.get('k0'))!.body;
  assert.equal(first.buffer, (await store.get('k7'))!.body.buffer, 'one slab');
  assert.notEqual(first.buffer, (await store.get('k8'))!.body.buffer);
  assert.deepEqual((await store.get('k5'))!.body, bodyOf('5', 8000));
  // The records of the first slab go (the last three move out, into a third slab, when it is
  // mostly empty: below); the first slab goes, the third stays open.
  await store.delete(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']);
  assert.deepEqual(slabs(store), { count: 2, bytes: 2 * 65536, live: 64_000 });
  assert.equal(store.getNow!('k0'), undefined);
  await store.clear();
  assert.deepEqual(slabs(store), { count: 0, bytes: 0, live: 0 });
});

test('memory store: what is left in a mostly emptied slab moves to the open one, and the old bytes stay readable', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  for (let i = 0; i < 8; i++) await store.set(`old${i}`, { meta: null, body: bodyOf(`${i}`, 8000) }, 60_000);
  await store.set('young', { meta: null, body: bodyOf('y', 8000) }, 60_000); // opens a second slab
  const straggler = (await store.get('old7'))!;
  // Replaced or purged: the old slab holds less than half of what was written into it.
  await store.delete(['old0', 'old1', 'old2', 'old3']);
  assert.equal(slabs(store).count, 2, 'half held: left as it is');
  await store.delete(['old4']);
  const moved = (await store.get('old7'))!;
  assert.notEqual(moved, straggler, 'a new record object (what was made from the old one is no longer valid)');
  assert.equal(moved.body.buffer, (await store.get('young'))!.body.buffer, 'in the open slab');
  assert.deepEqual(moved.body, bodyOf('7', 8000));
  assert.deepEqual(straggler.body, bodyOf('7', 8000), 'a response still sending the old view reads the same bytes');
  assert.deepEqual(slabs(store), { count: 1, bytes: 65536, live: 4 * 8000 });
  assert.deepEqual([...['old5', 'old6', 'old7', 'young']].map((k) => store.getNow!(k) !== undefined), [true, true, true, true]);
});

test('memory store: a record stored again with the bytes it holds (a 304 refresh) keeps them where they are', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  await store.set('k', { meta: { v: 1 }, body: bodyOf('k', 5000) }, 60_000);
  const held = (await store.get('k'))!.body;
  await store.set('k', { meta: { v: 2 }, body: held }, 60_000);
  const refreshed = (await store.get('k'))!;
  assert.deepEqual(refreshed.meta, { v: 2 });
  assert.equal(refreshed.body, held, 'the same bytes, not a copy');
  assert.deepEqual(slabs(store), { count: 1, bytes: 65536, live: 5000 });
});

test('memory store: a full cache of misses holds about the slab bytes it uses (slabs empty in the order the eviction hand walks)', async () => {
  // Each miss stores a body and reads it back once (the compression stage does), so the eviction
  // hand gives it a second chance and moves it to the young end, body and all. Emptying the
  // slabs the hand is walking through copied what it was about to evict, out of order: 1.5x.
  const maxSize = 4 << 20; // 256 KiB slabs
  const store = createMemoryStore({ maxSize });
  const slab = slabSizeFor(maxSize);
  let worst = 0;
  for (let i = 0; i < 2000; i++) {
    const key = `miss${i}`;
    await store.set(key, { meta: null, body: bodyOf(`${i % 10}`, 3000 + (i % 7) * 4000) }, 60_000);
    await store.set(`${key}.br`, { meta: null, body: bodyOf('b', 900 + (i % 5) * 300) }, 60_000);
    store.getNow!(key);
    // What is not held: the open slab's room, the slab the hand is emptying, and each slab's
    // tail where the next body did not fit (less than the largest body a slab takes, an eighth).
    const { count, bytes, live } = slabs(store);
    if (i > 500) worst = Math.max(worst, (bytes - live) / (2 * slab + (count * slab) / 8));
  }
  assert.ok(store.usage!().evictions > 1000, 'the cache turned over');
  assert.ok(worst <= 1, `slab bytes not held: ${worst.toFixed(2)} of the bound`);
});

test('body arena: a record moved by the hand releases its old place without emptying slabs out of turn', () => {
  const sparse: unknown[] = [];
  const arena = createBodyArena({ slabSize: 1024, onSparse: (slab) => sparse.push(slab) });
  const held = (key: string): Held => {
    const h: Held = { key, body: Buffer.alloc(120, key), slab: undefined };
    arena.keep(h);
    return h;
  };
  const first = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(held); // 960 bytes
  held('i'); // opens the second slab
  const renewed: Held = { key: 'a', body: first[0]!.body, slab: undefined };
  arena.move(first[0]!, renewed); // a second chance
  assert.notEqual(renewed.slab, first[1]!.slab, 'copied into the open slab');
  assert.deepEqual(renewed.body, Buffer.alloc(120, 'a'));
  assert.equal(arena.isYoung(renewed), true);
  for (const h of first.slice(1, 5)) arena.release(h, true); // evicted: 360 of 960 bytes left
  assert.equal(sparse.length, 0, 'the hand empties the first slab itself');
  assert.equal(arena.usage().count, 2);
  arena.release(first[5]!); // purged
  assert.deepEqual(sparse, [first[6]!.slab], 'any other removal empties a sparse slab');
});

test('engine: a kept hit and a record\'s variants let go of a body the store moved', async () => {
  const clock = Date.UTC(2026, 0, 1);
  const store = createMemoryStore({ maxSize: 1 << 20, now: () => clock });
  const engine = createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => clock });
  const meta = (etag: string): StoredResponse => ({ status: 200, headers: { 'cache-control': 'max-age=60', etag, date: new Date(clock).toUTCString() }, requestTime: clock, responseTime: clock, tags: [] });
  for (let i = 0; i < 6; i++) await engine.save(`https://a/${i}`, {}, meta(`"${i}"`), bodyOf(`${i}`, 8000));
  const found = await engine.lookup('https://a/5', {});
  assert.equal(found.kind, 'found');
  if (found.kind !== 'found') return;
  const holds = engine.holder(found.found)!;
  const variants = engine.variants(found.found);
  assert.equal(variants.identity, found.found.body);
  assert.equal(holds(), true);
  // Fill the slab and open the next, then purge most of the first: /5 moves out of it.
  for (let i = 6; i < 9; i++) await engine.save(`https://a/${i}`, {}, meta(`"${i}"`), bodyOf(`${i}`, 8000));
  await engine.purge({ url: 'https://a/0' }, false);
  await engine.purge({ url: 'https://a/1' }, false);
  await engine.purge({ url: 'https://a/2' }, false);
  await engine.purge({ url: 'https://a/3' }, false);
  await engine.purge({ url: 'https://a/4' }, false);
  const now = await engine.lookup('https://a/5', {});
  assert.ok(now.kind === 'found' && now.found.body !== found.found.body, 'moved');
  assert.equal(holds(), false, 'a reply kept with the old bytes is made again, not kept holding the old slab');
  assert.ok(now.kind === 'found' && variants.identity === now.found.body, 'the variants read the bytes where the store has them now');
  assert.deepEqual(variants.identity, bodyOf('5', 8000));
});

test('body arena: a slab the moves fill while another is emptied is let go once empty, and emptied in turn once sparse', () => {
  const arena = createBodyArena({
    slabSize: 1024, // bodies up to 128 bytes
    onSparse: (slab) => {
      for (const from of [...slab.members]) arena.move(from, { key: from.key, body: from.body, slab: undefined });
    },
  });
  const held = (key: string): Held => {
    const h: Held = { key, body: Buffer.alloc(120, key), slab: undefined };
    arena.keep(h);
    return h;
  };
  const first = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(held); // 960 of 1,024 bytes
  const second = ['i', 'j', 'k', 'l', 'm', 'n', 'o', 'p'].map(held); // the next slab, open
  for (const h of second.slice(0, 7)) arena.release(h); // purged while it was open: one record left
  // The first slab turns sparse; its last three records move into the second, which fills (a new
  // one opens), and is then itself sparse: emptied in its turn.
  for (const h of first.slice(0, 5)) arena.release(h);
  assert.deepEqual(arena.usage(), { count: 1, bytes: 1024, live: 4 * 120 }, 'only the open slab, with the four records left');
  // And one the moves filled with nothing left in it is let go.
  const third = ['q', 'r', 's', 't', 'u', 'v', 'w'].map(held); // 7 more: the open slab is full
  for (const h of third) arena.release(h);
  held('x'); // opens the next
  assert.equal(arena.usage().count, 2, 'the full slab keeps the four, the open one holds x');
});
