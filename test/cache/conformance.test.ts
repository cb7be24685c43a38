import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { h1, h2, startOrigin, startOutpost, testClock, type RequestOptions, type RunningOutpost, type TestResponse } from '../helpers/outpost.ts';
import { startRoutedOrigin, type OriginRoute, type RoutedOrigin } from '../helpers/routed-origin.ts';

/**
 * The cache's protocol behaviour through the real listener, each test for a bug a CDN cannot ship
 * with (found on 6d04436 by hand and by an HTTP caching conformance suite), over HTTP/2 and
 * HTTP/1.1. The origin counts what reaches it; the cache's clock is moved by hand.
 */
type Route = OriginRoute;
const clock = testClock();
let origin: RoutedOrigin;
let outpost: RunningOutpost;
const TOKEN = 'conformance-admin-token-0123';

const count = (path: string) => origin.count(path);
const seenFor = (path: string) => origin.seenFor(path);
const path = (name: string, handler: Route) => origin.fresh(name, handler);
const clients: Array<[string, (url: string, options?: RequestOptions) => Promise<TestResponse>]> = [['h2', h2], ['h1', h1]];
const get = (p: string, options?: RequestOptions, client = h2) => client(`${outpost.url}${p}`, options);
const cacheStatus = (res: TestResponse) => String(res.headers['cache-status']);
const admin = async (body: unknown) => {
  const res = await fetch(`${outpost.adminUrl}/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() as Record<string, unknown> };
};

before(async () => {
  origin = await startRoutedOrigin({ date: clock.dateHeader });
  outpost = await startOutpost({ admin: { token: TOKEN }, sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/other-route/', origin: origin.url }] }] }, { now: clock.now });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

const answer = (headers: Record<string, string | string[]>, body = 'body', status = 200): Route => (_req, res, n) => {
  res.writeHead(status, headers);
  res.end(`${body} #${n}`);
};

test('directive names are case-insensitive: Private, No-Store and No-Cache are obeyed (privacy leak on 6d04436)', async () => {
  for (const [name, client] of clients) {
    const priv = path(`private-${name}`, answer({ 'cache-control': 'max-age=600, Private' }, 'alice'));
    await get(priv, {}, client);
    const second = await get(priv, {}, client);
    assert.equal(count(priv), 2, `${name}: a Private response is never served to someone else`);
    assert.match(cacheStatus(second), /fwd=bypass/);
    const noStore = path(`nostore-${name}`, answer({ 'cache-control': 'No-Store, max-age=600' }));
    await get(noStore, {}, client);
    await get(noStore, {}, client);
    assert.equal(count(noStore), 2, `${name}: No-Store`);
    const noCache = path(`nocache-${name}`, answer({ 'cache-control': 'No-Cache, max-age=600', etag: '"n"' }));
    await get(noCache, {}, client);
    const revalidated = await get(noCache, {}, client);
    assert.equal(count(noCache), 2, `${name}: No-Cache revalidates`);
    assert.match(cacheStatus(revalidated), /fwd=stale/);
  }
});

test('Cache-Control on two field lines is one list, not a 500', async () => {
  const p = path('two-lines', (_req, res, n) => {
    res.setHeader('cache-control', ['public', 'max-age=60']);
    res.writeHead(200);
    res.end(`two #${n}`);
  });
  for (const [, client] of clients) {
    const res = await get(p, {}, client);
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'two #1');
  }
  assert.equal(count(p), 1);
});

test('a 304 with another strong ETag is for another representation: the full response is fetched (§4.3.4), no 500', async (t) => {
  // max-age=1 against Dates of whole seconds: on a running clock the refetched response could be
  // a second old by the next request (CI: "fwd=stale" once). Held at a whole second, it is 0.
  t.after(clock.hold());
  const p = path('other-etag', (req, res, n) => {
    if (req.headers['if-none-match'] !== undefined) {
      res.writeHead(304, { etag: '"v2"', 'cache-control': 'max-age=60' });
      return void res.end();
    }
    res.writeHead(200, { etag: n === 1 ? '"v1"' : '"v2"', 'cache-control': 'max-age=1' });
    res.end(`version ${n}`);
  });
  assert.equal((await get(p)).body.toString(), 'version 1');
  clock.advance(2000);
  const res = await get(p, {}, h1);
  assert.equal(res.status, 200);
  assert.equal(res.body.toString(), 'version 3');
  assert.equal(res.headers.etag, '"v2"');
  assert.equal(seenFor(p)[1].headers['if-none-match'], '"v1"');
  assert.equal(seenFor(p)[2].headers['if-none-match'], undefined, 'the refetch is unconditional');
  assert.match(cacheStatus(await get(p)), /hit/, 'and the new response is stored');
});

