import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumSkipReason } from '../helpers/chromium.ts';
import { h2, startOrigin } from '../helpers/outpost.ts';
import { spawnOutpost, writeClusterConfig } from '../helpers/process.ts';
import { createFeed, dashboardView, latencyBucket, mergeSnapshots, percentile, LATENCY_BOUNDS_MS } from '../../src/observability/feed.ts';
import { responseEndChannel } from '../../src/observability/channels.ts';
import { cacheResult } from '../../src/observability/cache-result.ts';

const TOKEN = 'dashboard-test-token-0123456789';

test('feed: the missed URLs stay bounded; when full, the least missed half goes and the most missed stay', () => {
  const feed = createFeed(() => 1_000_000_000_000);
  const miss = (host: string, target: string) => responseEndChannel.publish({
    request: { method: 'GET', target, host, remoteAddress: '127.0.0.1', httpVersion: '2', headers: {}, startedAt: 0n },
    status: 200, headers: {}, bytes: 10, durationMs: 1, outcome: 'ok', cache: 'bypass',
  });
  try {
    for (let i = 0; i < 5; i++) miss('a.test', '/hot');
    for (let i = 0; i < 3; i++) miss('b.test', '/warm');
    // 1,000 URLs in all, the limit: 498 missed twice and 500 once, over two hosts.
    for (let i = 0; i < 498; i++) { miss('a.test', `/twice/${i}`); miss('a.test', `/twice/${i}`); }
    for (let i = 0; i < 500; i++) miss(i % 2 === 0 ? 'a.test' : 'b.test', `/once/${i}`);
    // The 1,001st: the least missed half (every once-missed URL) goes. (The snapshot shows the 50
    // most missed: these are missed often enough to be among them.)
    for (let i = 0; i < 3; i++) miss('c.test', '/new');
    for (let i = 0; i < 3; i++) miss('b.test', '/once/1');
    for (let i = 0; i < 2; i++) miss('a.test', '/twice/7');
  } finally {
    feed.close();
  }
  const missed = new Map(feed.snapshot().missed);
  assert.equal(missed.get('a.test/hot'), 5);
  assert.equal(missed.get('b.test/warm'), 3);
  assert.equal(missed.get('c.test/new'), 3);
  assert.equal(missed.get('b.test/once/1'), 3, 'forgotten, counted again from one');
  assert.equal(missed.get('a.test/twice/7'), 4, 'kept');
  // A long URL is cut at 200 characters (host and target together).
  const long = createFeed(() => 1_000_000_000_000);
  try { miss('l.test', `/${'x'.repeat(300)}`); } finally { long.close(); }
  assert.deepEqual(long.snapshot().missed, [[`l.test/${'x'.repeat(193)}`, 1]]);
});

test('feed: latency percentiles from buckets; snapshots of several processes add up', () => {
  assert.equal(latencyBucket(0.2), 0);
  assert.equal(latencyBucket(3), 3);
  assert.equal(latencyBucket(60_000), LATENCY_BOUNDS_MS.length);
  const latency = new Array(LATENCY_BOUNDS_MS.length + 1).fill(0);
  latency[1] = 98; // ≤ 1 ms
  latency[7] = 2; // ≤ 100 ms
  assert.equal(percentile(latency, 0.5), 1);
  assert.equal(percentile(latency, 0.99), 100);

  let now = 1_000_000_000_000;
  const a = createFeed(() => now);
  const publish = (status: number, cacheStatus: string | undefined, target: string) => responseEndChannel.publish({
    request: { method: 'GET', target, host: 'example.com', remoteAddress: '127.0.0.1', httpVersion: '2', headers: {}, startedAt: 0n },
    status, headers: cacheStatus ? { 'cache-status': cacheStatus } : {}, bytes: 100, durationMs: 0.7, outcome: 'ok', cache: cacheResult(cacheStatus),
  });
  try {
    publish(200, 'Outpost; hit; ttl=5', '/a');
    publish(200, 'Outpost; fwd=uri-miss; fwd-status=200', '/b');
    publish(200, 'Outpost; fwd=uri-miss; fwd-status=200', '/b');
    publish(502, 'Outpost; fwd=uri-miss; detail=origin-error', '/c');
  } finally {
    a.close();
  }
  const one = a.snapshot();
  const merged = mergeSnapshots([one, one]);
  assert.equal(merged.seconds.length, 1);
  assert.equal(merged.seconds[0].requests, 8);
  assert.deepEqual(merged.missed[0], ['example.com/b', 4]);
  assert.equal(merged.errors.length, 2);
  const view = dashboardView(merged, { stats: { hits: 2 }, upstreams: [], workers: 2 }, now);
  assert.equal(view.hitRatio, 2 / 8);
  assert.equal(view.savedByCache, 200);
  assert.equal(view.p50, 1);
  assert.match(view.errors[0].what, /^502 GET example\.com\/c/);
  now += 400_000; // past the window: nothing counts any more
  assert.equal(dashboardView(merged, { stats: {}, upstreams: [], workers: 2 }, now).requests, 0);
});

