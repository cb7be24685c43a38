import { test } from 'node:test';
import assert from 'node:assert/strict';
import { h1, h2request, h2session, startOrigin } from '../helpers/outpost.ts';
import { refusedPort } from '../helpers/refused-port.ts';
import { validateConfig } from '../../src/config/load.ts';
import { startInstance } from '../../src/runtime/instance.ts';
import { nodeMetrics } from '../../src/runtime/serve.ts';
import { startAdmin } from '../../src/observability/admin.ts';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TOKEN = 'metrics-test-token-0123456789';

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}


test('GET /metrics: requests by site, route, status class and cache result; cache, origin, compression, TLS and process metrics; no URL labels', async () => {
  const html = `<!doctype html><p>${'metrics '.repeat(400)}</p>`;
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'max-age=60');
    res.setHeader('content-type', 'text/html');
    res.end(req.url?.startsWith('/page') ? html : 'x');
  });
  const dead = `http://127.0.0.1:${await refusedPort()}`;
  const instance = await startInstance(validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-metrics-cert-')) },
    sites: [
      { hosts: ['down.test'], origin: dead },
      { hosts: ['*'], origin: origin.url, routes: [{ path: '/static/', static: 'public' }] },
    ],
  }));
  const metrics = await nodeMetrics(instance);
  const admin = await startAdmin('127.0.0.1:0', TOKEN, {
    purge: async () => 0, stats: () => ({}), metrics: () => metrics.text(),
  });
  const base = `https://localhost:${instance.running.httpsPort}`;
  try {
    const cert = readFileSync(join(instance.config().tls.devCertDir, 'dev-cert.pem'), 'utf8');
    const session = await h2session(base, { ca: cert });
    assert.equal((await h2request(session, '/page', { headers: { 'accept-encoding': 'br' } })).status, 200); // miss
    for (let i = 0; i < 2; i++) assert.equal((await h2request(session, '/page', { headers: { 'accept-encoding': 'br' } })).status, 200); // hits
    for (let i = 0; i < 30; i++) await h2request(session, `/other?n=${i}`); // 30 URLs, 30 misses
    assert.equal((await h2request(session, '/static/index.html')).status, 200);
    assert.equal((await h2request(session, '/x', { headers: { host: 'down.test' } })).status, 502);
    session.close();
    await h1(`${base}/page`, { ca: cert });

    const res = await fetch(`http://127.0.0.1:${admin.port}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();

    assert.equal(sample(text, 'outpost_requests_total{site="*",route="/",status_class="2xx",cache="miss"}'), 31);
    assert.equal(sample(text, 'outpost_requests_total{site="*",route="/",status_class="2xx",cache="hit"}'), 3);
    assert.equal(sample(text, 'outpost_requests_total{site="*",route="/static/",status_class="2xx",cache="none"}'), 1);
    assert.equal(sample(text, 'outpost_requests_total{site="down.test",route="/",status_class="5xx",cache="miss"}'), 1);
    assert.equal(sample(text, 'outpost_cache_hits_total'), 3);
    assert.equal(sample(text, 'outpost_cache_misses_total'), 32);
    assert.equal(sample(text, 'outpost_cache_stores_total'), 31);
    assert.ok(sample(text, 'outpost_cache_size_bytes')! > html.length);
    const slabs = (state: string) => sample(text, `outpost_cache_slab_bytes{state="${state}"}`);
    assert.ok(slabs('allocated')! >= slabs('held')! && slabs('held')! > html.length, text);
    assert.ok(Number.isFinite(slabs('spare')), 'the spare slabs the process keeps are shown (none or some, as V8 has collected)');
    assert.equal(sample(text, 'outpost_cache_evictions_total'), 0);
    assert.equal(sample(text, `outpost_origin_requests_total{upstream="${origin.url}",status_class="2xx"}`), 31);
    assert.ok(sample(text, `outpost_origin_bytes_total{upstream="${origin.url}"}`)! >= html.length + 30);
    assert.ok(sample(text, `outpost_origin_errors_total{upstream="${dead}",code="ECONNREFUSED"}`)! >= 1, text);
    assert.equal(sample(text, `outpost_upstream_up{upstream="${dead}"}`), 0);
    assert.equal(sample(text, `outpost_upstream_up{upstream="${origin.url}"}`), 1);
    // Brotli on the hits: identity bytes in, fewer bytes out.
    const brIn = sample(text, 'outpost_compression_bytes_in_total{coding="br"}')!;
    const brOut = sample(text, 'outpost_compression_bytes_out_total{coding="br"}')!;
    assert.ok(brIn >= 3 * html.length && brOut > 0 && brOut < brIn / 5, `${brIn} in, ${brOut} out`);
    assert.equal(sample(text, 'outpost_request_duration_seconds_count{cache="hit"}'), 3);
    assert.ok(sample(text, 'outpost_response_bytes_total{cache="miss"}')! > 0);
    assert.ok(sample(text, 'outpost_tls_handshakes_total{protocol="h2"}')! >= 1);
    assert.ok(sample(text, 'outpost_tls_handshakes_total{protocol="http/1.1"}')! >= 1);
    assert.ok(sample(text, 'outpost_open_connections') !== undefined);
    assert.ok(sample(text, 'outpost_open_h2_streams') !== undefined);
    assert.equal(sample(text, 'outpost_open_websockets'), 0);
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag');
    // Bounded: no URL ever becomes a label.
    assert.doesNotMatch(text, /other\?n=|\/page"/);
    assert.equal(text.split('\n').filter((l) => l.startsWith('outpost_requests_total{')).length, 4);
  } finally {
    await admin.close();
    metrics.close();
    await instance.close();
    await origin.close();
  }
});

test('outpost_open_h2_streams: a stream counts while its request is in progress, and not once it has closed', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => { release = resolve; });
  const origin = await startOrigin(async (_req, res) => {
    await held;
    res.setHeader('cache-control', 'no-store');
    res.end('late');
  });
  const instance = await startInstance(validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-metrics-cert-')) },
    sites: [{ hosts: ['*'], origin: origin.url }],
  }));
  const metrics = await nodeMetrics(instance);
  const openStreams = async () => sample(await metrics.text(), 'outpost_open_h2_streams');
  const until = async (value: number) => {
    for (let i = 0; i < 200 && await openStreams() !== value; i++) await new Promise((resolve) => setImmediate(resolve));
    return openStreams();
  };
  try {
    const cert = readFileSync(join(instance.config().tls.devCertDir, 'dev-cert.pem'), 'utf8');
    const session = await h2session(`https://localhost:${instance.running.httpsPort}`, { ca: cert });
    assert.equal(await openStreams(), 0);
    const pending = h2request(session, '/slow');
    assert.equal(await until(1), 1, 'the request waits on the origin');
    release();
    assert.equal((await pending).status, 200);
    assert.equal(await until(0), 0, 'closed with its response');
    for (let i = 0; i < 3; i++) assert.equal((await h2request(session, `/again-${i}`)).status, 200);
    assert.equal(await until(0), 0, 'each of them closed too');
    session.close();
  } finally {
    metrics.close();
    await instance.close();
    await origin.close();
  }
});