test('the full fetch after a 304 for another representation is part of the validation: its failure serves the stored response within grace', async (t) => {
  t.after(clock.hold());
  for (const [name, client] of clients) {
    for (const failure of ['503', 'reset'] as const) {
      const p = path(`other-etag-fails-${failure}-${name}`, (req, res, n) => {
        if (n === 1) {
          res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=1' });
          return void res.end('version 1');
        }
        if (req.headers['if-none-match'] !== undefined) {
          res.writeHead(304, { etag: '"v2"', 'cache-control': 'max-age=60' });
          return void res.end();
        }
        // The unconditional refetch fails.
        if (failure === 'reset') return void res.socket?.destroy();
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('down');
      });
      assert.equal((await get(p, {}, client)).body.toString(), 'version 1');
      clock.advance(3000);
      const res = await get(p, {}, client);
      assert.equal(res.status, 200, `${name}, ${failure}: the stale copy, not the failure (a 502 or the 503 before)`);
      assert.equal(res.body.toString(), 'version 1', `${name}, ${failure}`);
      assert.match(cacheStatus(res), new RegExp(`fwd=stale; fwd-status=${failure === 'reset' ? 502 : 503}; ttl=-\\d+; detail=grace`), `${name}, ${failure}`);
      assert.equal(seenFor(p)[2].headers['if-none-match'], undefined, `${name}, ${failure}: the refetch was unconditional`);
    }
  }
});

test('background revalidation (stale-while-revalidate) refreshes the stored response', async () => {
  const p = path('swr-refresh', (req, res, n) => {
    if (req.headers['if-none-match'] === '"s"') {
      res.writeHead(304, { etag: '"s"', 'cache-control': 'max-age=60, stale-while-revalidate=60', 'x-generation': String(n) });
      return void res.end();
    }
    res.writeHead(200, { etag: '"s"', 'cache-control': 'max-age=1, stale-while-revalidate=60', 'x-generation': String(n) });
    res.end('swr');
  });
  await get(p);
  clock.advance(2000);
  const stale = await get(p);
  assert.match(cacheStatus(stale), /detail=stale-while-revalidate/);
  for (let i = 0; i < 50 && count(p) < 2; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 20));
  const refreshed = await get(p, {}, h1);
  assert.equal(refreshed.headers['x-generation'], '2');
  // fresh again for about 60 s (the revalidation's own delay counts as age under load, §4.2.3)
  assert.match(cacheStatus(refreshed), /Outpost; hit; ttl=(5\d|60)/);
});

test('unknown and WebDAV unsafe methods invalidate the target URI (RFC 9111 §4.4 MUST)', async () => {
  for (const [method, client] of [['PROPPATCH', h2], ['MKCOL', h1], ['LOCK', h2], ['M-SEARCH', h1], ['SUBSCRIBE', h2]] as const) {
    const p = path(`unsafe-${method}`, (req, res, n) => {
      if (req.method !== 'GET') { res.writeHead(200); return void res.end('done'); }
      res.writeHead(200, { 'cache-control': 'max-age=600' });
      res.end(`v${n}`);
    });
    await get(p);
    assert.equal((await get(p)).body.toString(), 'v1');
    assert.equal((await get(p, { method }, client)).status, 200);
    assert.equal((await get(p)).body.toString(), 'v3', `${method} invalidated the stored response`);
  }
});

test('Expires that is no valid HTTP-date means already expired (§5.3); Age that is no integer is ignored (§5.1)', async () => {
  const future = new Date(clock.now() + 3_600_000).toUTCString();
  for (const bad of [future.replace('GMT', 'UTC'), 'Mon, 30-Nov-2099 10:00:00 GMT', future.replace(/ (\d\d):/, (_m, h: string) => ` ${Number(h) % 10}:`)]) {
    const p = path('bad-expires', answer({ expires: bad }));
    await get(p);
    await get(p);
    assert.equal(count(p), 2, `Expires: ${bad}`);
  }
  const floatAge = path('float-age', answer({ 'cache-control': 'max-age=3600', age: '7200.0' }));
  await get(floatAge);
  assert.match(cacheStatus(await get(floatAge)), /hit/, 'Age: 7200.0 is ignored');
  const oldAge = path('old-age', answer({ 'cache-control': 'max-age=3600', age: '7200' }));
  await get(oldAge);
  await get(oldAge);
  assert.equal(count(oldAge), 2, 'Age: 7200 is older than max-age=3600');
});