test('dashboard: the token opens it once (HttpOnly cookie); the page renders in headless Chromium and shows the figures of /stats', { skip: chromiumSkipReason() }, async () => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'max-age=600');
    res.setHeader('content-type', 'text/html');
    res.end(`<p>${'dashboard '.repeat(200)} ${req.url}</p>`);
  });
  const { dir, file } = writeClusterConfig('dashboard', [
    `admin: { listen: "127.0.0.1:0", token: ${TOKEN} }`,
    `sites: [{ hosts: ["*"], origin: ${JSON.stringify(origin.url)} }]`,
  ]);
  const outpost = spawnOutpost(['-c', file]);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const url = (await outpost.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)\//, 30_000))[1];
    const admin = (await outpost.waitFor(/admin API on (http:\/\/127\.0\.0\.1:\d+)\//))[1];
    const ca = readFileSync(join(dir, 'cert', 'dev-cert.pem'), 'utf8');
    // Traffic: misses, then hits, a few URLs.
    for (let round = 0; round < 3; round++) for (const path of ['/', '/news', '/shop?item=1']) await h2(`${url}${path}`, { ca, headers: { 'accept-encoding': 'br' } });

    // Without the token or the cookie: refused. With a wrong token: refused.
    assert.equal((await fetch(`${admin}/dashboard`)).status, 401);
    assert.equal((await fetch(`${admin}/dashboard/feed`)).status, 401);
    assert.equal((await fetch(`${admin}/dashboard?token=wrong-token-0123456789`, { redirect: 'manual' })).status, 401);
    const opened = await fetch(`${admin}/dashboard?token=${TOKEN}`, { redirect: 'manual' });
    assert.equal(opened.status, 303);
    assert.equal(opened.headers.get('location'), '/dashboard');
    const cookie = opened.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^outpost_dashboard=[\w-]+; HttpOnly; SameSite=Strict; Path=\/dashboard/);
    assert.ok(!cookie.includes(TOKEN), 'the cookie does not carry the token');
    // The cookie opens the dashboard, never the write routes.
    const jar = cookie.split(';')[0];
    assert.equal((await fetch(`${admin}/purge`, { method: 'POST', headers: { cookie: jar }, body: '{"all":true}' })).status, 401);

    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(String(err)));
    page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()); });
    await page.goto(`${admin}/dashboard?token=${TOKEN}`);
    assert.equal(new URL(page.url()).search, '', 'the token left the address bar');
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
    const shown = {
      hits: await page.textContent('#cache-hits'),
      misses: await page.textContent('#cache-misses'),
      hitRatio: await page.textContent('#hit-ratio'),
      status: await page.textContent('#status'),
      missed: await page.textContent('#missed'),
      upstreams: await page.textContent('#upstreams'),
      chart: await page.getAttribute('#chart-rps polyline', 'points'),
    };
    const stats = await (await fetch(`${admin}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Record<string, number>;
    assert.equal(shown.hits, String(stats.hits), 'the page shows the hits /stats counts');
    assert.equal(shown.misses, String(stats.misses));
    assert.equal(stats.hits + stats.misses, 9);
    assert.match(shown.hitRatio ?? '', /^\d+\.\d %$/);
    assert.match(shown.status ?? '', /^2 workers/);
    assert.match(shown.missed ?? "", /\d+ × 127\.0\.0\.1\/news/);
    assert.match(shown.upstreams ?? '', new RegExp(`${origin.url.replace(/\./g, '\\.')} up`));
    assert.ok((shown.chart ?? '').split(' ').length > 10, 'the chart is drawn');
    assert.deepEqual(problems, [], 'no script errors, nothing the CSP blocked');
    if (process.env.OUTPOST_DASHBOARD_SCREENSHOT) {
      await page.setViewportSize({ width: 1100, height: 760 });
      await page.screenshot({ path: process.env.OUTPOST_DASHBOARD_SCREENSHOT });
    }
  } finally {
    await browser.close();
    await outpost.stop();
    await origin.close();
  }
});
