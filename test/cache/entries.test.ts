import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import type { CacheStore } from '../../src/cache/store/contract.ts';
import { lookup, lookupNow, objectsOf, purgeUrl, rewrite, save, saveVariant, variantKey } from '../../src/cache/entries.ts';
import type { StoredResponse } from '../../src/cache/policy.ts';

const meta = (headers: Record<string, string> = {}): StoredResponse => ({ status: 200, headers: { 'cache-control': 'max-age=60', ...headers }, requestTime: 0, responseTime: 0, tags: [] });
const body = (text: string) => Buffer.from(text);
const TTL = 60_000;

test('entries: a response that does not vary is found and purged by keys derived from its URI, with no URL set kept for it', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  const primary = 'https://shop.test/plain';
  const key = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('plain'), ttlMs: TTL, now: Date.now() });
  const found = await lookup(store, primary, {});
  assert.equal(found.kind, 'found');
  if (found.kind !== 'found') return;
  await saveVariant(store, found.found, { coding: 'br', body: body('br bytes'), token: 'br2', ttlMs: TTL });
  assert.deepEqual(await store.members(`u:${primary}`), [], 'no set for a URI that does not vary');
  assert.deepEqual(await objectsOf(store, { primary }), [key]);

  assert.equal(await purgeUrl(store, primary), 1);
  assert.equal(await store.get(key), undefined);
  assert.equal(await store.get(variantKey(key, 'br')), undefined, 'its codings go with it');
  assert.equal((await lookup(store, primary, {})).kind, 'uri-miss');
  assert.equal(await purgeUrl(store, primary), 0, 'nothing left to purge');
});

test('entries: purge by URL drops every stored response of the URI, those that vary (indexed) and the one that did not', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  const primary = 'https://shop.test/page';
  // The origin answered with Vary: Accept-Language for two languages, then without Vary.
  const en = await save(store, { primary, requestHeaders: { 'accept-language': 'en' }, meta: meta({ vary: 'accept-language' }), body: body('en'), ttlMs: TTL, now: Date.now() });
  const fr = await save(store, { primary, requestHeaders: { 'accept-language': 'fr' }, meta: meta({ vary: 'accept-language' }), body: body('fr'), ttlMs: TTL, now: Date.now() });
  const frFound = await lookup(store, primary, { 'accept-language': 'fr' });
  assert.equal(frFound.kind, 'found');
  if (frFound.kind !== 'found') return;
  await saveVariant(store, frFound.found, { coding: 'gzip', body: body('gz'), token: 'gzip4', ttlMs: TTL });
  const plain = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('any'), ttlMs: TTL, now: Date.now() });
  assert.deepEqual(new Set(await objectsOf(store, { primary })), new Set([plain, en, fr]));

  assert.equal(await purgeUrl(store, primary), 3);
  for (const key of [plain, en, fr, variantKey(fr, 'gzip')]) assert.equal(await store.get(key), undefined, key);
  assert.equal((await lookup(store, primary, { 'accept-language': 'en' })).kind, 'uri-miss');
});

/** A memory store that counts its reads (a shared tier pays a round trip for each). */
/** Reads started together (before any is answered) count as one round trip, as a shared tier serves them. */
function countingTrips(store: CacheStore): { store: CacheStore; trips: () => number } {
  let trips = 0;
  let together = false;
  const get: CacheStore['get'] = (key) => {
    if (!together) {
      trips++;
      together = true;
      queueMicrotask(() => { together = false; });
    }
    return store.get(key);
  };
  return { store: { ...store, get }, trips: () => trips };
}

test('entries: a response that does not vary is found, and a URI never stored is missed, in one round trip; it keeps no Vary index; one that varies is found through its index', async () => {
  const { store, trips } = countingTrips(createMemoryStore({ maxSize: 1 << 20 }));
  const primary = 'https://shop.test/one-read';
  const key = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('plain'), ttlMs: TTL, now: Date.now() });
  assert.equal(await store.get(`v:${primary}`), undefined, 'no index record for a URI that does not vary');
  const before = trips();
  const found = await lookup(store, primary, { 'accept-language': 'en' });
  assert.equal(found.kind === 'found' && found.found.key, key);
  assert.equal(trips() - before, 1, 'one round trip');
  assert.equal((await lookup(store, 'https://shop.test/other', {})).kind, 'uri-miss');
  assert.equal(trips() - before, 2, 'a miss: one round trip too');

  // Now the origin varies: the plain response is replaced (it would be found first), requests are told apart.
  const en = await save(store, { primary, requestHeaders: { 'accept-language': 'en' }, meta: meta({ vary: 'accept-language' }), body: body('en'), ttlMs: TTL, now: Date.now() });
  assert.equal(await store.get(key), undefined, 'the response that did not vary is gone');
  const forEn = await lookup(store, primary, { 'accept-language': 'en' });
  assert.equal(forEn.kind === 'found' && forEn.found.key, en);
  assert.equal((await lookup(store, primary, { 'accept-language': 'fr' })).kind, 'vary-miss');
  assert.equal(lookupNow(store, primary, { 'accept-language': 'fr' })?.kind, 'vary-miss');

  // And back to no Vary: found for every request, its index gone.
  const again = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('plain again'), ttlMs: TTL, now: Date.now() });
  assert.equal(await store.get(`v:${primary}`), undefined);
  for (const language of ['en', 'fr']) {
    const now = lookupNow(store, primary, { 'accept-language': language });
    assert.equal(now?.kind === 'found' && now.found.key, again, language);
  }
});