test('an Age this cache ignores is not passed on either; of a list, the first value goes on (§5.1)', async () => {
  for (const [name, client] of clients) {
    for (const cc of ['no-store', 'max-age=60']) {
      const negative = path(`negative-age-${name}`, answer({ 'cache-control': cc, age: '-5' }));
      const res = await get(negative, {}, client);
      assert.equal(res.status, 200);
      assert.equal(res.headers.age, undefined, `${name}, ${cc}: Age -5 is no age`);
    }
    const listed = path(`listed-age-${name}`, (_req, res, n) => {
      res.setHeader('age', ['30', '5']);
      res.writeHead(200, { 'cache-control': 'no-store' });
      res.end(`listed #${n}`);
    });
    assert.equal((await get(listed, {}, client)).headers.age, '30', `${name}: two Age lines`);
  }
});

test('any final status with explicit freshness is stored (204, 299, 400, 500, 503, 599), and says so truthfully', async () => {
  for (const status of [204, 299, 400, 500, 503, 599]) {
    const p = path(`status-${status}`, answer({ 'cache-control': 'max-age=60' }, 'x', status));
    const first = await get(p);
    assert.equal(first.status, status);
    assert.match(cacheStatus(first), /; stored$/, `${status} stored`);
    const second = await get(p, {}, h1);
    assert.equal(second.status, status);
    assert.match(cacheStatus(second), /hit/, `${status} served from cache`);
    assert.equal(count(p), 1);
  }
  const heuristic = path('status-500-heuristic', answer({ 'last-modified': 'Mon, 02 Nov 2026 00:00:00 GMT' }, 'x', 500));
  await get(heuristic);
  await get(heuristic);
  assert.equal(count(heuristic), 2, 'no heuristic freshness for a 500');
});

test('If-Modified-Since is evaluated against Date when there is no Last-Modified (§4.3.2); If-Match and If-Unmodified-Since on hits', async () => {
  const p = path('ims-date', answer({ 'cache-control': 'max-age=600', etag: '"d"' }));
  const stored = await get(p);
  const date = String(stored.headers.date);
  for (const [, client] of clients) {
    assert.equal((await get(p, { headers: { 'if-modified-since': date } }, client)).status, 304);
    assert.equal((await get(p, { headers: { 'if-modified-since': 'Sat, 01 Jan 2000 00:00:00 GMT' } }, client)).status, 200);
    assert.equal((await get(p, { headers: { 'if-match': '"other"' } }, client)).status, 412);
    assert.equal((await get(p, { headers: { 'if-match': '"d"' } }, client)).status, 200);
    assert.equal((await get(p, { headers: { 'if-unmodified-since': 'Sat, 01 Jan 2000 00:00:00 GMT' } }, client)).status, 412);
  }
  assert.equal(count(p), 1);
});

test('a POST answered with a fresh representation of its own URI (Content-Location) serves later GETs (RFC 9110 §9.3.3)', async () => {
  const p = path('post-cacheable', (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-location': req.url ?? '' });
    res.end(`${req.method} #${n}`);
  });
  const post = await get(p, { method: 'POST', body: 'x' });
  assert.equal(post.body.toString(), 'POST #1');
  const hit = await get(p, {}, h1);
  assert.equal(hit.body.toString(), 'POST #1');
  assert.match(cacheStatus(hit), /hit/);
  // without Content-Location it is only an invalidation
  const q = path('post-plain', answer({ 'cache-control': 'max-age=600' }));
  await get(q, { method: 'POST', body: 'x' });
  await get(q);
  assert.equal(count(q), 2);
});

