import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createNodeFlights, createNodeFlightsClient, JUST_LANDED_MS, LOCK_TIMEOUT_MS, type NodeFlights, type Turn } from '../../src/cache/node-flights.ts';
import { createCacheEngine } from '../../src/cache/engine.ts';
import { HIT_FOR_MISS } from '../../src/cache/hit-for-miss.ts';
import { createMemoryStore } from '../../src/cache/store/memory.ts';
import type { CacheStore } from '../../src/cache/store/contract.ts';
import { h2, startOrigin, startOutpost } from '../helpers/outpost.ts';
import type { Peer, WorkerChannel } from '../../src/runtime/primary-channel.ts';

test('node flights (the primary\'s side): the first worker fetches; the others wait for its outcome, a turn held too long, or its end', async () => {
  let clock = 1_000_000;
  const flights = createNodeFlights({ now: () => clock });
  const [a, b, c] = [{}, {}, {}] as Peer[];
  const turn = (peer: Peer, key: string, looked = false, uri?: string) => Promise.resolve(flights.handle(peer, 'turn', uri === undefined ? [key, looked] : [key, looked, uri], undefined as never)) as Promise<Turn>;
  const release = (peer: Peer, key: string, outcome: Turn, uri?: string) => flights.handle(peer, 'release', uri === undefined ? [key, outcome] : [key, outcome, uri], undefined as never);
  const settledSoon = async (p: Promise<Turn>) => Promise.race([p, new Promise((resolve) => setTimeout(resolve, 20, 'waiting'))]);

  // Stored: the waiters read it.
  assert.equal(await turn(a, 'k'), 'lead');
  const bWaits = turn(b, 'k');
  const cWaits = turn(c, 'k');
  assert.equal(await settledSoon(bWaits), 'waiting');
  release(b, 'k', 'pass'); // not b's turn: changes nothing
  assert.equal(await settledSoon(bWaits), 'waiting');
  release(a, 'k', 'look');
  assert.deepEqual(await Promise.all([bWaits, cWaits]), ['look', 'look']);
  assert.equal(flights.size, 0);
  // Just stored: an ask right after looks too (its worker may not have read that its copy changed:
  // it would fetch or validate again what was just stored); a while later it fetches.
  assert.equal(await turn(c, 'k'), 'look');
  // ...unless it looked and found nothing (dropped since): then a turn, held as any other.
  assert.equal(await turn(c, 'k', true), 'lead');
  const behindLooked = turn(a, 'k');
  assert.equal(await settledSoon(behindLooked), 'waiting');
  release(c, 'k', 'look');
  assert.equal(await behindLooked, 'look');
  clock += JUST_LANDED_MS + 1;
  assert.equal(await turn(c, 'k'), 'lead');
  release(c, 'k', 'lead');

  // Not storable: the waiters go to the origin alone; the next miss leads again.
  assert.equal(await turn(a, 'u'), 'lead');
  const waiter = turn(b, 'u');
  release(a, 'u', 'pass');
  assert.equal(await waiter, 'pass');
  assert.equal(await turn(b, 'u'), 'lead');
  release(b, 'u', 'lead');
  // Learnt uncacheable by the worker that fetched it: told to the waiters as such.
  assert.equal(await turn(a, 'h'), 'lead');
  const learner = turn(b, 'h');
  release(a, 'h', 'uncacheable');
  assert.equal(await learner, 'uncacheable');
  // Remembered for the node, so a worker not asked during that fetch is told at once, for the URI
  // and for any of its variants (as each worker remembers the URI).
  assert.equal(await turn(c, 'h'), 'bypass');
  assert.equal(await turn(a, 'h', true), 'bypass');
  assert.equal(await turn(b, 'h variant', false, 'h'), 'bypass');
  flights.handle(a, 'forget', ['h'], undefined as never); // purged or invalidated in some worker
  assert.equal(await turn(b, 'h'), 'lead');
  release(b, 'h', 'look');
  // A variant's fetch found uncacheable: the URI is remembered.
  assert.equal(await turn(c, 'v variant', false, 'v'), 'lead');
  release(c, 'v variant', 'uncacheable', 'v');
  assert.equal(await turn(a, 'v'), 'bypass');
  assert.equal(await turn(a, 'v other variant', false, 'v'), 'bypass');
  clock += HIT_FOR_MISS.ttlMs + 1;
  assert.equal(await turn(c, 'v'), 'lead', 'for as long as a worker remembers it');
  release(c, 'v', 'uncacheable');
  flights.handle(a, 'forget', [], undefined as never); // purge all, or a new engine
  assert.equal(await turn(a, 'v'), 'lead');
  release(a, 'v', 'look');
  clock += JUST_LANDED_MS + 1;

  // A turn held longer than anyone waits is taken over; a worker that goes away lets its waiters fetch.
  assert.equal(await turn(a, 'slow'), 'lead');
  const stuck = turn(b, 'slow');
  clock += LOCK_TIMEOUT_MS + 1;
  assert.equal(await turn(c, 'slow'), 'lead');
  assert.equal(await stuck, 'lead');
  const behindC = turn(a, 'slow');
  flights.detach!(c);
  assert.equal(await behindC, 'lead');
});

