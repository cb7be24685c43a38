import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import { lookup, objectsOf, purgeUrl, save, saveVariant, variantKey } from '../../src/cache/entries.ts';
import type { StoredResponse } from '../../src/cache/policy.ts';

const meta = (headers: Record<string, string> = {}): StoredResponse => ({ status: 200, headers: { 'cache-control': 'max-age=60', ...headers }, requestTime: 0, responseTime: 0, tags: [] });
const body = (text: string) => Buffer.from(text);
const TTL = 60_000;

test('entries: a response that does not vary is found and purged by keys derived from its URI, with no URL set kept for it', async () => {
  const store = createMemoryStore({ maxSize: 1 << 20 });
  const primary = 'https://shop.test/plain';
  const key = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('plain'), ttlMs: TTL });
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
  // The origin answered without Vary first, then with Vary: Accept-Language for two languages.
  const plain = await save(store, { primary, requestHeaders: {}, meta: meta(), body: body('any'), ttlMs: TTL });
  const en = await save(store, { primary, requestHeaders: { 'accept-language': 'en' }, meta: meta({ vary: 'accept-language' }), body: body('en'), ttlMs: TTL });
  const fr = await save(store, { primary, requestHeaders: { 'accept-language': 'fr' }, meta: meta({ vary: 'accept-language' }), body: body('fr'), ttlMs: TTL });
  const frFound = await lookup(store, primary, { 'accept-language': 'fr' });
  assert.equal(frFound.kind, 'found');
  if (frFound.kind !== 'found') return;
  await saveVariant(store, frFound.found, { coding: 'gzip', body: body('gz'), token: 'gzip4', ttlMs: TTL });
  assert.deepEqual(new Set(await objectsOf(store, { primary })), new Set([plain, en, fr]));

  assert.equal(await purgeUrl(store, primary), 3);
  for (const key of [plain, en, fr, variantKey(fr, 'gzip')]) assert.equal(await store.get(key), undefined, key);
  assert.equal((await lookup(store, primary, { 'accept-language': 'en' })).kind, 'uri-miss');
});
