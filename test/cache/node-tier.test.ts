import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createNodeTier, createNodeTierStore } from '../../src/cache/store/node-tier.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { createTieredStore } from '../../src/cache/store/tiered.ts';
import type { CacheRecord, CacheStore } from '../../src/cache/store/contract.ts';
import type { WorkerChannel } from '../../src/runtime/primary-channel.ts';
import { linkedWorkers } from '../helpers/linked-workers.ts';

const record = (text: string) => ({ meta: { text }, body: Buffer.from(text) });
const text = (found: CacheRecord | undefined) => found?.body.toString();

/** Worker stores over one primary's node tier, and the drops each worker's channel received. */
function node(count: number, tierOptions: Parameters<typeof createNodeTier>[0] = {}, section = 'cache-section') {
  const tier = createNodeTier(tierOptions);
  const { workers } = linkedWorkers(count, { cache: tier });
  return workers.map(({ channel, exit }) => {
    const drops: unknown[] = [];
    channel.onNotice('cache', (keys) => drops.push(keys));
    const local = createMemoryStore({ maxSize: 1 << 20 });
    return { store: createNodeTierStore({ local, section, maxSize: 1 << 20, channel }), local, drops, channel, exit };
  });
}

test('node tier: what one worker stored is read by another (which then holds it too); a newer response or a delete drops every other holder\'s copy, and only theirs', async () => {
  const [a, b, c] = node(3);
  await a!.store.set('k', record('v1'), 60_000);
  assert.equal(text(await b!.store.get('k')), 'v1', 'fetched from a through the primary');
  assert.equal(text(b!.local.getNow!('k')), 'v1', 'b keeps a copy');
  assert.equal(await c!.store.get('other'), undefined);

  await a!.store.set('k', record('v2'), 60_000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(b!.drops, [['k']], 'b held it: told to drop it');
  assert.deepEqual(c!.drops, [], 'c never held it: told nothing');
  assert.equal(b!.local.getNow!('k'), undefined);
  assert.equal(text(await b!.store.get('k')), 'v2');

  assert.equal(await c!.store.delete(['k']), 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(a!.local.getNow!('k'), undefined, 'a dropped it');
  assert.equal(b!.local.getNow!('k'), undefined, 'b dropped it');
  assert.equal(await b!.store.get('k'), undefined);
});

test('node tier: a holder that no longer has a response (evicted) is struck off; another holder still serves it', async () => {
  const [a, b, c] = node(3);
  await a!.store.set('k', record('v1'), 60_000);
  assert.equal(text(await b!.store.get('k')), 'v1');
  await a!.local.delete(['k']); // a's own memory let it go
  assert.equal(text(await c!.store.get('k')), 'v1', 'from b');
  await b!.local.delete(['k']);
  await c!.local.delete(['k']);
  assert.equal(await a!.store.get('k'), undefined, 'nobody holds it any more');
});

test('node tier: a worker that opens it with another cache section (a reload that changed it) empties it for every worker', async () => {
  const tier = createNodeTier();
  const { workers: [a, b] } = linkedWorkers(2, { cache: tier });
  const localA = createMemoryStore({ maxSize: 1 << 20 });
  const storeA = createNodeTierStore({ local: localA, section: 'one', maxSize: 1 << 20, channel: a!.channel });
  await storeA.set('k', record('v1'), 60_000);
  const sameB = createNodeTierStore({ local: createMemoryStore({ maxSize: 1 << 20 }), section: 'one', maxSize: 1 << 20, channel: b!.channel });
  assert.equal(text(await sameB.get('k')), 'v1', 'the same section keeps it');
  await sameB.close();
  const otherB = createNodeTierStore({ local: createMemoryStore({ maxSize: 1 << 20 }), section: 'two', maxSize: 1 << 20, channel: b!.channel });
  assert.equal(await otherB.get('k'), undefined);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(localA.getNow!('k'), undefined, 'a was told to drop everything');
  assert.equal(tier.usage()?.keys, 0);
});

test('node tier: the directory keeps at most maxKeys keys; the oldest go, and their holders drop them', async () => {
  const [a] = node(1, { maxKeys: 2 });
  for (const key of ['k1', 'k2', 'k3']) await a!.store.set(key, record(key), 60_000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(a!.drops, [['k1']]);
  assert.equal(a!.local.getNow!('k1'), undefined);
  assert.equal(text(a!.local.getNow!('k3')), 'k3');
});

test('node tier: a worker that goes away is no longer asked; another that holds the key still is', async () => {
  const [a, b, c] = node(3);
  await a!.store.set('k', record('v1'), 60_000);
  a!.exit();
  assert.equal(await b!.store.get('k'), undefined);
  const [d, e, f] = node(3);
  await d!.store.set('j', record('j1'), 60_000);
  assert.equal(text(await e!.store.get('j')), 'j1', 'copied: d and e hold it');
  d!.exit();
  assert.equal(text(await f!.store.get('j')), 'j1', 'from e, the holder left');
  await e!.local.delete(['j']);
  assert.equal(text(await d!.local.getNow!('j')), 'j1', 'd kept its copy, but is gone');
  await f!.local.delete(['j']);
  assert.equal(await e!.store.get('j'), undefined, 'nobody left holds it');
});

test('node tier store: the requests that miss in one worker together make one read from another worker, until the key is written', async () => {
  const tier = createNodeTier({});
  const { workers: [a, b] } = linkedWorkers(2, { cache: tier });
  let gets = 0;
  const counted: WorkerChannel = { ...b!.channel, call: (service, op, ...args) => { if (op === 'get') gets++; return b!.channel.call(service, op, ...args); } };
  const storeA = createNodeTierStore({ local: createMemoryStore({ maxSize: 1 << 20 }), section: 's', maxSize: 1 << 20, channel: a!.channel });
  const localB = createMemoryStore({ maxSize: 1 << 20 });
  const storeB = createNodeTierStore({ local: localB, section: 's', maxSize: 1 << 20, channel: counted });
  await storeA.set('k', record('v1'), 60_000);
  const together = await Promise.all(Array.from({ length: 50 }, () => storeB.get('k')));
  assert.deepEqual(together.map(text), Array(50).fill('v1'));
  assert.equal(gets, 1, '50 misses in worker b at once, one read through the primary');
  assert.equal(text(localB.getNow!('k')), 'v1', 'and one copy kept');

  // A write in b while its read is under way: a miss after it does not share that read.
  await localB.delete(['k']);
  const reading = storeB.get('k');
  await new Promise((resolve) => setImmediate(resolve)); // its request is on its way to the primary
  assert.equal(gets, 2);
  const writing = storeB.set('k', record('v2'), 60_000);
  await localB.delete(['k']);
  const after = storeB.get('k');
  await Promise.all([reading, writing, after]);
  assert.equal(gets, 3, 'the miss after the write read on its own');
});

test('node tier store: a read from another worker that a drop overtook is served once and not kept', async () => {
  // The primary's end held by the test: the answer to the read and the drop arrive together.
  let notice: (value: unknown) => void = () => {};
  let answerGet: (value: unknown) => void = () => {};
  const channel: WorkerChannel = {
    call: async <T>(_service: string, op: string) => (op === 'get' ? new Promise<T>((resolve) => { answerGet = resolve as (value: unknown) => void; }) : undefined as T),
    callWithin: async <T>() => undefined as T,
    tell() {},
    onNotice(_service, handler) { notice = handler; return () => {}; },
    serve() { return () => {}; },
    close() {},
  };
  const local = createMemoryStore({ maxSize: 1 << 20 });
  const store = createNodeTierStore({ local, section: 's', maxSize: 1 << 20, channel });
  const reading = store.get('k');
  await new Promise((resolve) => setImmediate(resolve));
  answerGet({ meta: { text: 'old' }, body: Buffer.from('old'), ttlMs: 60_000 });
  notice(['k']);
  assert.equal(text(await reading), 'old', 'served once: it was what the node held when read');
  assert.equal(local.getNow!('k'), undefined, 'not kept');
});

/**
 * A far tier for the tiered store: a memory store behind it, its reads counted and, while `hold`
 * is set, answered only once the test lets them go (the answer has arrived; what the test does
 * meanwhile is handled before the read goes on); `notify` is another node's announcement.
 */
function heldFarTier() {
  const backing = createMemoryStore({ maxSize: 1024 * 1024 });
  const state = { reads: 0, hold: undefined as Promise<void> | undefined, listener: (_message: string) => {} };
  const far: CacheStore & { publish(): Promise<void>; subscribe(c: string, l: (m: string) => void): Promise<() => Promise<void>> } = {
    ...backing,
    name: 'far',
    async get<M>(key: string) {
      state.reads++;
      const found = await backing.get<M>(key);
      await state.hold;
      return found as CacheRecord<M> | undefined;
    },
    async publish() {},
    async subscribe(_channel, onMessage) { state.listener = onMessage; return async () => {}; },
  };
  /** Holds the far tier's answers until the returned function is called. */
  const hold = () => {
    let release!: () => void;
    state.hold = new Promise((resolve) => { release = resolve; });
    return () => { release(); state.hold = undefined; };
  };
  return { backing, far, hold, reads: () => state.reads, notify: (keys: string[]) => state.listener(JSON.stringify({ from: 'another node', keys })) };
}

test('tiered store: a far read that an invalidation overtook is served once and not kept near', async () => {
  const { backing, far, hold, reads, notify } = heldFarTier();
  const tiered = await createTieredStore({ near: createMemoryStore({ maxSize: 1024 * 1024 }), far });
  await backing.set('k', record('old'), 60_000);

  // Undisturbed, a far read is kept near.
  assert.equal(text(await tiered.get('k')), 'old');
  assert.equal(text(await tiered.get('k')), 'old');
  assert.equal(reads(), 1);

  await tiered.delete(['k']);
  await backing.set('k', record('old'), 60_000);
  const release = hold();
  const reading = tiered.get('k');
  await new Promise((resolve) => setImmediate(resolve));
  notify(['k']);
  await backing.set('k', record('new'), 60_000);
  release();
  assert.equal(text(await reading), 'old', 'served once: it was what the tier held when read');
  assert.equal(text(await tiered.get('k')), 'new', 'not kept near: the next read goes to the far tier');
  assert.equal(reads(), 3);
  await tiered.close();
});

test('tiered store: the requests that miss near while one reads the far tier share its read, until the key is dropped', async () => {
  const { backing, far, hold, reads, notify } = heldFarTier();
  const near = createMemoryStore({ maxSize: 1024 * 1024 });
  const tiered = await createTieredStore({ near, far });
  await backing.set('k', record('v1'), 60_000);

  let release = hold();
  const together = Array.from({ length: 50 }, () => tiered.get('k'));
  await new Promise((resolve) => setImmediate(resolve));
  release();
  assert.deepEqual((await Promise.all(together)).map(text), Array(50).fill('v1'), 'every one of them answered');
  assert.equal(reads(), 1, '50 misses near at once, one read of the far tier');
  assert.equal(text(near.getNow!('k')), 'v1', 'and one near copy');

  // Another node replaces the record while a read is under way: a request after the drop reads anew.
  await tiered.delete(['k']);
  await backing.set('k', record('v2'), 60_000);
  release = hold();
  const before = tiered.get('k');
  await new Promise((resolve) => setImmediate(resolve));
  await backing.set('k', record('v3'), 60_000);
  notify(['k']);
  const after = tiered.get('k');
  await new Promise((resolve) => setImmediate(resolve));
  release();
  assert.equal(text(await before), 'v2', 'the read under way answers what it read');
  assert.equal(text(await after), 'v3', 'the request after the drop does not share it');
  assert.equal(reads(), 3);
  await tiered.close();
});
