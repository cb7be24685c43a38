import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { brotliDecompressSync } from 'node:zlib';
import { h1, h2, h2session, h2request, startOrigin, startOutpost, testClock, type RunningOutpost } from '../helpers/outpost.ts';
import { startRoutedOrigin, type OriginRoute, type RoutedOrigin } from '../helpers/routed-origin.ts';
import { redisSkipReason, startRedis, type TestRedis } from '../helpers/redis.ts';
import { createRedisStore } from '../../src/cache/store/redis.ts';

/**
 * The cache through the real listener, against a real origin that counts what reaches it.
 * Each path names its behaviour; `count(path)` is how many requests the origin saw for it.
 */
type Route = OriginRoute;
let origin: RoutedOrigin;
let outpost: RunningOutpost;
/** The cache's clock: freshness runs out when a test says so, not by sleeping. */
const clock = testClock();
const TOKEN = 'test-admin-token-0123456789';

const count = (path: string) => origin.count(path);
const seenFor = (path: string) => origin.seenFor(path);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let unique = 0;
const fresh = (name: string) => `/${name}-${++unique}`;

const route = (path: string, handler: Route) => origin.route(path, handler);

before(async () => {
  origin = await startRoutedOrigin({ date: clock.dateHeader });
  outpost = await startOutpost({ admin: { token: TOKEN }, cache: { grace: '0s' }, sites: [{ hosts: ['*'], origin: origin.url }] }, { now: clock.now });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

const cacheable = (body: string, cc = 'max-age=60', extra: Record<string, string> = {}): Route => (_req, res, n) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': cc, etag: `"v${n}"`, ...extra });
  res.end(`${body} #${n}`);
};

test('a fresh response is served from cache over HTTP/2 and HTTP/1.1, with Age and Cache-Status', async () => {
  const path = route(fresh('fresh'), cacheable('hello'));
  const first = await h2(`${outpost.url}${path}`);
  assert.equal(first.status, 200);
  assert.equal(first.body.toString(), 'hello #1');
  assert.match(String(first.headers['cache-status']), /^Outpost; fwd=uri-miss; fwd-status=200; stored$/);
  // second request: served from cache, whatever the protocol
  const second = await h1(`${outpost.url}${path}`);
  assert.equal(second.body.toString(), 'hello #1');
  assert.match(String(second.headers['cache-status']), /^Outpost; hit; ttl=\d+$/);
  assert.match(String(second.headers.age), /^\d+$/);
  assert.equal(second.headers.etag, '"v1"');
  assert.ok(second.headers.date, 'the origin Date is kept');
  assert.equal(count(path), 1);
});

test('HEAD is answered from a stored GET, and a HEAD miss stores the GET', async () => {
  const path = route(fresh('head'), cacheable('body'));
  const head = await h2(`${outpost.url}${path}`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(head.headers['content-length'], '7');
  assert.equal(seenFor(path)[0].method, 'GET');
  const get = await h1(`${outpost.url}${path}`);
  assert.equal(get.body.toString(), 'body #1');
  assert.equal(count(path), 1);
});

test('Vary: each variant is stored apart; Accept-Encoding does not split; Vary: * is never stored', async () => {
  const path = route(fresh('vary'), (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language, Accept-Encoding' });
    res.end(`${req.headers['accept-language'] ?? 'none'} #${n}`);
  });
  assert.equal((await h2(`${outpost.url}${path}`, { headers: { 'accept-language': 'fr' } })).body.toString(), 'fr #1');
  assert.equal((await h2(`${outpost.url}${path}`, { headers: { 'accept-language': 'en' } })).body.toString(), 'en #2');
  const vm = await h2(`${outpost.url}${path}`, { headers: { 'accept-language': 'de' } });
  assert.match(String(vm.headers['cache-status']), /fwd=vary-miss/);
  assert.equal((await h2(`${outpost.url}${path}`, { headers: { 'accept-language': 'fr', 'accept-encoding': 'gzip' } })).body.toString(), 'fr #1');
  assert.equal((await h1(`${outpost.url}${path}`, { headers: { 'accept-language': 'en' } })).body.toString(), 'en #2');
  assert.equal(count(path), 3);

  const star = route(fresh('vary-star'), (_req, res, n) => { res.writeHead(200, { 'cache-control': 'max-age=60', vary: '*' }); res.end(`${n}`); });
  await h2(`${outpost.url}${star}`);
  await h2(`${outpost.url}${star}`);
  assert.equal(count(star), 2);
});

test('not stored: no-store, private, Set-Cookie, Authorization without public; stored: Authorization with public', async () => {
  const cases: Array<[string, Route, Record<string, string>, number]> = [
    ['no-store', cacheable('x', 'no-store'), {}, 2],
    ['private', cacheable('x', 'private, max-age=60'), {}, 2],
    ['cookie', cacheable('x', 'max-age=60', { 'set-cookie': 'id=1' }), {}, 2],
    ['auth', cacheable('x', 'max-age=60'), { authorization: 'Bearer x' }, 2],
    ['auth-public', cacheable('x', 'public, max-age=60'), { authorization: 'Bearer x' }, 1],
    ['request-no-store', cacheable('x'), { 'cache-control': 'no-store' }, 2],
  ];
  for (const [name, handler, headers, expected] of cases) {
    const path = route(fresh(name), handler);
    await h2(`${outpost.url}${path}`, { headers });
    await h2(`${outpost.url}${path}`, { headers });
    assert.equal(count(path), expected, name);
  }
});

test('a stale response is revalidated: the 304 refreshes the stored headers and the stored body is served', async () => {
  const path = route(fresh('revalidate'), (req, res, n) => {
    if (n > 1 && req.headers['if-none-match'] === '"v1"') {
      res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60', 'x-refreshed': `yes ${n}` });
      return void res.end();
    }
    res.writeHead(200, { 'cache-control': 'max-age=1', etag: '"v1"', 'x-refreshed': 'no' });
    res.end('original body');
  });
  await h2(`${outpost.url}${path}`);
  clock.advance(1100); // the stored response is now stale
  const revalidated = await h2(`${outpost.url}${path}`);
  assert.equal(revalidated.status, 200);
  assert.equal(revalidated.body.toString(), 'original body');
  assert.equal(revalidated.headers['x-refreshed'], 'yes 2');
  assert.match(String(revalidated.headers['cache-status']), /fwd=stale; fwd-status=304/);
  assert.equal(seenFor(path)[1].headers['if-none-match'], '"v1"');
  // now fresh again for 60 s
  const hit = await h1(`${outpost.url}${path}`);
  assert.match(String(hit.headers['cache-status']), /hit/);
  assert.equal(hit.headers['x-refreshed'], 'yes 2');
  assert.equal(count(path), 2);
});

test('request directives: no-cache revalidates, max-age=0 revalidates, only-if-cached answers 504 when nothing fits', async () => {
  const path = route(fresh('req-cc'), cacheable('v'));
  await h2(`${outpost.url}${path}`);
  const noCache = await h2(`${outpost.url}${path}`, { headers: { 'cache-control': 'no-cache' } });
  assert.match(String(noCache.headers['cache-status']), /fwd=request/);
  assert.equal(count(path), 2);
  await h2(`${outpost.url}${path}`, { headers: { 'cache-control': 'max-age=0' } });
  assert.equal(count(path), 3);
  const cached = await h2(`${outpost.url}${path}`, { headers: { 'cache-control': 'only-if-cached' } });
  assert.equal(cached.status, 200);
  const missing = await h2(`${outpost.url}${fresh('never')}`, { headers: { 'cache-control': 'only-if-cached' } });
  assert.equal(missing.status, 504);
  // Nothing went forward (RFC 9211 §2.2: fwd says the request did, and why): no fwd member.
  assert.match(String(missing.headers['cache-status']), /^Outpost; detail=only-if-cached$/);
  const stale = await h2(`${outpost.url}${path}`, { headers: { 'cache-control': 'no-cache, only-if-cached' } });
  assert.equal(stale.status, 504);
  assert.match(String(stale.headers['cache-status']), /^Outpost; detail=only-if-cached$/);
  assert.equal(count(path), 3);
});

test('a response whose max-age directives contradict each other is treated as stale (§4.2.1)', async () => {
  const path = route(fresh('dup-cc'), cacheable('dup', 'max-age=3600, max-age=1'));
  await h2(`${outpost.url}${path}`);
  const second = await h2(`${outpost.url}${path}`);
  assert.match(String(second.headers['cache-status']), /fwd=stale/);
  assert.equal(count(path), 2);
});

test('heuristic freshness from Last-Modified (RFC 9111 §4.2.2)', async () => {
  const lastModified = new Date(Date.now() - 10 * 86_400_000).toUTCString();
  const path = route(fresh('heuristic'), (_req, res, n) => { res.writeHead(200, { 'last-modified': lastModified }); res.end(`h${n}`); });
  await h2(`${outpost.url}${path}`);
  const hit = await h2(`${outpost.url}${path}`);
  assert.equal(hit.body.toString(), 'h1');
  assert.equal(count(path), 1);
});

test('client conditionals and ranges are answered from the stored response', async () => {
  const path = route(fresh('cond'), (_req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"abc"', 'last-modified': 'Tue, 01 Sep 2026 00:00:00 GMT' });
    res.end(`0123456789 #${n}`);
  });
  await h2(`${outpost.url}${path}`);
  const inm = await h2(`${outpost.url}${path}`, { headers: { 'if-none-match': 'W/"abc"' } });
  assert.equal(inm.status, 304);
  assert.equal(inm.headers.etag, '"abc"');
  assert.equal(inm.body.length, 0);
  const ims = await h1(`${outpost.url}${path}`, { headers: { 'if-modified-since': 'Wed, 02 Sep 2026 00:00:00 GMT' } });
  assert.equal(ims.status, 304);
  const range = await h2(`${outpost.url}${path}`, { headers: { range: 'bytes=2-5' } });
  assert.equal(range.status, 206);
  assert.equal(range.body.toString(), '2345');
  assert.equal(range.headers['content-range'], 'bytes 2-5/13');
  const unsatisfiable = await h1(`${outpost.url}${path}`, { headers: { range: 'bytes=100-' } });
  assert.equal(unsatisfiable.status, 416);
  assert.equal(count(path), 1);
  // a conditional or ranged request on a miss fetches the full response, stores it, answers the client
  const other = route(fresh('cond-miss'), (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"x"' }); res.end('abcdef'); });
  const ranged = await h2(`${outpost.url}${other}`, { headers: { range: 'bytes=0-1' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.body.toString(), 'ab');
  assert.equal(seenFor(other)[0].headers.range, undefined);
  assert.equal((await h2(`${outpost.url}${other}`)).body.toString(), 'abcdef');
  assert.equal(count(other), 1);
  // partial responses from the origin are not stored
  const partial = route(fresh('partial'), (_req, res) => { res.writeHead(206, { 'cache-control': 'max-age=60', 'content-range': 'bytes 0-1/10' }); res.end('ab'); });
  await h2(`${outpost.url}${partial}`);
  await h2(`${outpost.url}${partial}`);
  assert.equal(count(partial), 2);
});

test('stale-while-revalidate: the stale response is served at once and revalidated once in the background', async () => {
  // The revalidation's answer is held until the clients have theirs (or for 10 s, failing the test rather than hanging it).
  const held: Array<() => void> = [];
  const release = () => { for (const send of held.splice(0)) send(); };
  // The revalidated answer is fresh for a minute: it was held while the clients were answered,
  // and that wait counts toward its age (RFC 9111 §4.2.3, response_delay), so with max-age=1 a
  // slow host could find it stale at once and revalidate it again.
  const path = route(fresh('swr'), (_req, res, n) => {
    const reply = () => { res.writeHead(200, { 'cache-control': `max-age=${n === 1 ? 1 : 60}, stale-while-revalidate=30` }); res.end(`swr #${n}`); };
    if (n === 1) reply();
    else held.push(reply);
  });
  await h2(`${outpost.url}${path}`);
  clock.advance(1100); // the stored response is now stale
  let waited = false;
  const giveUp = setTimeout(() => { waited = true; release(); }, 10_000);
  const [a, b] = await Promise.all([h2(`${outpost.url}${path}`), h1(`${outpost.url}${path}`)]);
  clearTimeout(giveUp);
  assert.equal(waited, false, 'served without waiting for the origin');
  assert.equal(a.body.toString(), 'swr #1');
  assert.equal(b.body.toString(), 'swr #1');
  assert.match(String(a.headers['cache-status']), /hit; ttl=-\d+; detail=stale-while-revalidate/);
  release();
  let latest = '';
  for (const deadline = Date.now() + 10_000; latest !== 'swr #2' && Date.now() < deadline; await sleep(10)) latest = (await h2(`${outpost.url}${path}`)).body.toString();
  assert.equal(latest, 'swr #2', 'the background revalidation stored its answer');
  assert.equal(count(path), 2, 'one background revalidation');
});

test('stale-if-error: a failing origin gets the stale response served; must-revalidate gets the error', async () => {
  const path = route(fresh('sie'), (_req, res, n) => {
    if (n > 1) { res.writeHead(503); return void res.end('down'); }
    res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=60' });
    res.end('still good');
  });
  await h2(`${outpost.url}${path}`);
  clock.advance(1100); // the stored response is now stale
  const stale = await h2(`${outpost.url}${path}`);
  assert.equal(stale.status, 200);
  assert.equal(stale.body.toString(), 'still good');
  assert.match(String(stale.headers['cache-status']), /fwd=stale; fwd-status=503; ttl=-\d+; detail=stale-if-error/);

  const strict = route(fresh('sie-strict'), (_req, res, n) => {
    if (n > 1) { res.writeHead(503); return void res.end('down'); }
    res.writeHead(200, { 'cache-control': 'max-age=1, must-revalidate, stale-if-error=60' });
    res.end('strict');
  });
  await h2(`${outpost.url}${strict}`);
  clock.advance(1100); // the stored response is now stale
  assert.equal((await h2(`${outpost.url}${strict}`)).status, 503);
});

test('stale-if-error with the origin stopped, and the configured grace period', async () => {
  const down = await startOrigin((_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=1', date: clock.dateHeader() }); res.end('graceful'); });
  const graceful = await startOutpost({ cache: { grace: '1m' }, sites: [{ hosts: ['*'], origin: down.url }] }, { now: clock.now });
  try {
    await h2(`${graceful.url}/g`);
    await down.close();
    clock.advance(1100); // the stored response is now stale
    const res = await h2(`${graceful.url}/g`);
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'graceful');
    assert.match(String(res.headers['cache-status']), /fwd=stale; fwd-status=502/);
  } finally {
    await graceful.close();
  }
});

test('collapsed forwarding: 100 concurrent misses make one origin request', async () => {
  // The origin answers once all 100 are at Outpost (its stats count the waiters), however slowly
  // a loaded machine opens the 50 HTTP/1.1 connections: every other request then joined the flight.
  let answer!: () => void;
  const released = new Promise<void>((resolve) => { answer = resolve; });
  const path = route(fresh('burst'), (_req, res, n) => {
    void released.then(() => { res.writeHead(200, { 'cache-control': 'max-age=60' }); res.end(`burst #${n}`); });
  });
  const coalesced = async (): Promise<number> => (await (await fetch(`${outpost.adminUrl}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as { coalesced: number }).coalesced;
  const before = await coalesced();
  const session = await h2session(outpost.url);
  const sent = Promise.all(Array.from({ length: 100 }, (_, i) => i % 2
    ? h2request(session, path)
    : h1(`${outpost.url}${path}`)));
  for (const deadline = Date.now() + 20_000; await coalesced() < before + 99;) {
    assert.ok(Date.now() < deadline, `99 requests waiting on the first one's fetch: ${await coalesced() - before}`);
    await sleep(10);
  }
  answer();
  const answers = await sent;
  session.close();
  assert.equal(count(path), 1);
  assert.ok(answers.every((a) => a.status === 200 && a.body.toString() === 'burst #1'));
  assert.equal(answers.filter((a) => /collapsed/.test(String(a.headers['cache-status']))).length, 99);
});

test('hit-for-miss: an uncacheable answer releases the waiters, and the next burst does not queue', async () => {
  // The second burst's answers are held until all ten are at the origin at once: requests queued
  // behind one another never get there together (then, after 10 s, the test fails rather than hangs).
  const held: Array<() => void> = [];
  let together = false;
  const path = route(fresh('hfm'), (_req, res, n) => {
    const reply = () => { res.writeHead(200, { 'cache-control': 'private' }); res.end(`private #${n}`); };
    if (n <= 10) return void setTimeout(reply, 300);
    held.push(reply);
    if (n < 20) return;
    together = true;
    for (const send of held.splice(0)) send();
  });
  const first = await Promise.all(Array.from({ length: 10 }, () => h2(`${outpost.url}${path}`)));
  assert.ok(first.every((a) => a.status === 200));
  assert.equal(count(path), 10, 'every waiter went to the origin itself');
  const giveUp = setTimeout(() => { for (const send of held.splice(0)) send(); }, 10_000);
  const second = await Promise.all(Array.from({ length: 10 }, () => h2(`${outpost.url}${path}`)));
  clearTimeout(giveUp);
  assert.ok(together, 'the ten requests were at the origin at once: no queueing behind one another');
  assert.match(String(second[0].headers['cache-status']), /fwd=bypass/);
});

test('unsafe methods invalidate the target URI and same-origin Location (RFC 9111 §4.4)', async () => {
  const path = route(fresh('inval'), (req, res, n) => {
    if (req.method === 'POST') {
      res.writeHead(201, { location: `${path}-other` });
      return void res.end('created');
    }
    res.writeHead(200, { 'cache-control': 'max-age=60' });
    res.end(`v${n}`);
  });
  const other = route(`${path}-other`, cacheable('other'));
  await h2(`${outpost.url}${path}`);
  await h2(`${outpost.url}${other}`);
  const post = await h2(`${outpost.url}${path}`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 201);
  assert.match(String(post.headers['cache-status']), /fwd=method/);
  await h2(`${outpost.url}${path}`);
  await h2(`${outpost.url}${other}`);
  assert.equal(seenFor(path).filter((r) => r.method === 'GET').length, 2);
  assert.equal(count(other), 2);
});

test('objects over maxObjectSize and truncated origin responses are never stored', async () => {
  const small = await startOutpost({ cache: { maxObjectSize: '1KB' }, sites: [{ hosts: ['*'], origin: origin.url }] });
  try {
    const big = route(fresh('big'), (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }); res.end(Buffer.alloc(4096, 1)); });
    const chunked = route(fresh('big-chunked'), (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }); res.write(Buffer.alloc(3000, 1)); res.end(Buffer.alloc(3000, 2)); });
    for (const path of [big, chunked]) {
      const a = await h2(`${small.url}${path}`);
      assert.ok(a.body.length > 1024);
      await h2(`${small.url}${path}`);
      assert.equal(count(path), 2, path);
    }
  } finally {
    await small.close();
  }
  const truncated = route(fresh('truncated'), (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '100' });
    res.write('only part');
    setTimeout(() => res.destroy(), 20);
  });
  await h2(`${outpost.url}${truncated}`).catch(() => undefined);
  await sleep(50);
  await h2(`${outpost.url}${truncated}`).catch(() => undefined);
  assert.equal(count(truncated), 2);
});

test('purge through the admin API: by URL (every variant), by tag, everything; bearer token required', async () => {
  const admin = async (body: unknown, token = TOKEN) => {
    const res = await fetch(`${outpost.adminUrl}/purge`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: await res.json() as Record<string, unknown> };
  };
  const byUrl = route(fresh('purge-url'), (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'accept-language' });
    res.end(`${req.headers['accept-language']} ${n}`);
  });
  await h2(`${outpost.url}${byUrl}`, { headers: { 'accept-language': 'en' } });
  await h2(`${outpost.url}${byUrl}`, { headers: { 'accept-language': 'fr' } });
  assert.equal((await admin({ url: `${outpost.url}${byUrl}` }, 'wrong-token-wrong-token')).status, 401);
  assert.deepEqual((await admin({ url: `${outpost.url}${byUrl}` })).json, { purged: 2 });
  await h2(`${outpost.url}${byUrl}`, { headers: { 'accept-language': 'en' } });
  assert.equal(count(byUrl), 3);

  const tagged = [fresh('tag-a'), fresh('tag-b'), fresh('tag-c')];
  route(tagged[0], cacheable('a', 'max-age=60', { 'cache-tag': 'product-1, list' }));
  route(tagged[1], cacheable('b', 'max-age=60', { 'surrogate-key': 'product-2 list' }));
  route(tagged[2], cacheable('c', 'max-age=60', { 'cache-tag': 'product-3' }));
  for (const path of tagged) await h2(`${outpost.url}${path}`);
  assert.deepEqual((await admin({ tag: 'list' })).json, { purged: 2 });
  for (const path of tagged) await h2(`${outpost.url}${path}`);
  assert.deepEqual(tagged.map(count), [2, 2, 1]);

  assert.ok(((await admin({ all: true })).json.purged as number) >= 1);
  await h2(`${outpost.url}${tagged[2]}`);
  assert.equal(count(tagged[2]), 2);
  assert.equal((await admin({ nothing: true })).status, 400);
  // A field the purge would not act on, or two targets, is refused rather than half done.
  assert.deepEqual(await admin({ url: `${outpost.url}${byUrl}`, tags: ['list'] }), { status: 400, json: { error: '"tags": not a purge field (url, tag, all, soft)' } });
  assert.deepEqual(await admin({ url: `${outpost.url}${byUrl}`, tag: 'list' }), { status: 400, json: { error: 'one of url, tag or all at a time, got url and tag' } });
});

describe('Redis store', { skip: redisSkipReason() }, () => {
  let redis: TestRedis;
  let shared: RunningOutpost[];
  before(async () => {
    redis = await startRedis();
    shared = [
      await startOutpost({ admin: { token: TOKEN }, cache: { store: redis.url }, sites: [{ hosts: ['*'], origin: origin.url }] }),
      await startOutpost({ admin: { token: TOKEN }, cache: { store: redis.url }, sites: [{ hosts: ['*'], origin: origin.url }] }),
    ];
  });
  after(async () => {
    for (const node of shared) await node.close();
    await redis.stop();
  });

  test('two nodes share one cache tier', async () => {
    const path = route(fresh('redis-shared'), cacheable('shared'));
    // the cache key is the URL clients use: same host name on both nodes
    assert.equal((await h2(`${shared[0].url}${path}`, { headers: { ':authority': 'shop.test' } })).body.toString(), 'shared #1');
    await sleep(50);
    const other = await h1(`${shared[1].url}${path}`, { headers: { host: 'shop.test' } });
    assert.equal(other.body.toString(), 'shared #1');
    assert.match(String(other.headers['cache-status']), /hit/);
    assert.equal(count(path), 1);
  });

  test('encoded variants are shared through Redis as raw bytes', async () => {
    const page = Buffer.from('<p>'.concat('shared variant '.repeat(400), '</p>'));
    const path = route(fresh('redis-br'), (_req, res) => { res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'max-age=60' }); res.end(page); });
    const host = { ':authority': 'variants.test', 'accept-encoding': 'br' };
    await h2(`${shared[0].url}${path}`, { headers: host }); // miss: streamed through the encoder, identity stored
    await h2(`${shared[0].url}${path}`, { headers: host }); // hit: br made once and kept
    await sleep(300); // the high-quality re-encode replaces it in the background
    const other = await h2(`${shared[1].url}${path}`, { headers: host });
    assert.equal(other.headers['content-encoding'], 'br');
    assert.equal(Buffer.compare(brotliDecompressSync(other.body), page), 0);
    assert.equal(count(path), 1);
  });

  test('a purge on one node drops the other node\'s in-process copy too (pub/sub)', async () => {
    const path = route(fresh('redis-purge'), cacheable('tiered'));
    const host = { ':authority': 'purge.test' };
    await h2(`${shared[0].url}${path}`, { headers: host });
    await sleep(50); // the store write completes just after the response
    // node 1 reads it from Redis and keeps a near copy
    assert.match(String((await h2(`${shared[1].url}${path}`, { headers: host })).headers['cache-status']), /hit/);
    const purged = await fetch(`${shared[0].adminUrl}/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ url: `https://purge.test${path}` }) });
    assert.deepEqual(await purged.json(), { purged: 1 });
    await sleep(100);
    const after = await h2(`${shared[1].url}${path}`, { headers: host });
    assert.equal(after.body.toString(), 'tiered #2');
    assert.equal(count(path), 2);
  });

  test('a record in the shared tier that is not a stored response reads as a miss: never a 500, never its fields sent', async () => {
    // Anyone who can write to Redis can write there: what another node reads back is input.
    const writer = createRedisStore({ url: redis.url });
    try {
      const poisons: Array<[string, unknown]> = [
        ['a status no response may carry', { status: 999 }],
        ['no fields', { headers: null }],
        ['a field value with a line break', { headers: { 'content-type': 'text/plain', 'x-split': 'a\r\nx-injected: 1' } }],
        ['a field name that is no token', { headers: { 'bad name': 'x' } }],
      ];
      for (const [what, poison] of poisons) {
        const path = route(fresh('redis-poison'), cacheable('clean'));
        const host = { ':authority': 'poison.test' };
        await h2(`${shared[0].url}${path}`, { headers: host });
        await sleep(50); // the store write completes just after the response
        const key = `o:https://poison.test${path}\n`;
        const stored = await writer.get<Record<string, unknown>>(key);
        assert.ok(stored, `${what}: node 0 stored the response`);
        await writer.set(key, { meta: { ...stored.meta, ...(poison as object) }, body: stored.body }, 60_000);
        // node 1 has no near copy: it reads Redis, refuses the record and asks the origin again
        for (const send of [h2, h1]) {
          const res = await send(`${shared[1].url}${path}`, { headers: send === h2 ? host : { host: 'poison.test' } });
          assert.equal(res.status, 200, what);
          assert.equal(res.headers['x-injected'], undefined, what);
          assert.match(res.body.toString(), /^clean #\d$/, what);
        }
        assert.ok(count(path) >= 2, `${what}: the origin was asked again`);
      }
    } finally {
      await writer.close();
    }
  });

  test('Redis killed mid-run: requests still get answers, and sharing resumes when it is back', async () => {
    const path = route(fresh('redis-down'), cacheable('resilient'));
    await h2(`${shared[0].url}${path}`);
    await redis.kill();
    const during = await Promise.all([h2(`${shared[0].url}${path}`), h1(`${shared[1].url}${path}`), h2(`${shared[1].url}${fresh('redis-down-new')}`)]);
    assert.ok(during.slice(0, 2).every((r) => r.status === 200 && r.body.toString().startsWith('resilient')));
    assert.equal(during[2].status, 404, 'a miss while Redis is down still reaches the origin');
    await redis.restart();
    const deadline = Date.now() + 8000;
    for (;;) {
      // stored through node 0, found by node 1: only possible through Redis
      const later = route(fresh('redis-back'), cacheable('back'));
      await h2(`${shared[0].url}${later}`, { headers: { ':authority': 'back.test' } });
      const other = await h2(`${shared[1].url}${later}`, { headers: { ':authority': 'back.test' } });
      if (/hit/.test(String(other.headers['cache-status']))) break;
      if (Date.now() > deadline) assert.fail('sharing did not resume after Redis came back');
      await sleep(200);
    }
  });
});