test('entries: the Vary index lives as long as the longest-kept response it leads to', async () => {
  let clock = Date.UTC(2026, 0, 1);
  const store = createMemoryStore({ maxSize: 1 << 20, now: () => clock });
  const primary = 'https://shop.test/lang';
  const en = { 'accept-language': 'en' };
  const fr = { 'accept-language': 'fr' };
  const varies = meta({ vary: 'accept-language' });
  await save(store, { primary, requestHeaders: en, meta: varies, body: body('en'), ttlMs: 7_200_000, now: clock });
  // A response kept for a shorter time does not cut the index short for the other.
  clock += 1_000;
  await save(store, { primary, requestHeaders: fr, meta: varies, body: body('fr'), ttlMs: 60_000, now: clock });
  clock += 3_600_000;
  assert.equal((await lookup(store, primary, en)).kind, 'found', 'en, kept two hours, is found after one');
  assert.equal((await lookup(store, primary, fr)).kind, 'vary-miss', 'fr is gone; the index says the URI varies');
});

test('entries: a rewrite (a 304 refresh) keeps the Vary index as long as the response, whether it varies or not', async () => {
  for (const headers of [{}, { vary: 'accept-language' }] as Array<Record<string, string>>) {
    let clock = Date.UTC(2026, 0, 1);
    const store = createMemoryStore({ maxSize: 1 << 20, now: () => clock });
    const primary = `https://shop.test/refreshed-${Object.keys(headers).length}`;
    const request = { 'accept-language': 'en' };
    await save(store, { primary, requestHeaders: request, meta: meta(headers), body: body('page'), ttlMs: 60_000, now: clock });
    clock += 50_000;
    const found = await lookup(store, primary, request);
    assert.equal(found.kind, 'found');
    if (found.kind !== 'found') return;
    await rewrite(store, { ...found.found, meta: { ...found.found.meta, responseTime: clock } }, 60_000, clock);
    clock += 50_000;
    assert.equal((await lookup(store, primary, request)).kind, 'found', `refreshed, ${JSON.stringify(headers)}: still found past the first lifetime`);
  }
});

test('entries: lookupNow answers what lookup would without waiting, and leaves to lookup what only a far tier could know', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  const primary = 'https://shop.test/now';
  assert.equal(lookupNow(store, primary, {})?.kind, 'uri-miss', 'the memory store alone: its miss is the miss');
  await save(store, { primary, requestHeaders: { 'accept-language': 'en' }, meta: meta({ vary: 'accept-language' }), body: body('en'), ttlMs: TTL, now: Date.now() });
  const now = lookupNow(store, primary, { 'accept-language': 'en' });
  const later = await lookup(store, primary, { 'accept-language': 'en' });
  assert.equal(now?.kind, 'found');
  assert.deepEqual(now, later);
  assert.equal(lookupNow(store, primary, { 'accept-language': 'fr' })?.kind, 'vary-miss');

  // A near tier in front of another (Redis, SQLite): what it holds is answered, a miss is not.
  const near: CacheStore = { ...store, holdsAll: undefined };
  assert.equal(lookupNow(near, primary, { 'accept-language': 'en' })?.kind, 'found');
  assert.equal(lookupNow(near, primary, { 'accept-language': 'fr' }), undefined);
  assert.equal(lookupNow(near, 'https://shop.test/elsewhere', {}), undefined);
  // A store that cannot answer at once is always asked.
  const far: CacheStore = { ...store, getNow: undefined, holdsAll: undefined };
  assert.equal(lookupNow(far, primary, { 'accept-language': 'en' }), undefined);
});
