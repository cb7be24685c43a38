import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCacheEngine } from '../../src/cache/engine.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import type { StoredResponse } from '../../src/cache/policy.ts';
import { variantKey } from '../../src/cache/entries.ts';

const meta = (at: number, etag: string): StoredResponse => ({
  status: 200, headers: { 'cache-control': 'max-age=60', etag, date: new Date(at).toUTCString() }, requestTime: at, responseTime: at, tags: [],
});

test('engine: an encoding that finishes after its response was replaced is not kept under the new one', async () => {
  let clock = Date.now();
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => clock });
  const first = (await engine.save('https://a/x', {}, meta(clock, '"v1"'), Buffer.from('first body')))!;
  const late = engine.variants(first);
  clock += 1000;
  // The origin sent other bytes under the same key before the background encode of the first finished.
  const second = (await engine.save('https://a/x', {}, meta(clock, '"v2"'), Buffer.from('second body')))!;
  late.put!('br', Buffer.from('br11 of the first body'), 'br11', first.body);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(await engine.variants(second).get('br'), undefined, 'the first body\'s encoding is dropped');
  // The current response's own encodings are kept.
  engine.variants(second).put!('br', Buffer.from('br of the second body'), 'br2', second.body);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((await engine.variants(second).get('br'))?.token, 'br2');
});

/** Until the fire-and-forget `put` has landed in the memory store (a few turns), bounded. */
async function landed(check: () => unknown): Promise<void> {
  for (let i = 0; i < 100 && (await check()) === undefined; i++) await new Promise((resolve) => setImmediate(resolve));
}

test('engine: an encoding that finishes after a 304 refreshed its response is kept (same bytes)', async () => {
  let clock = Date.UTC(2026, 0, 1);
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20, now: () => clock }), maxObjectSize: 1 << 20, grace: 10_000, targeted: [], hideHeaders: [], now: () => clock });
  const short = (at: number): StoredResponse => ({ ...meta(at, '"v1"'), headers: { 'cache-control': 'max-age=5', etag: '"v1"', date: new Date(at).toUTCString() } });
  const stored = (await engine.save('https://a/x', {}, short(clock), Buffer.from('the body')))!;
  // The Brotli 11 upgrade starts from this record (its second hit), and takes a while in the background ...
  const upgrading = engine.variants(stored);
  // ... while the response goes stale and the origin confirms it with a 304 (RFC 9111 §4.3.4: new fields, the same bytes).
  clock += 6_000;
  const refreshed = await engine.refresh(stored, short(clock));
  upgrading.put!('br', Buffer.from('br11 of the body'), 'br11', stored.body);
  await landed(() => engine.variants(refreshed).get('br'));
  assert.equal((await engine.variants(refreshed).get('br'))?.token, 'br11', 'kept: an encoding of the bytes still stored');
  // ... and as long as the refreshed response: past the first one's 5 s + an hour, within the refreshed one's.
  clock += 3_602_000;
  assert.equal((await engine.variants(refreshed).get('br'))?.token, 'br11', 'kept as long as the refreshed response');
});

test('engine: the codings of a response a 304 refreshed live as long as it does', async () => {
  let clock = Date.UTC(2026, 0, 1);
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20, now: () => clock }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => clock });
  const short = (at: number): StoredResponse => ({ ...meta(at, '"v1"'), headers: { 'cache-control': 'max-age=5', etag: '"v1"', date: new Date(at).toUTCString() } });
  const stored = (await engine.save('https://a/x', {}, short(clock), Buffer.from('the body')))!;
  engine.variants(stored).put!('br', Buffer.from('br11 of the body'), 'br11', stored.body);
  await landed(() => engine.variants(stored).get('br'));
  // Kept 5 s fresh plus an hour for revalidation (policy.ts KEEP_WITH_VALIDATORS_S); refreshed at 6 s.
  clock += 6_000;
  const refreshed = await engine.refresh(stored, short(clock));
  // Past the first response's 3,605 s, within the refreshed one's.
  clock += 3_602_000;
  assert.equal((await engine.lookup('https://a/x', {})).kind, 'found');
  assert.equal((await engine.variants(refreshed).get('br'))?.token, 'br11', 'the Brotli 11 body is still there');
});

test('engine: what a stored record keeps for its hits: the stored fields themselves unless some are hidden, and one variants object with shared methods', async () => {
  const clock = Date.UTC(2026, 0, 1);
  const options = { store: createMemoryStore({ maxSize: 1 << 20, now: () => clock }), maxObjectSize: 1 << 20, grace: 0, targeted: [], now: () => clock };
  const plain = createCacheEngine({ ...options, hideHeaders: [] });
  const a = (await plain.save('https://a/x', {}, meta(clock, '"a"'), Buffer.from('a body')))!;
  const b = (await plain.save('https://a/y', {}, meta(clock, '"b"'), Buffer.from('b body')))!;
  const view = (await plain.inspect('https://a/x', {})).view!;
  assert.equal(view.clientHeaders, a.meta.headers, 'nothing to leave out: no copy per record');
  // The variants of a record: its own object, but no closures of its own (they kept the lookup's context alive).
  const va = plain.variants(a);
  assert.equal(plain.variants(a), va, 'one per record');
  assert.notEqual(plain.variants(b), va);
  assert.equal(plain.variants(b).get, va.get);
  assert.equal(plain.variants(b).put, va.put);
  const held = await plain.lookup('https://a/x', {});
  assert.ok(held.kind === 'found');
  assert.equal(va.identity, held.found.body, 'the bytes as the store holds them, read from it');
  assert.deepEqual(va.identity, a.body);

  const hiding = createCacheEngine({ ...options, store: createMemoryStore({ maxSize: 1 << 20, now: () => clock }), hideHeaders: ['X-Internal'] });
  const withAge = { ...meta(clock, '"c"'), headers: { ...meta(clock, '"c"').headers, 'x-internal': 'secret', age: '3' } };
  await hiding.save('https://a/z', {}, withAge, Buffer.from('c body'));
  const hidden = (await hiding.inspect('https://a/z', {})).view!;
  assert.deepEqual(Object.keys(hidden.clientHeaders).sort(), ['cache-control', 'date', 'etag'], 'a copy without the hidden field and Age');
  assert.equal(withAge.headers['x-internal'], 'secret', 'the stored fields are left as they are');
});

