import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import type { ServerResponse } from 'node:http';
import { h1, startOrigin, startOutpost, testCa } from '../helpers/outpost.ts';
import { manualTimers } from '../helpers/timers.ts';
import { until } from '../helpers/wait.ts';

/**
 * limits.sendTimeout is about the client (nginx's send_timeout): a response its client takes
 * nothing of. An origin that goes quiet half-way through a body leaves nothing queued for the
 * client, and what ends such a wait is proxy.bodyTimeout (nginx's proxy_read_timeout). Until the
 * send watch looked at what is queued per connection (idle-watch.ts socketWritesWatched,
 * h2-stalls.ts), a per-response watch counted the bytes handed on, and cut such a response off
 * after sendTimeout as if its client had stalled.
 */

const SEND_TIMEOUT = 20_000;
const STEP = SEND_TIMEOUT / 4; // the send watch looks every quarter of sendTimeout

test('an origin quiet for longer than sendTimeout (within proxy.bodyTimeout) is not a stalled client: the response goes on, over HTTP/2 and HTTP/1.1', async () => {
  const waiting: ServerResponse[] = [];
  const origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
    res.write(`first part of ${req.url};`);
    waiting.push(res);
  });
  const timers = manualTimers();
  const outpost = await startOutpost({
    listen: { http: 0, httpMode: 'serve' },
    limits: { sendTimeout: '20s' },
    proxy: { bodyTimeout: '10m' },
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url }],
  }, { timers });
  const client = connect(outpost.url, { ca: await testCa() });
  try {
    await once(client, 'connect');
    const overH2 = (async () => {
      const stream = client.request({ ':path': '/h2' });
      let reset = false;
      stream.on('error', () => { reset = true; });
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(stream, 'close');
      return { reset, body: Buffer.concat(chunks).toString() };
    })();
    const overHttps = h1(`${outpost.url}/https`).then((res) => res.body.toString(), (err: Error) => `failed: ${err.message}`);
    const overPlain = h1(`http://127.0.0.1:${outpost.httpPort}/plain`).then((res) => res.body.toString(), (err: Error) => `failed: ${err.message}`);
    await until(() => waiting.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the first parts reach the clients
    // Twice sendTimeout of silence from the origin, the watch looking every quarter.
    for (let i = 0; i < 8; i++) {
      timers.advance(STEP);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const res of waiting) res.end('second part');
    assert.deepEqual(await overH2, { reset: false, body: 'first part of /h2;second part' });
    assert.equal(await overHttps, 'first part of /https;second part');
    assert.equal(await overPlain, 'first part of /plain;second part');
  } finally {
    client.close();
    for (const res of waiting) if (!res.writableEnded) res.end();
    await outpost.close();
    await origin.close();
  }
});

test('proxy.bodyTimeout cuts off an origin quiet between two chunks for longer; 0 sets no limit (a long-lived stream\'s route)', async () => {
  const origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
    res.write('first;');
    // undici's own timers: real time, and coarse (a 200 ms limit fires within about a second).
    setTimeout(() => res.end('second'), 1800);
  });
  const outpost = await startOutpost({
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: origin.url, routes: [
      { path: '/limited/', origin: origin.url, proxy: { bodyTimeout: '200ms' } },
      { path: '/unlimited/', origin: origin.url, proxy: { bodyTimeout: 0 } },
    ] }],
  });
  try {
    const cut = await h1(`${outpost.url}/limited/x`).then((res) => res.body.toString(), (err: Error) => `failed: ${err.message}`);
    assert.notEqual(cut, 'first;second', 'cut off after 200 ms of silence (undici: within about a second)');
    assert.equal((await h1(`${outpost.url}/unlimited/x`)).body.toString(), 'first;second');
  } finally {
    await outpost.close();
    await origin.close();
  }
});
