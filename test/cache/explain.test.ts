import { test } from 'node:test';
import assert from 'node:assert/strict';
import { h2, startOrigin, startOutpost, testClock } from '../helpers/outpost.ts';

const TOKEN = 'explain-test-token-0123456789';

test('GET /explain: what is stored for a URL, where its lifetime comes from, its codings, stale windows, tags, why something was not stored, and what the next request gets', async () => {
  const clock = testClock();
  const html = `<!doctype html><p>${'explain '.repeat(300)}</p>`;
  const origin = await startOrigin((req, res) => {
    res.setHeader('date', clock.dateHeader());
    res.setHeader('content-type', 'text/html');
    switch (req.url) {
      case '/page':
        res.setHeader('cache-control', 'max-age=60, stale-while-revalidate=30');
        res.setHeader('etag', '"v1"');
        res.setHeader('cache-tag', 'product-42, home');
        res.end(html);
        return;
      case '/edge-only':
        res.setHeader('cache-control', 'no-store');
        res.setHeader('cdn-cache-control', 'max-age=600');
        res.end('edge');
        return;
      case '/cookie':
        res.setHeader('cache-control', 'max-age=60');
        res.setHeader('set-cookie', 'session=1');
        res.end('personal');
        return;
      case '/lang':
        res.setHeader('cache-control', 'max-age=60');
        res.setHeader('vary', 'Accept-Language');
        res.end(String(req.headers['accept-language']));
        return;
      default:
        res.statusCode = 404;
        res.end();
    }
  });
  const outpost = await startOutpost({ admin: { token: TOKEN }, sites: [{ hosts: ['*'], origin: origin.url }] }, { now: clock.now });
  const explain = async (url: string, extra = '') => {
    const res = await fetch(`${outpost.adminUrl}/explain?url=${encodeURIComponent(url)}${extra}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return { status: res.status, body: await res.json() as Record<string, any> };
  };
  const page = `${outpost.url}/page`;
  try {
    // Nothing fetched yet.
    const before = (await explain(page)).body;
    assert.equal(before.stored, false);
    assert.equal(before.next, 'miss');
    assert.equal(before.notStored.reason, null);

    // A miss streams the body through; the first hit encodes it once and keeps the Brotli body,
    // after the response: wait for it.
    await h2(`${outpost.url}/page`, { headers: { 'accept-encoding': 'br' } });
    await h2(`${outpost.url}/page`, { headers: { 'accept-encoding': 'br' } });
    let now = (await explain(page)).body;
    for (let i = 0; i < 100 && !(now.codings ?? []).some((c: any) => c.coding === 'br'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      now = (await explain(page)).body;
    }
    assert.equal(now.stored, true);
    assert.equal(now.key, `${outpost.url}/page`);
    assert.equal(now.status, 200);
    assert.deepEqual(now.freshness.source, 'max-age');
    assert.equal(now.freshness.field, 'cache-control');
    assert.equal(now.freshness.lifetime, 60);
    assert.equal(now.freshness.fresh, true);
    assert.deepEqual(now.stale, { mayServeStale: true, whileRevalidate: 30, ifError: 0, grace: 10 });
    assert.deepEqual(now.validators, { etag: '"v1"', lastModified: null });
    assert.deepEqual([...now.tags].sort(), ['home', 'product-42']);
    assert.equal(now.codings[0].coding, 'identity');
    assert.equal(now.codings[0].bytes, html.length);
    const br = now.codings.find((c: any) => c.coding === 'br');
    assert.ok(br.bytes > 0 && br.bytes < html.length / 5, JSON.stringify(now.codings));
    assert.match(br.token, /^br\d+$/);
    assert.equal(now.next, 'hit');
    // The request's own directives count: no-cache would make it revalidate.
    assert.equal((await explain(page, '&cache-control=no-cache')).body.next, 'revalidate');

    // Time passes (the injected clock): within stale-while-revalidate, then past it.
    clock.advance(70_000);
    assert.equal((await explain(page)).body.next, 'hit, then a background revalidation (stale-while-revalidate)');
    clock.advance(30_000);
    const stale = (await explain(page)).body;
    assert.equal(stale.next, 'revalidate');
    assert.equal(stale.revalidateBecause, 'stale');
    assert.equal(stale.freshness.fresh, false);

    // A targeted field (RFC 9213) gives the edge its lifetime while browsers get no-store.
    await h2(`${outpost.url}/edge-only`);
    const edge = (await explain(`${outpost.url}/edge-only`)).body;
    assert.equal(edge.stored, true);
    assert.equal(edge.freshness.field, 'cdn-cache-control');
    assert.equal(edge.freshness.lifetime, 600);

    // Not stored, and why.
    await h2(`${outpost.url}/cookie`);
    const cookie = (await explain(`${outpost.url}/cookie`)).body;
    assert.equal(cookie.stored, false);
    assert.equal(cookie.notStored.reason, 'set-cookie');
    assert.match(cookie.notStored.detail, /sets a cookie/);
    assert.equal(cookie.next, 'bypass (known uncacheable: straight to the origin)');

    // Vary: the request fields given as parameters pick the variant.
    await h2(`${outpost.url}/lang`, { headers: { 'accept-language': 'fr' } });
    const lang = `${outpost.url}/lang`;
    const fr = (await explain(lang, '&accept-language=fr')).body;
    assert.equal(fr.stored, true);
    assert.deepEqual(fr.variant, { vary: ['accept-language'], selectedBy: { 'accept-language': 'fr' } });
    const de = (await explain(lang, '&accept-language=de')).body;
    assert.equal(de.stored, false);
    assert.equal(de.miss, 'vary-miss');

    // Hostile input: a precise 400.
    assert.equal((await explain('not a url')).status, 400);
    assert.equal((await explain('ftp://x/y')).status, 400);
    assert.equal((await explain(page, '&bad%20name=1')).status, 400);
  } finally {
    await outpost.close();
    await origin.close();
  }
});