/** An engine on a memory store of `maxSize` bytes, at a fixed time; bodies of 1,000 bytes. */
const EVICTION_CLOCK = Date.UTC(2026, 0, 1);
const engineOn = (maxSize: number) => {
  const store = createMemoryStore({ maxSize, now: () => EVICTION_CLOCK });
  return { store, engine: createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => EVICTION_CLOCK }) };
};
const body = (name: string) => Buffer.alloc(1000, name);

test('engine: keeping an encoding does not count as a use of the response it was made from (a URL never asked for again is evicted first)', async () => {
  const clock = EVICTION_CLOCK;
  /** A miss: the response is stored and its fast encoding kept (the compression stage's put), nothing read. */
  const miss = async ({ store, engine }: ReturnType<typeof engineOn>, url: string) => {
    const found = (await engine.save(url, {}, meta(clock, '"v"'), body(url)))!;
    engine.variants(found).put!('br', Buffer.alloc(100, 'b'), 'br2', found.body);
    await landed(() => store.peekNow!(variantKey(found.key, 'br')));
    return found;
  };
  const one = engineOn(1 << 20);
  await miss(one, 'https://a/x');
  const perUrl = one.store.usage!().bytes; // the response and its encoding
  // Room for two URLs: x is stored and encoded, never asked for again; y is, and is then hit.
  const two = engineOn(2 * perUrl + 10);
  const { store, engine } = two;
  await miss(two, 'https://a/x');
  const y = await miss(two, 'https://a/y');
  assert.equal((await engine.lookup('https://a/y', {})).kind, 'found');
  await miss(two, 'https://a/z');
  assert.equal((await engine.lookup('https://a/x', {})).kind, 'uri-miss', 'x went first');
  assert.equal((await engine.lookup('https://a/y', {})).kind, 'found');
  assert.equal((await engine.variants(y).get('br'))?.token, 'br2', 'y kept whole, with its encoding');
  assert.equal(store.usage!().entries, 4);
});

test('engine: the compression stage reading a stored response\'s bytes is no use of it either (the oldest never asked for goes first)', async () => {
  const clock = EVICTION_CLOCK;
  const one = engineOn(1 << 20);
  await one.engine.save('https://a/x', {}, meta(clock, '"v"'), body('x'));
  const perUrl = one.store.usage!().bytes;
  // Room for two responses. x is stored on a miss whose reply the compression stage encodes (it
  // reads the stored bytes through the record's variants); y is stored after it; nobody asks for either again.
  const { engine } = engineOn(2 * perUrl + 10);
  const x = (await engine.save('https://a/x', {}, meta(clock, '"v"'), body('x')))!;
  assert.deepEqual(engine.variants(x).identity, body('x'));
  await engine.save('https://a/y', {}, meta(clock, '"v"'), body('y'));
  await engine.save('https://a/z', {}, meta(clock, '"v"'), body('z'));
  assert.equal((await engine.lookup('https://a/x', {})).kind, 'uri-miss', 'x, the oldest, went');
  assert.equal((await engine.lookup('https://a/y', {})).kind, 'found');
});

test('engine: the variants of a response just stored ask the store only for codings put since (a shared tier: no read per miss)', async () => {
  const backing = createMemoryStore({ maxSize: 1 << 20 });
  const asked: string[] = [];
  const store = { ...backing, get: <M>(key: string) => { asked.push(key); return backing.get<M>(key); } };
  const engine = createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => Date.now() });
  const saved = (await engine.save('https://a/new', {}, meta(Date.now(), '"n1"'), Buffer.from('a new body')))!;
  asked.length = 0;
  const justStored = engine.variants(saved, true, true);
  assert.equal(await justStored.get('br'), undefined);
  assert.equal(await justStored.get('gzip'), undefined);
  assert.deepEqual(asked, [], 'save() dropped every coding of the key: nothing to read');
  justStored.put!('br', Buffer.from('br of a new body'), 'br1', saved.body);
  await landed(() => justStored.get('br'));
  assert.equal((await justStored.get('br'))?.token, 'br1', 'a coding put since is read from the store');
  assert.deepEqual([...new Set(asked)], [variantKey(saved.key, 'br')]);
  // A record found by a lookup (not just stored here) asks the store: another process may have encoded it.
  assert.equal((await engine.variants(saved, true).get('gzip')), undefined);
  assert.equal(asked.at(-1), variantKey(saved.key, 'gzip'));
});

test('engine: the variants kept with a record (what its hits ask) see the codings another reply kept, even when first asked for a record just stored', async () => {
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], now: () => Date.now() });
  const saved = (await engine.save('https://a/popular', {}, meta(Date.now(), '"p1"'), Buffer.from('a popular body')))!;
  // The miss's own reply keeps the fast coding through an object of its own ...
  engine.variants(saved, true, true).put!('br', Buffer.from('br of a popular body'), 'br1', saved.body);
  // ... while coalesced waiters asked for the record's kept variants as it was just stored.
  const kept = engine.variants(saved, false, true);
  await landed(() => engine.variants(saved).get('br'));
  assert.equal((await kept.get('br'))?.token, 'br1', 'every later hit finds the coding (before: none ever did, each re-encoded)');
});
