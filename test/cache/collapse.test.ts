import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCacheEngine } from '../../src/cache/engine.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import type { CacheStore } from '../../src/cache/store/contract.ts';
import { h2, startOrigin, startOutpost } from '../helpers/outpost.ts';

// Collapsed forwarding and validation flights in one process (src/cache/collapse.ts, validate.ts),
// where the store's reads may go to another process (the cluster primary, Redis) and come back late.

test('a miss whose lookup answer took a round trip while this worker\'s own fetch of the URI landed: served from what that fetch stored, not fetched again', async () => {
  const origin = await startOrigin(async (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
    res.end('page');
  });
  // A store whose reads are answered by another process (the primary, Redis): the answer is what
  // it held when asked, delivered a round trip later (here: when the test lets it through).
  const backing = createMemoryStore({ maxSize: 1 << 20 });
  let gating = true;
  const held: Array<() => void> = [];
  const store: CacheStore = {
    ...backing,
    holdsAll: false,
    get: <M>(key: string) => {
      const answer = backing.get<M>(key);
      if (!gating) return answer;
      return new Promise<void>((resolve) => { held.push(resolve); }).then(() => answer);
    },
  };
  const engine = createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [] });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  const until = async (done: () => boolean) => { while (!done()) await new Promise((resolve) => setTimeout(resolve, 5)); };
  try {
    // Both lookups start before either request fetches: each asks the store first (two reads
    // together, the response and the URI's Vary index: entries.ts lookup).
    const first = h2(`${outpost.url}/page`);
    await until(() => held.length === 2);
    const second = h2(`${outpost.url}/page`);
    await until(() => held.length === 4);
    gating = false;
    // The first's lookup is answered: it fetches, stores, lands.
    for (const read of held.splice(0, 2)) read();
    assert.equal((await first).body.toString(), 'page');
    // Only now the second's answer ("nothing stored", as when it asked) arrives.
    for (const read of held.splice(0, 2)) read();
    const late = await second;
    assert.equal(late.body.toString(), 'page');
    assert.equal(origin.seen.length, 1, 'one origin request');
    assert.match(String(late.headers['cache-status']), /hit/);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('requests that come while this process fetches the URI wait for that fetch without a read of the far store each (a round trip to the primary, or to Redis)', async () => {
  let letOriginAnswer!: () => void;
  const originHolds = new Promise<void>((resolve) => { letOriginAnswer = resolve; });
  const origin = await startOrigin(async (_req, res) => {
    await originHolds;
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
    res.end('page');
  });
  // A store whose reads go to another process: this process holds only what it has itself.
  const backing = createMemoryStore({ maxSize: 1 << 20 });
  let reads = 0;
  const store: CacheStore = { ...backing, holdsAll: false, get: <M>(key: string) => { reads++; return backing.get<M>(key); } };
  const engine = createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [] });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  try {
    const first = h2(`${outpost.url}/page`);
    while (origin.seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const readsWhileFetching = reads;
    const waiters = Array.from({ length: 5 }, () => h2(`${outpost.url}/page`));
    while (engine.stats.coalesced < 5) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(reads - readsWhileFetching, 0, 'the waiters joined the fetch without reading the store');
    letOriginAnswer();
    assert.equal((await first).body.toString(), 'page');
    for (const waiter of await Promise.all(waiters)) {
      assert.equal(waiter.body.toString(), 'page');
      assert.match(String(waiter.headers['cache-status']), /fwd=uri-miss; collapsed/);
    }
    assert.equal(origin.seen.length, 1);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('Vary: a stale variant is validated on its own, not served as refreshed because another variant\'s validation was in flight', async () => {
  let letEnAnswer!: () => void;
  let enHeld: Promise<void> | null = null;
  const origin = await startOrigin(async (req, res) => {
    const lang = String(req.headers['accept-language']);
    const etag = `"${lang}"`;
    if (req.headers['if-none-match'] === etag) {
      if (lang === 'en' && enHeld !== null) await enHeld;
      res.writeHead(304, { etag, 'cache-control': 'max-age=60', vary: 'accept-language' });
      res.end();
      return;
    }
    res.writeHead(200, { etag, 'cache-control': 'max-age=60', vary: 'accept-language', 'content-type': 'text/plain' });
    res.end(`page in ${lang}`);
  });
  let clock = Date.now();
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => clock });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  const get = (lang: string) => h2(`${outpost.url}/page`, { headers: { 'accept-language': lang } });
  try {
    assert.equal((await get('en')).body.toString(), 'page in en');
    assert.equal((await get('fr')).body.toString(), 'page in fr');
    clock += 120_000; // both stale
    enHeld = new Promise<void>((resolve) => { letEnAnswer = resolve; });
    const en = get('en');
    while (origin.seen.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    const fr = get('fr'); // while en's validation waits for its 304
    // fr's own conditional request reaches the origin (given up after a second: it waits on en's)
    for (let i = 0; i < 200 && origin.seen.length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    letEnAnswer();
    await en;
    assert.equal((await fr).body.toString(), 'page in fr');
    const conditionals = origin.seen.filter((r) => r.headers['if-none-match'] !== undefined).map((r) => r.headers['accept-language']).sort();
    assert.deepEqual(conditionals, ['en', 'fr'], 'fr validated with its own conditional request (RFC 9111 §4.3)');
  } finally {
    await outpost.close();
    await origin.close();
  }
});