test('node flights (a worker\'s side): a turn asked ahead with the lookup is taken up by the miss, or given back when the lookup found it', async () => {
  const calls: string[] = [];
  const told: string[] = [];
  const channel: WorkerChannel = {
    call: async <T>() => undefined as T,
    callWithin: async <T>(_ms: number, _service: string, op: string, key: unknown) => { calls.push(`${op} ${String(key)}`); return 'lead' as T; },
    tell(_service, op, key, outcome) { told.push(`${op} ${String(key)} ${String(outcome)}`); },
    onNotice: () => () => {},
    serve: () => () => {},
    close() {},
  };
  const flights = createNodeFlightsClient(channel);
  const ahead = flights.ahead('k')!;
  assert.equal(flights.ahead('k'), undefined, 'one turn asked per key at a time');
  assert.equal(flights.turn('k'), ahead, 'the miss takes it up: no second request');
  flights.giveBack('k', ahead);
  assert.deepEqual(calls, ['turn k']);
  assert.deepEqual(told, [], 'taken up: the miss releases it, not the lookup');

  const found = flights.ahead('j')!;
  flights.giveBack('j', found);
  await found;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(told, ['release j lead'], 'the lookup found it: the turn goes back');
  assert.notEqual(flights.ahead('j'), undefined, 'and may be asked again');
});