test('HEAD and conditional misses on responses that are not stored are answered from the one origin response', async () => {
  for (const [name, options, expected] of [['head', { method: 'HEAD' }, 200], ['inm', { headers: { 'if-none-match': '"u"' } }, 304], ['ims', { headers: { 'if-modified-since': 'Mon, 30 Nov 2099 00:00:00 GMT' } }, 304]] as const) {
    const p = path(`unstored-${name}`, answer({ etag: '"u"', 'last-modified': 'Mon, 02 Nov 2026 00:00:00 GMT', 'cache-control': 'private' }));
    const res = await get(p, options);
    assert.equal(res.status, expected, name);
    assert.equal(res.body.length, 0, name);
    assert.equal(count(p), 1, `${name}: the origin was asked once`);
  }
});

test('storeSetCookie stores the response without its cookie, public or not', async () => {
  const cookieOutpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, cache: { storeSetCookie: true } }] }, { now: clock.now });
  try {
    const p = path('set-cookie', answer({ 'cache-control': 'max-age=60', 'set-cookie': 'session=abc' }));
    const first = await h2(`${cookieOutpost.url}${p}`);
    assert.deepEqual(first.headers['set-cookie'], ['session=abc'], 'the client that caused the fetch gets its cookie');
    const second = await h1(`${cookieOutpost.url}${p}`);
    assert.equal(second.headers['set-cookie'], undefined, 'nobody else does');
    assert.match(cacheStatus(second), /hit/);
    assert.equal(count(p), 1);
  } finally {
    await cookieOutpost.close();
  }
});

test('heuristic freshness is never given to a response fetched with Cookie (cache deception)', async () => {
  const p = path('account.php/x.css', answer({ 'last-modified': 'Mon, 02 Nov 2026 00:00:00 GMT', 'content-type': 'text/css' }, 'alice-secret'));
  await get(p, { headers: { cookie: 'sid=alice' } });
  const anonymous = await get(p, {}, h1);
  assert.equal(anonymous.body.toString(), 'alice-secret #2', 'the anonymous client got its own response');
  assert.equal(count(p), 2);
});

test('Cache-Status: not "stored" when the object was too large; uri-miss (not vary-miss) after a purge; present on our own 502', async () => {
  const small = await startOutpost({ cache: { maxObjectSize: '1KB' }, sites: [{ hosts: ['*'], origin: origin.url }] }, { now: clock.now });
  try {
    const big = path('too-large', (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }); res.write(Buffer.alloc(3000, 97)); res.end(Buffer.alloc(3000, 98)); });
    const first = await h2(`${small.url}${big}`);
    assert.equal(first.body.length, 6000);
    assert.doesNotMatch(cacheStatus(first), /stored/);
    await h2(`${small.url}${big}`);
    assert.equal(count(big), 2);
  } finally {
    await small.close();
  }

  const tagged = path('purged-tag', answer({ 'cache-control': 'max-age=60', 'cache-tag': 'purge-me' }));
  await get(tagged);
  assert.deepEqual((await admin({ tag: 'purge-me' })).json, { purged: 1 });
  assert.match(cacheStatus(await get(tagged)), /fwd=uri-miss/);

  const dead = await startOutpost({ sites: [{ hosts: ['*'], origin: 'http://127.0.0.1:1' }] }, { now: clock.now });
  try {
    for (const [, client] of clients) {
      const res = await client(`${dead.url}/down`);
      assert.equal(res.status, 502);
      assert.match(cacheStatus(res), /^Outpost; fwd=uri-miss; detail=origin-error$/);
    }
  } finally {
    await dead.close();
  }
});

