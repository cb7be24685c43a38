import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { h1, h2, startOutpost, type RunningOutpost } from '../helpers/outpost.ts';
import { startRoutedOrigin, type RoutedOrigin } from '../helpers/routed-origin.ts';
import { OVERRIDE_FIELDS } from '../../src/origin/hygiene.ts';

/**
 * Request hygiene against cache poisoning: an origin that reflects override fields into its
 * (cacheable) answer must never see them through a caching route.
 */
let origin: RoutedOrigin;
let outpost: RunningOutpost;

before(async () => {
  origin = await startRoutedOrigin();
  outpost = await startOutpost({
    sites: [{
      hosts: ['*'],
      origin: origin.url,
      proxy: { requestHeaders: { set: { 'x-edge': 'outpost' }, remove: ['x-debug'] } },
      routes: [
        { path: '/uncached/', origin: origin.url, cache: { enabled: false } },
        { path: '/kept/', origin: origin.url, proxy: { requestHeaders: { keep: ['x-forwarded-prefix'] } } },
      ],
    }],
  });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

/** An origin that builds its page from whatever override it is given, as many frameworks do. */
const reflecting = (name: string) => origin.fresh(name, (req, res) => {
  const host = req.headers['x-forwarded-server'] ?? req.headers['x-host'] ?? 'good.example';
  res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/html' });
  res.end(`<script src="//${host}/app.js"></script>`);
});

test('override fields never reach the origin through a caching route, so a poisoned page is never stored', async () => {
  const p = reflecting('poison');
  const attack: Record<string, string> = Object.fromEntries(OVERRIDE_FIELDS.map((f) => [f, 'evil.example']));
  for (const client of [h2, h1]) {
    const res = await client(`${outpost.url}${p}`, { headers: { ...attack, 'accept-encoding': 'identity' } });
    assert.equal(res.body.toString(), '<script src="//good.example/app.js"></script>');
  }
  const seen = origin.seenFor(p)[0].headers;
  for (const field of OVERRIDE_FIELDS) assert.equal(seen[field], undefined, field);
});

test('on a route that does not cache they pass; `keep` lets a named one through; `set` and `remove` apply', async () => {
  const uncached = origin.route(`/uncached/p-${Date.now()}`, (_req, res) => { res.writeHead(200); res.end('x'); });
  await h2(`${outpost.url}${uncached}`, { headers: { 'x-original-url': '/admin', 'x-debug': '1' } });
  const seenUncached = origin.seenFor(uncached)[0].headers;
  assert.equal(seenUncached['x-original-url'], '/admin');
  assert.equal(seenUncached['x-debug'], undefined, 'the route inherits the site proxy settings');
  const kept = origin.route(`/kept/p-${Date.now()}`, (_req, res) => { res.writeHead(200, { vary: 'X-Forwarded-Prefix' }); res.end('x'); });
  await h1(`${outpost.url}${kept}`, { headers: { 'x-forwarded-prefix': '/shop', 'x-original-url': '/admin' } });
  const seenKept = origin.seenFor(kept)[0].headers;
  assert.equal(seenKept['x-forwarded-prefix'], '/shop');
  assert.equal(seenKept['x-original-url'], undefined);
  const p = reflecting('set');
  await h2(`${outpost.url}${p}`, { headers: { 'x-edge': 'client-says' } });
  assert.equal(origin.seenFor(p)[0].headers['x-edge'], 'outpost');
});

test('a GET or HEAD body is not forwarded, nor its framing', async () => {
  const p = origin.fresh('get-body', (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('ok'); });
  for (const client of [h1, h2]) {
    const res = await client(`${outpost.url}${p}`, { headers: { 'content-length': '5' }, body: 'hello' });
    assert.equal(res.status, 200);
  }
  for (const seen of origin.seenFor(p)) {
    assert.equal(seen.bodyLength, 0);
    assert.equal(seen.headers['content-length'], undefined);
  }
  const post = origin.fresh('post-body', (_req, res) => { res.writeHead(200); res.end('ok'); });
  await h2(`${outpost.url}${post}`, { method: 'POST', body: 'hello' });
  assert.equal(origin.seenFor(post)[0].bodyLength, 5, 'other methods keep theirs');
});
