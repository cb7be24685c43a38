import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { CacheStore } from '../../src/cache/store/contract.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { createRedisStore } from '../../src/cache/store/redis.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Keyv from 'keyv';
import { createKeyvStore } from '../../src/cache/store/keyv.ts';
import { createSqliteStore } from '../../src/cache/store/sqlite.ts';
import { createTieredStore } from '../../src/cache/store/tiered.ts';
import { redisSkipReason, startRedis, type TestRedis } from '../helpers/redis.ts';
import { fork, type ChildProcess } from 'node:child_process';
import { createNodeTier, createNodeTierStore } from '../../src/cache/store/node-tier.ts';
import { createWorkerChannel, type WorkerChannel } from '../../src/runtime/primary-channel.ts';
import { linkedWorkers } from '../helpers/linked-workers.ts';

/** One suite, every adapter: memory and Redis must behave alike. */
function contract(name: string, make: () => Promise<CacheStore>, opts: { skip?: string | false } = {}) {
  describe(`store contract: ${name}`, { skip: opts.skip }, () => {
    let store: CacheStore;
    before(async () => { store = await make(); });
    after(async () => { await store?.clear(); await store?.close(); });

    test('set then get returns the metadata and the exact bytes', async () => {
      const body = Buffer.from([0, 255, 1, 254, 0x80, 0xc3, 0x28]); // not valid UTF-8 on purpose
      await store.set('a', { meta: { status: 200, h: { x: ['1', '2'] } }, body }, 10_000);
      const got = await store.get<{ status: number }>('a');
      assert.deepEqual(got?.meta, { status: 200, h: { x: ['1', '2'] } });
      assert.ok(got && Buffer.compare(got.body, body) === 0);
    });

    test('an empty body and a 2 MB body round-trip', async () => {
      await store.set('empty', { meta: {}, body: Buffer.alloc(0) }, 10_000);
      assert.equal((await store.get('empty'))?.body.length, 0);
      const big = Buffer.alloc(2 * 1024 * 1024, 9);
      await store.set('big', { meta: {}, body: big }, 10_000);
      assert.equal(Buffer.compare((await store.get('big'))!.body, big), 0);
    });

    test('records expire after their ttl', async () => {
      await store.set('short', { meta: {}, body: Buffer.from('x') }, 50);
      await new Promise((resolve) => setTimeout(resolve, 120));
      assert.equal(await store.get('short'), undefined);
    });

    test('delete answers how many existed', async () => {
      await store.set('d1', { meta: {}, body: Buffer.from('1') }, 10_000);
      await store.set('d2', { meta: {}, body: Buffer.from('2') }, 10_000);
      assert.equal(await store.delete(['d1', 'd2', 'nope']), 2);
      assert.equal(await store.get('d1'), undefined);
    });

    test('discard (where a store has it) deletes as delete does, and a read right after sees it', async () => {
      if (store.discard === undefined) return;
      await store.set('x1', { meta: {}, body: Buffer.from('1') }, 10_000);
      await store.set('x2', { meta: {}, body: Buffer.from('2') }, 10_000);
      await store.discard(['x1', 'nope']);
      assert.equal(await store.get('x1'), undefined);
      assert.equal((await store.get('x2'))?.body.toString(), '2');
    });

    test('sets collect members', async () => {
      await store.addToSet('tag:x', 'k1', 10_000);
      await store.addToSet('tag:x', 'k2', 10_000);
      await store.addToSet('tag:x', 'k1', 10_000);
      assert.deepEqual((await store.members('tag:x')).sort(), ['k1', 'k2']);
      assert.deepEqual(await store.members('tag:none'), []);
    });

    test('clear drops everything it owns', async () => {
      await store.set('c', { meta: {}, body: Buffer.from('c') }, 10_000);
      assert.ok((await store.clear()) >= 1);
      assert.equal(await store.get('c'), undefined);
      assert.deepEqual(await store.members('tag:x'), []);
    });
  });
}

contract('memory', async () => createMemoryStore({ maxSize: 64 * 1024 * 1024 }));

/** A fresh directory per store that needs a file, removed when the suites are done. */
const dirs: string[] = [];
const tempFile = async (name: string) => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-store-'));
  dirs.push(dir);
  return join(dir, name);
};
after(async () => { for (const dir of dirs) await rm(dir, { recursive: true, force: true }); });