test('CDN-Cache-Control, Outpost-Cache-Control and Surrogate-Control govern this cache (RFC 9213); ours, Surrogate-Control and the purge tags never reach clients', async () => {
  const p = path('targeted', answer({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=600', 'cache-tag': 't1', 'surrogate-key': 'k1' }));
  for (const [, client] of clients) {
    const res = await get(p, {}, client);
    assert.equal(res.headers['cache-control'], 'no-store', 'browsers still get their own Cache-Control');
    assert.equal(res.headers['cdn-cache-control'], 'max-age=600', 'other CDNs in a chain act on it too (RFC 9213 §3)');
    for (const hidden of ['cache-tag', 'surrogate-key']) assert.equal(res.headers[hidden], undefined, hidden);
  }
  assert.equal(count(p), 1);
  const ours = path('targeted-ours', answer({ 'cache-control': 'max-age=600', 'outpost-cache-control': 'private' }));
  await get(ours);
  const second = await get(ours);
  assert.equal(count(ours), 2, 'Outpost-Cache-Control: private overrides Cache-Control for this cache');
  assert.equal(second.headers['outpost-cache-control'], undefined);
  // a strict Structured Field: a malformed CDN-Cache-Control is ignored and Cache-Control governs
  const malformed = path('targeted-malformed', answer({ 'cache-control': 'no-store', 'cdn-cache-control': 'max-age="600"' }));
  await get(malformed);
  await get(malformed);
  assert.equal(count(malformed), 2, 'a string max-age is no max-age (RFC 9213 §2.1)');
  // Surrogate-Control: only directives for us (or for everyone); max-age=N+M adds M seconds of stale-if-error
  const surrogate = path('surrogate', (req, res, n) => {
    res.writeHead(200, { 'cache-control': 'no-store', 'surrogate-control': 'max-age=600;outpost, no-store;other-cdn' });
    res.end(`${req.headers['surrogate-capability']} #${n}`);
  });
  const first = await get(surrogate);
  assert.equal(first.body.toString(), 'outpost="Surrogate/1.0" #1', 'Surrogate-Capability tells the origin we are here');
  const again = await get(surrogate, {}, h1);
  assert.match(cacheStatus(again), /hit/);
  assert.equal(again.headers['surrogate-control'], undefined);
});

test('purge reaches every route, hit-for-miss included; soft purge marks stale so the next request revalidates', async () => {
  // hit-for-miss learned through one route is forgotten by a purge of its URL
  let cacheable = false;
  const p = origin.route(`/other-route/flip-${Date.now()}`, (_req, res, n) => { res.writeHead(200, { 'cache-control': cacheable ? 'max-age=60' : 'private' }); res.end(`flip ${n}`); });
  await get(p);
  cacheable = true;
  assert.match(cacheStatus(await get(p)), /fwd=bypass/);
  await admin({ url: `${outpost.url}${p}` });
  await get(p);
  assert.match(cacheStatus(await get(p)), /hit/, 'after the purge the URL is cacheable again');

  const soft = path('soft', (req, res, n) => {
    if (req.headers['if-none-match'] === '"soft"') { res.writeHead(304, { etag: '"soft"', 'cache-control': 'max-age=600' }); return void res.end(); }
    res.writeHead(200, { etag: '"soft"', 'cache-control': 'max-age=600' });
    res.end(`soft ${n}`);
  });
  await get(soft);
  assert.deepEqual((await admin({ url: `${outpost.url}${soft}`, soft: true })).json, { purged: 1 });
  const after = await get(soft, {}, h1);
  assert.equal(after.body.toString(), 'soft 1', 'revalidated, not refetched');
  assert.match(cacheStatus(after), /fwd=stale; fwd-status=304/);
  assert.equal(seenFor(soft)[1].headers['if-none-match'], '"soft"');
  assert.equal((await admin({ all: true, soft: true })).status, 400);
});

test('Cache-Status on what is passed through (hit-for-miss): fwd=bypass with the origin\'s status, hidden fields left out; detail=origin-error on our own 502', async () => {
  let up = true;
  const api = await startOrigin((_req, res) => {
    if (!up) { res.socket?.destroy(); return; }
    res.writeHead(200, { 'cache-control': 'no-store', 'cache-tag': 'api', date: clock.dateHeader() });
    res.end('fresh answer');
  });
  const node = await startOutpost({ sites: [{ hosts: ['*'], origin: api.url }] }, { now: clock.now });
  try {
    for (const [name, client] of clients) {
      const learnt = await client(`${node.url}/api-${name}`);
      assert.match(cacheStatus(learnt), /^Outpost; fwd=uri-miss; fwd-status=200/, `${name}: the first answer teaches the cache the URI is uncacheable`);
      const passed = await client(`${node.url}/api-${name}`);
      assert.equal(passed.body.toString(), 'fresh answer');
      assert.equal(cacheStatus(passed), 'Outpost; fwd=bypass; fwd-status=200', `${name}: passed through`);
      assert.equal(passed.headers['cache-tag'], undefined, `${name}: Cache-Tag is for this cache only`);
    }
    up = false;
    for (const [name, client] of clients) {
      const failed = await client(`${node.url}/api-${name}`);
      assert.equal(failed.status, 502, name);
      assert.equal(cacheStatus(failed), 'Outpost; fwd=bypass; detail=origin-error', `${name}: the pass-through's failure`);
    }
    // The same through a pool of two (the attempts that may retry): every failure the client gets carries it.
    up = true;
    const pooled = await startOutpost({ sites: [{ hosts: ['*'], origin: { upstreams: [api.url, 'http://127.0.0.1:1'] } }] }, { now: clock.now });
    try {
      await h2(`${pooled.url}/api-pool`);
      const passed = await h2(`${pooled.url}/api-pool`);
      assert.equal(cacheStatus(passed), 'Outpost; fwd=bypass; fwd-status=200');
      up = false;
      for (const [name, client] of clients) {
        const failed = await client(`${pooled.url}/api-pool`);
        assert.equal(failed.status >= 500, true, `${name}: ${failed.status}`);
        assert.equal(cacheStatus(failed), 'Outpost; fwd=bypass; detail=origin-error', `${name}: the pool's failure`);
      }
    } finally {
      await pooled.close();
    }
  } finally {
    await node.close();
    await api.close();
  }
});

test('grace (10 s by default) serves stale while the origin is down; must-revalidate gets 504, not 502', async () => {
  let up = true;
  const flaky = await startOrigin((_req, res) => {
    if (!up) { res.socket?.destroy(); return; }
    res.writeHead(200, { 'cache-control': _req.url === '/strict' ? 'max-age=1, must-revalidate' : 'max-age=1', date: clock.dateHeader() });
    res.end('cached copy');
  });
  const node = await startOutpost({ sites: [{ hosts: ['*'], origin: flaky.url }] }, { now: clock.now });
  try {
    await h2(`${node.url}/lenient`);
    await h2(`${node.url}/strict`);
    up = false;
    clock.advance(3000);
    for (const [name, client] of clients) {
      const lenient = await client(`${node.url}/lenient`);
      assert.equal(lenient.status, 200);
      assert.equal(lenient.body.toString(), 'cached copy');
      assert.match(cacheStatus(lenient), /fwd=stale; fwd-status=502; ttl=-\d+; detail=grace/);
      assert.ok(Number(lenient.headers.age) >= 3, `its Age says how old it is (RFC 9111 §5.1): ${lenient.headers.age}`);
      const strict = await client(`${node.url}/strict`);
      assert.equal(strict.status, 504, `${name}: ${cacheStatus(strict)}: ${strict.body}`);
      assert.match(cacheStatus(strict), /detail=origin-error/);
    }
    clock.advance(20_000);
    assert.equal((await h2(`${node.url}/lenient`)).status, 502, 'past the grace period');
  } finally {
    await node.close();
    await flaky.close();
  }
});

test('must-revalidate with the origin down: the requests that waited on the failed validation get 504 too, not 502 (RFC 9111 §5.2.2.2)', async () => {
  // The origin holds the validation until the other requests are waiting on it (the stats count
  // them), then drops the connection: all of them share that one failure.
  let up = true;
  let drop!: () => void;
  const dropped = new Promise<void>((resolve) => { drop = resolve; });
  const flaky = await startOrigin((req, res) => {
    if (!up) { void dropped.then(() => req.socket.destroy()); return; }
    res.writeHead(200, { 'cache-control': 'max-age=1, must-revalidate', date: clock.dateHeader() });
    res.end('cached copy');
  });
  const token = 'conformance-admin-token-0123';
  const node = await startOutpost({ admin: { token }, sites: [{ hosts: ['*'], origin: flaky.url }] }, { now: clock.now });
  const coalesced = async () => (await (await fetch(`${node.adminUrl}/stats`, { headers: { authorization: `Bearer ${token}` } })).json() as { coalesced: number }).coalesced;
  try {
    assert.equal((await h2(`${node.url}/strict`)).status, 200);
    up = false;
    clock.advance(3000);
    const answers = Promise.all([h2(`${node.url}/strict`), h1(`${node.url}/strict`), h2(`${node.url}/strict`)]);
    for (const deadline = Date.now() + 10_000; await coalesced() < 2;) {
      assert.ok(Date.now() < deadline, 'two requests waiting on the first one\'s validation');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    drop();
    for (const answer of await answers) {
      assert.equal(answer.status, 504, `${answer.headers['cache-status']}: ${answer.body}`);
      assert.match(cacheStatus(answer), /fwd=stale.*detail=origin-error/);
    }
  } finally {
    drop();
    await node.close();
    await flaky.close();
  }
});
