import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createNodeTier, createNodeTierStore } from '../../src/cache/store/node-tier.ts';
import { createPrimaryChannel, createWorkerChannel, type Peer } from '../../src/runtime/primary-channel.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { createTieredStore, NEAR_TTL_MS } from '../../src/cache/store/tiered.ts';
import type { CacheRecord, CacheStore } from '../../src/cache/store/contract.ts';

/** A worker as the primary sees it: what it is sent is kept; `ask` sends it a request and waits for the answer. */
function worker() {
  const emitter = new EventEmitter();
  const received: any[] = [];
  let id = 0;
  const waiting = new Map<number, (value: unknown) => void>();
  const peer = {
    send: (sent: any) => {
      for (const message of sent.outpost === 'batch' ? sent.items : [sent]) {
        if (message.outpost === 'ans') waiting.get(message.id)?.(message.ok ? message.value : new Error(message.error));
        else received.push(message);
      }
      return true;
    },
    on: (event: string, listener: (...args: any[]) => void) => emitter.on(event, listener),
    once: (event: string, listener: (...args: any[]) => void) => emitter.once(event, listener),
    isConnected: () => true,
  } as unknown as Peer;
  const ask = (op: string, ...args: unknown[]) => new Promise((resolve) => {
    const n = ++id;
    waiting.set(n, resolve);
    emitter.emit('message', { outpost: 'req', id: n, service: 'cache', op, args });
  });
  const drops = () => received.filter((m) => m.outpost === 'notice' && m.service === 'cache').map((m) => m.value);
  return { peer, ask, drops };
}

const record = (text: string) => ({ meta: { text }, body: Buffer.from(text) });

test('node tier: a write or delete tells only the other workers that may hold the key near, within the near copies\' lifetime', async () => {
  let clock = 1_000_000;
  const tier = createNodeTier({ now: () => clock });
  const channel = createPrimaryChannel({ cache: tier }, (error) => { throw error; });
  const [a, b, c] = [worker(), worker(), worker()];
  for (const w of [a, b, c]) { channel.attach(w.peer); await w.ask('open', 1024 * 1024); }

  await a.ask('set', 'k', record('v1'), 60_000);
  assert.deepEqual([a.drops(), b.drops(), c.drops()], [[], [], []], 'a new key concerns nobody else');
  assert.deepEqual(await b.ask('get', 'k'), record('v1'));
  assert.equal(await c.ask('get', 'other'), undefined);

  await a.ask('set', 'k', record('v2'), 60_000);
  assert.deepEqual(b.drops(), [['k']], 'b read it: b drops its copy');
  assert.deepEqual(c.drops(), [], 'c never held it');
  assert.deepEqual(a.drops(), []);

  // b's copy from that read is gone by now: a later write tells nobody.
  await b.ask('get', 'k');
  clock += NEAR_TTL_MS + 1;
  await a.ask('set', 'k', record('v3'), 600_000);
  assert.deepEqual(b.drops(), [['k']]);

  await c.ask('delete', ['k']);
  assert.deepEqual(a.drops(), [['k']], 'a wrote it last: a drops it');
  assert.equal(await b.ask('get', 'k'), undefined);

  await a.ask('clear');
  assert.deepEqual([b.drops().at(-1), c.drops().at(-1)], ['*', '*']);
  await tier.close();
});

test('tiered store: a far read that an invalidation overtook is served once and not kept near', async () => {
  const backing = createMemoryStore({ maxSize: 1024 * 1024 });
  let listener: (message: string) => void = () => {};
  let farReads = 0;
  let hold: Promise<void> | undefined;
  const far: CacheStore & { publish(): Promise<void>; subscribe(c: string, l: (m: string) => void): Promise<() => Promise<void>> } = {
    ...backing,
    name: 'far',
    async get<M>(key: string) {
      farReads++;
      const found = await backing.get<M>(key);
      await hold; // the answer has arrived; the invalidation is handled before the read goes on
      return found as CacheRecord<M> | undefined;
    },
    async publish() {},
    async subscribe(_channel, onMessage) { listener = onMessage; return async () => {}; },
  };
  const tiered = await createTieredStore({ near: createMemoryStore({ maxSize: 1024 * 1024 }), far });
  await backing.set('k', record('old'), 60_000);

  // Undisturbed, a far read is kept near.
  assert.equal((await tiered.get('k'))?.body.toString(), 'old');
  assert.equal((await tiered.get('k'))?.body.toString(), 'old');
  assert.equal(farReads, 1);

  await tiered.delete(['k']);
  await backing.set('k', record('old'), 60_000);
  let release!: () => void;
  hold = new Promise((resolve) => { release = resolve; });
  const reading = tiered.get('k');
  await new Promise((resolve) => setImmediate(resolve));
  listener(JSON.stringify({ from: 'another worker', keys: ['k'] }));
  await backing.set('k', record('new'), 60_000);
  release();
  assert.equal((await reading)?.body.toString(), 'old', 'served once: it was what the tier held when read');
  hold = undefined;
  assert.equal((await tiered.get('k'))?.body.toString(), 'new', 'not kept near: the next read goes to the far tier');
  assert.equal(farReads, 3);
  await tiered.close();
});

test('node tier store: a write is refused, not queued, while the primary reads more slowly than the worker writes', async () => {
  // The primary's end of the channel: answers every call at once; while `slow`, what is written is
  // not taken (its write callbacks wait), as when the primary falls behind.
  const messages = new EventEmitter();
  let slow = false;
  const held: Array<() => void> = [];
  const sent: any[] = [];
  const channel = createWorkerChannel({
    messages,
    backedUpBytes: 4096,
    send: (message: any, written) => {
      for (const item of message.outpost === 'batch' ? message.items : [message]) {
        sent.push(item);
        if (item.id > 0) setImmediate(() => messages.emit('message', { outpost: 'ans', id: item.id, ok: true }));
      }
      if (slow) held.push(() => written());
      else written();
    },
  });
  const store = createNodeTierStore({ maxSize: 1 << 20, channel });
  const flushed = () => new Promise((resolve) => setImmediate(resolve));
  await store.set('a', record('1'), 60_000);
  await flushed();
  slow = true;
  await store.set('big', { meta: {}, body: Buffer.alloc(8192) }, 60_000);
  await flushed();
  await assert.rejects(store.set('b', record('2'), 60_000), /backed up/);
  slow = false;
  for (const write of held.splice(0)) write(); // the primary caught up
  await store.set('c', record('3'), 60_000);
  await flushed();
  assert.deepEqual(sent.filter((item) => item.op === 'set').map((item) => item.args[0]), ['a', 'big', 'c']);
  await store.close();
  channel.close();
});

test('node tier: a worker that opens it with the same cache section keeps what is stored; another section (a reload that changed it) empties it', async () => {
  const tier = createNodeTier();
  const channel = createPrimaryChannel({ cache: tier }, (error) => { throw error; });
  const [a, b] = [worker(), worker()];
  for (const w of [a, b]) channel.attach(w.peer);
  await a.ask('open', 1024 * 1024, '{"maxSize":1048576}');
  await a.ask('set', 'k', record('v1'), 60_000);
  await b.ask('open', 1024 * 1024, '{"maxSize":1048576}');
  assert.deepEqual(await b.ask('get', 'k'), record('v1'));
  await b.ask('open', 1024 * 1024, '{"maxSize":1048576,"grace":0}');
  assert.equal(await a.ask('get', 'k'), undefined);
  await tier.close();
});