contract('sqlite (Keyv + node:sqlite adapter)', async () => createSqliteStore({ url: `sqlite://${await tempFile('cache.db')}` }));
contract('memory + sqlite (tiered, no pub/sub)', async () => createTieredStore({
  near: createMemoryStore({ maxSize: 64 * 1024 * 1024 }),
  far: createSqliteStore({ url: `sqlite://${await tempFile('cache.db')}` }),
}));
// Any Keyv store that keeps the values it is given: here Keyv's own default, a Map.
/** A node tier held by another process, as a cluster primary holds it, over a real IPC channel. */
const primaries: ChildProcess[] = [];
const forkPrimary = async (script: string[] = [new URL('../helpers/node-tier-primary.ts', import.meta.url).pathname]): Promise<ChildProcess> => {
  const child = fork(script[0]!, script.slice(1), { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  primaries.push(child);
  await new Promise((resolve) => child.once('spawn', resolve));
  return child;
};
after(() => { for (const child of primaries) child.kill(); });
const nodeTierStore = (channel: WorkerChannel) =>
  createNodeTierStore({ local: createMemoryStore({ maxSize: 32 * 1024 * 1024 }), section: 'contract', maxSize: 64 * 1024 * 1024, channel });
contract('node tier (a worker\'s store; its primary another process, over IPC)', async () => {
  const primary = await forkPrimary();
  return nodeTierStore(createWorkerChannel({ send: (message) => primary.send(message as never), messages: primary }));
});
contract('node tier, written through one worker and read through another', async () => {
  const { workers: [a, b] } = linkedWorkers(2, { cache: createNodeTier() });
  const [writer, reader] = [nodeTierStore(a!.channel), nodeTierStore(b!.channel)];
  // Every write lands in one worker; reads, deletes and the rest go through the other.
  return { ...reader, set: (key, record, ttlMs) => writer.set(key, record, ttlMs), close: async () => { await writer.close(); await reader.close(); } } satisfies CacheStore;
});

contract('keyv (Map)', async () => createKeyvStore({ keyv: new Keyv({ serialize: undefined, deserialize: undefined }), name: 'keyv-map' }));

const skip = redisSkipReason();
let redis: TestRedis | undefined;
contract('redis', async () => {
  redis = await startRedis();
  return createRedisStore({ url: redis.url });
}, { skip });
after(async () => { await redis?.stop(); });

test('memory store: bounded by bytes, least recently used goes first', async () => {
  const store = createMemoryStore({ maxSize: 3 * (1000 + 2 * 2 + 256) }); // body + overhead of meta {}
  for (const key of ['a', 'b', 'c']) await store.set(key, { meta: {}, body: Buffer.alloc(1000) }, 10_000);
  await store.get('a'); // a is now the most recent
  await store.set('d', { meta: {}, body: Buffer.alloc(1000) }, 10_000);
  assert.equal(await store.get('b'), undefined);
  assert.ok(await store.get('a'));
  assert.ok(await store.get('d'));
});

test('node tier: a primary that does not answer is a rejected read after the timeout, not a hang', async () => {
  // A process with an IPC channel and nobody listening on it.
  const silent = await forkPrimary([new URL('../helpers/silent-child.ts', import.meta.url).pathname]);
  const channel = createWorkerChannel({ timeoutMs: 200, send: (message) => silent.send(message as never), messages: silent });
  const store = nodeTierStore(channel);
  const started = Date.now();
  await assert.rejects(store.get('k'), /the primary did not answer cache (open|get) within 200 ms/);
  assert.ok(Date.now() - started < 1500);
  await store.close();
  channel.close();
});

test('redis store: an outage fails fast, and it reconnects by itself', { skip }, async () => {
  const own = await startRedis();
  const errors: unknown[] = [];
  const store = createRedisStore({ url: own.url, onError: (e) => errors.push(e) });
  try {
    await store.set('k', { meta: {}, body: Buffer.from('v') }, 10_000);
    await own.kill();
    const started = Date.now();
    await assert.rejects(store.get('k'));
    assert.ok(Date.now() - started < 1500, 'no queueing while Redis is down');
    await own.restart();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await store.set('k2', { meta: {}, body: Buffer.from('v2') }, 10_000);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    assert.equal((await store.get('k2'))?.body.toString(), 'v2');
    assert.ok(errors.length > 0, 'the outage was reported');
  } finally {
    await store.close();
    await own.stop();
  }
});
