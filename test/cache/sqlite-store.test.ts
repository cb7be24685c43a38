import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import Keyv from 'keyv';
import { createKeyvStore } from '../../src/cache/store/keyv.ts';
import { createSqliteAdapter } from '../../src/cache/store/sqlite-adapter.ts';
import { createSqliteStore } from '../../src/cache/store/sqlite.ts';
import { validateConfig } from '../../src/config/load.ts';
import { h1, startOrigin, startOutpost } from '../helpers/outpost.ts';

/** Every byte value, 4096 times over: 1 MB that is not UTF-8 and that base64 would grow to 1.33 MB. */
const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const body = Buffer.concat(Array.from({ length: 4096 }, () => everyByte));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'outpost-sqlite-'));
  file = join(dir, 'cache.db');
});
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

describe('sqlite store', () => {
  test('records and sets survive closing and opening the file again (a restart)', async () => {
    const first = createSqliteStore({ url: `sqlite://${file}` });
    await first.set('o:page', { meta: { status: 200, headers: { 'content-type': 'application/octet-stream' } }, body }, 60_000);
    await first.addToSet('t:product', 'o:page', 60_000);
    await first.close();

    // as after a restart: a new store on the same file
    const second = createSqliteStore({ url: `sqlite://${file}` });
    try {
      const got = await second.get<{ status: number }>('o:page');
      assert.equal(got?.meta.status, 200);
      assert.ok(got && got.body.equals(body), 'the body comes back byte for byte');
      assert.deepEqual(await second.members('t:product'), ['o:page']);
    } finally {
      await second.close();
    }
  });

  test('bodies are raw bytes in the file: no base64, no JSON text', async () => {
    const store = createSqliteStore({ url: `sqlite://${file}` });
    await store.set('raw', { meta: {}, body }, 60_000);
    assert.ok((await store.get('raw'))!.body.equals(body));
    await store.close(); // the last connection folds the WAL back into the file

    const onDisk = await readFile(file);
    assert.ok(onDisk.includes(everyByte), 'the 0x00..0xff run is in the file as it is');
    assert.ok(!onDisk.includes(everyByte.toString('base64')), 'and not as base64');
    // 1 MB body: SQLite's pages and the key add a few percent; base64 would be 1.33x, hex 2x.
    const { size } = await stat(file);
    assert.ok(size < body.length * 1.1, `file is ${size} bytes for a ${body.length}-byte body`);
  });

  test('a relative sqlite:// path is taken from the working directory, and its directory is made', async () => {
    const target = join(dir, 'nested', 'cache.db');
    const store = createSqliteStore({ url: `sqlite://${relative(process.cwd(), target)}` });
    await store.set('k', { meta: {}, body: Buffer.from('v') }, 60_000);
    await store.close();
    assert.ok((await stat(target)).isFile());
  });

  test('clear() drops only its own namespace, even in a shared file', async () => {
    const ours = createSqliteStore({ url: `sqlite://${file}`, prefix: 'ours' });
    const theirs = createSqliteStore({ url: `sqlite://${file}`, prefix: 'theirs' });
    try {
      await ours.set('k', { meta: {}, body: Buffer.from('a') }, 60_000);
      await ours.addToSet('t:x', 'k', 60_000);
      await theirs.set('k', { meta: {}, body: Buffer.from('b') }, 60_000);
      assert.equal(await ours.clear(), 2); // the record and the set
      assert.equal(await ours.get('k'), undefined);
      assert.equal((await theirs.get('k'))?.body.toString(), 'b');
    } finally {
      await ours.close();
      await theirs.close();
    }
  });

  test('adds to one set at the same time lose no member', async () => {
    const store = createSqliteStore({ url: `sqlite://${file}` });
    try {
      const members = Array.from({ length: 100 }, (_, i) => `o:${i}`);
      for (const m of members) await store.set(m, { meta: {}, body: Buffer.from(m) }, 60_000);
      await Promise.all(members.map((m) => store.addToSet('t:all', m, 60_000)));
      assert.deepEqual((await store.members('t:all')).sort(), [...members].sort());
    } finally {
      await store.close();
    }
  });

  test('a set drops members whose records are gone as it grows', async () => {
    const store = createSqliteStore({ url: `sqlite://${file}` });
    try {
      for (let i = 0; i < 63; i++) await store.addToSet('t:gone', `o:gone-${i}`, 60_000); // never stored
      await store.set('o:live', { meta: {}, body: Buffer.from('x') }, 60_000);
      await store.addToSet('t:gone', 'o:live', 60_000); // the 64th member: pruned now
      assert.deepEqual(await store.members('t:gone'), ['o:live']);
    } finally {
      await store.close();
    }
  });

  test('a Keyv with its string serializer is refused: bodies would be stored as base64', () => {
    const adapter = createSqliteAdapter({ path: file });
    assert.throws(() => createKeyvStore({ keyv: new Keyv({ store: adapter }), name: 'x' }), /serialize: undefined/);
    void adapter.disconnect?.();
  });
});