test('a miss that waited for another worker\'s fetch: served as collapsed, but validated when the request asks for it (no-cache)', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.headers['if-none-match'] === '"v1"') { res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=600' }); res.end(); return; }
    res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
    res.end('page');
  });
  // The record another worker stored: hidden from this worker's lookups until its turn comes back 'look'.
  const backing = createMemoryStore({ maxSize: 1 << 20 });
  let hidden = false;
  const store: CacheStore = {
    ...backing,
    holdsAll: false,
    getNow: (key) => (hidden ? undefined : backing.getNow!(key)),
    peekNow: (key) => (hidden ? undefined : backing.peekNow!(key)),
    get: async (key) => (hidden ? undefined : backing.get(key)),
  };
  let elsewhere = false;
  const nodeFlights: NodeFlights = {
    turn: async () => {
      if (!elsewhere) return 'lead';
      hidden = false; // the other worker stored it meanwhile
      return 'look';
    },
    ahead: () => undefined,
    giveBack() {},
    release() {},
    forget() {},
  };
  const engine = createCacheEngine({ store, maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], nodeFlights });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  try {
    assert.equal((await h2(`${outpost.url}/page`)).body.toString(), 'page');
    assert.equal(origin.seen.length, 1);
    elsewhere = true;

    hidden = true;
    const collapsed = await h2(`${outpost.url}/page`);
    assert.equal(collapsed.body.toString(), 'page');
    assert.match(String(collapsed.headers['cache-status']), /collapsed/);
    assert.equal(origin.seen.length, 1, 'served from what the other worker stored');

    hidden = true;
    const validated = await h2(`${outpost.url}/page`, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(validated.body.toString(), 'page');
    assert.equal(origin.seen.length, 2, 'no-cache: validated with the origin (RFC 9111 §5.2.1.4)');
    assert.equal(origin.seen[1]!.headers['if-none-match'], '"v1"');
    assert.match(String(validated.headers['cache-status']), /fwd=request/);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('hit-for-miss across workers: a worker that fetched an uncacheable response tells the workers waiting for it so, and they go straight to the origin for it from then on', async () => {
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'no-store', 'content-type': 'text/plain' });
    res.end('personal');
  });
  const released: Array<[string, Turn, string | undefined]> = [];
  const forgotten: Array<string | undefined> = [];
  const turns: string[] = [];
  let next: Turn = 'lead';
  const nodeFlights: NodeFlights = {
    turn: async (key) => { turns.push(key); return next; },
    ahead: () => undefined,
    giveBack() {},
    release(key, outcome, uri) { released.push([key, outcome, uri]); },
    forget(key) { forgotten.push(key); },
  };
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], nodeFlights });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  try {
    // This worker fetches it: its turn ends 'uncacheable' (it remembers the URI), not a bare 'pass'.
    assert.equal((await h2(`${outpost.url}/fetched-here`)).body.toString(), 'personal');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(released.map(([key, outcome, uri]) => [new URL(key).pathname, outcome, uri === undefined ? uri : new URL(uri).pathname]), [['/fetched-here', 'uncacheable', '/fetched-here']], 'the primary remembers the URI for the node');
    // Another worker fetched it: told 'uncacheable', this worker remembers it too and asks no turn the next time.
    next = 'uncacheable';
    assert.equal((await h2(`${outpost.url}/fetched-elsewhere`)).body.toString(), 'personal');
    const asked = turns.length;
    const again = await h2(`${outpost.url}/fetched-elsewhere`);
    assert.equal(again.body.toString(), 'personal');
    assert.equal(turns.length, asked, 'no turn asked: known uncacheable here now');
    assert.match(String(again.headers['cache-status']), /fwd=bypass/);
    // Told 'bypass' (the primary knew before this ask): the same, and not called collapsed (nothing was waited for).
    next = 'bypass';
    const told = await h2(`${outpost.url}/known-to-the-node`);
    assert.equal(String(told.headers['cache-status']), 'Outpost; fwd=bypass; fwd-status=200');
    const askedBefore = turns.length;
    await h2(`${outpost.url}/known-to-the-node`);
    assert.equal(turns.length, askedBefore, 'remembered here too');
    // Told a bare 'pass' (not storable for that request only): nothing is learnt, the next miss asks again.
    next = 'pass';
    await h2(`${outpost.url}/passed`);
    const before = turns.length;
    await h2(`${outpost.url}/passed`);
    assert.equal(turns.length, before + 1);
    // An invalidation here (RFC 9111 §4.4) and a purge make the primary forget too, not only this worker.
    const posted = await h2(`${outpost.url}/fetched-here`, { method: 'POST', body: 'x' });
    assert.equal(posted.status, 200);
    await engine.purge({ all: true }, false);
    assert.deepEqual(forgotten.map((key) => (key === undefined ? 'all' : new URL(key).pathname)), ['all', '/fetched-here', 'all'], 'a new engine (a start, a reload that changed the cache section) forgets too');
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('a stale response another worker is validating: this worker waits for its turn and serves what that validation refreshed, without a request of its own', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.headers['if-none-match'] === '"v1"') { res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' }); res.end(); return; }
    res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
    res.end('page');
  });
  let clock = Date.now();
  let elsewhere = false;
  const turns: string[] = [];
  const nodeFlights: NodeFlights = {
    turn: async (key) => {
      turns.push(key);
      if (!elsewhere) return 'lead';
      clock -= 120_000; // the other worker's 304 made the stored response fresh again
      return 'look';
    },
    ahead: () => undefined,
    giveBack() {},
    release() {},
    forget() {},
  };
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], nodeFlights, now: () => clock });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  try {
    assert.equal((await h2(`${outpost.url}/page`)).body.toString(), 'page');
    assert.equal(origin.seen.length, 1);
    clock += 120_000; // stale
    elsewhere = true;
    const collapsed = await h2(`${outpost.url}/page`);
    assert.equal(collapsed.body.toString(), 'page');
    assert.equal(turns.length, 2, 'the validation asked for the turn');
    assert.equal(origin.seen.length, 1, 'no validation of its own');
    assert.match(String(collapsed.headers['cache-status']), /fwd=stale; collapsed/);
  } finally {
    await outpost.close();
    await origin.close();
  }
});

test('a miss told to look that finds nothing (dropped since: a POST, a purge) takes a turn before it fetches, and releases it once stored', async () => {
  const origin = await startOrigin((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
    res.end('page v2');
  });
  const turns: string[] = [];
  const released: string[] = [];
  // The primary says the URI was just stored ('look'), but the invalidation that followed dropped it.
  const nodeFlights: NodeFlights = {
    turn: async (key, looked = false) => {
      turns.push(`${new URL(key).pathname}${looked ? ' looked' : ''}`);
      return looked ? 'lead' : 'look';
    },
    ahead: () => undefined,
    giveBack() {},
    release(key, outcome) { released.push(`${new URL(key).pathname} ${outcome}`); },
    forget() {},
  };
  const engine = createCacheEngine({ store: createMemoryStore({ maxSize: 1 << 20 }), maxObjectSize: 1 << 20, grace: 0, targeted: [], hideHeaders: [], nodeFlights });
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { engine });
  try {
    const reply = await h2(`${outpost.url}/page`);
    assert.equal(reply.body.toString(), 'page v2');
    assert.equal(origin.seen.length, 1);
    assert.deepEqual(turns, ['/page', '/page looked'], 'a second ask, for a turn that is one');
    for (const deadline = Date.now() + 2000; released.length === 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(released, ['/page look'], 'held until stored: another worker asking meanwhile waits, then reads it');
  } finally {
    await outpost.close();
    await origin.close();
  }
});