describe('sqlite adapter (Keyv storage adapter over node:sqlite)', () => {
  test('works as a plain Keyv store with Keyv\'s own serializer too', async () => {
    const keyv = new Keyv({ store: createSqliteAdapter({ path: file }), namespace: 'plain' });
    await keyv.set('obj', { a: 1, list: ['x'] });
    assert.deepEqual(await keyv.get('obj'), { a: 1, list: ['x'] });
    assert.equal(await keyv.has('obj'), true);
    assert.deepEqual(await keyv.get(['obj', 'none']), [{ a: 1, list: ['x'] }, undefined]);
    const seen: string[] = [];
    for await (const [key] of keyv.iterator!(undefined)) seen.push(key as string);
    assert.deepEqual(seen, ['obj']);
    assert.equal(await keyv.delete('obj'), true);
    assert.equal(await keyv.delete('obj'), false);
    await keyv.disconnect();
  });

  test('expired rows are hidden at once and swept out of the file by writes', async () => {
    const adapter = createSqliteAdapter({ path: file, sweepIntervalMs: 0 });
    const keyv = new Keyv({ store: adapter, serialize: undefined, deserialize: undefined });
    try {
      await keyv.set('short-1', Buffer.from('1'), 20);
      await keyv.set('short-2', Buffer.from('2'), 20);
      await keyv.set('long', Buffer.from('3'), 60_000);
      await sleep(40);
      assert.equal(await adapter.has!('keyv:short-1'), false);
      assert.equal(await keyv.get('short-1'), undefined);
      await keyv.set('another', Buffer.from('4'), 60_000); // this write sweeps short-2
      assert.equal(adapter.sweep(), 0, 'nothing expired is left');
      assert.equal((await keyv.get('long') as Buffer).toString(), '3');
    } finally {
      await keyv.disconnect();
    }
  });
});

test('config: cache.store accepts sqlite:// paths and names every form when it refuses one', () => {
  assert.equal(validateConfig({ cache: { store: 'sqlite:///var/cache/outpost.db' } }).cache.store, 'sqlite:///var/cache/outpost.db');
  assert.equal(validateConfig({ cache: { store: 'sqlite://cache/outpost.db' } }).cache.store, 'sqlite://cache/outpost.db');
  for (const store of ['sqlite://', 'sqlite:/x.db', 'sqlite:///x.db?mode=ro', 'disk']) {
    assert.throws(() => validateConfig({ cache: { store } }), /"memory", a redis:\/\/ URL, sqlite:\/\/\/absolute\/path\.db or sqlite:\/\/relative\/path\.db/, store);
  }
});

test('Outpost with a sqlite store answers from disk after a restart', async () => {
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'max-age=300' });
    res.end(body);
  });
  const config = { cache: { store: `sqlite://${file}` }, sites: [{ hosts: ['*'], origin: origin.url }] };
  // The cache key has the host; the second start listens on another port, so name the host.
  const headers = { host: 'cdn.test' };
  try {
    // first start: a miss goes to the origin and is stored
    let outpost = await startOutpost(config);
    try {
      assert.ok((await h1(`${outpost.url}/blob`, { headers })).body.equals(body));
      assert.equal(origin.seen.length, 1);
    } finally {
      await outpost.close();
    }
    // second start, same file: a hit from disk, the origin sees nothing new
    outpost = await startOutpost(config);
    try {
      const res = await h1(`${outpost.url}/blob`, { headers });
      assert.ok(res.body.equals(body));
      assert.match(String(res.headers['cache-status']), /hit/);
      assert.equal(origin.seen.length, 1);
    } finally {
      await outpost.close();
    }
  } finally {
    await origin.close();
  }
});
