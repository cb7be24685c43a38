import { test, before, after } from 'node:test';
import { createServer } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { h1, h2, h2session, h2request, startOutpost, testCa, testClock, type RunningOutpost } from '../helpers/outpost.ts';
import { startRoutedOrigin, type OriginRoute, type RoutedOrigin } from '../helpers/routed-origin.ts';
import { frontCounters } from '../../src/server/counters.ts';
import { createReadyReplies } from '../../src/server/replies.ts';
import type { Context } from '../../src/pipeline/context.ts';
import type { HighQualityEncoder } from '../../src/compress/fast-variants.ts';
import { encodeInBackground } from '../../src/compress/background.ts';
import { htmlPage } from '../compress/support.ts';
import { responseEndChannel, type ResponseEndEvent } from '../../src/observability/channels.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Replies kept ready (src/server/replies.ts): a fresh hit or a kept file is sent again without the
 * chain, and only while the chain would answer the same. `ready()` counts what was sent that way
 * (this file runs in its own process, so the counter is this file's).
 */
let origin: RoutedOrigin;
let outpost: RunningOutpost;
let limited: RunningOutpost;
let tmp: string;
const clock = testClock();
const TOKEN = 'test-admin-token-0123456789';

const ready = () => frontCounters.readyReplies;
/** How many of `send`'s responses came from a kept reply. */
async function readyDuring<T>(send: () => Promise<T>): Promise<{ result: T; ready: number }> {
  const before = ready();
  const result = await send();
  return { result, ready: ready() - before };
}

/**
 * Sends until a response comes from a kept reply (at most 5 s): a coded reply is kept only once its
 * uses are no longer counted, when the Brotli 11 upgrade that the fast body's second hit queues is
 * waiting or has replaced it. Answers how many were sent.
 */
async function untilReady(send: () => Promise<unknown>): Promise<number> {
  const deadline = Date.now() + 5000;
  for (let sent = 1; ; sent++) {
    if ((await readyDuring(send)).ready === 1) return sent;
    if (Date.now() > deadline) throw new Error('no kept reply');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const cacheable = (body: string, cc = 'max-age=60'): OriginRoute => (_req, res, n) => {
  res.writeHead(200, { 'content-type': 'text/html', 'cache-control': cc, etag: `"v${n}"` });
  res.end(`${body} #${n} ${'<p>filler</p>'.repeat(100)}`);
};

/** A cacheable URL whose reply is kept: stored by its miss, kept by a chain hit, then sent ready (asserted). */
async function keptUrl(name: string, route: OriginRoute, send: typeof h2 = h2): Promise<{ path: string; url: string }> {
  const path = origin.fresh(name, route);
  const url = `${outpost.url}${path}`;
  await send(url); // miss: stored
  await send(url); // hit through the chain: kept
  assert.equal((await readyDuring(() => send(url))).ready, 1, 'sent from the kept reply');
  return { path, url };
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'outpost-replies-'));
  writeFileSync(join(tmp, 'page.txt'), 'first version\n');
  origin = await startRoutedOrigin({ date: clock.dateHeader });
  outpost = await startOutpost({
    admin: { token: TOKEN },
    cache: { grace: '0s' },
    sites: [{ hosts: ['*'], origin: origin.url, routes: [{ path: '/files/', static: tmp }] }],
  }, { now: clock.now });
  limited = await startOutpost({
    sites: [{ hosts: ['*'], origin: origin.url, guard: { rateLimit: { rate: '1/h', burst: 3 } } }],
  }, { now: clock.now });
});

after(async () => {
  await outpost.close();
  await limited.close();
  await origin.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('a fresh hit is sent again without the chain, with its own Age and Cache-Status each time, on both protocols', async (t) => {
  // Ages are compared to the second: the cache's clock moves only when the test moves it.
  t.after(clock.hold());
  const path = origin.fresh('ready', cacheable('hello'));
  const url = `${outpost.url}${path}`;
  assert.equal((await h2(url)).status, 200); // miss: stored
  const hit = await readyDuring(() => h2(url)); // a hit through the chain: kept
  assert.equal(hit.ready, 0);
  const again = await readyDuring(() => h2(url));
  assert.equal(again.ready, 1, 'sent from the kept reply');
  assert.equal(again.result.body.toString(), hit.result.body.toString());
  assert.equal(again.result.headers.etag, '"v1"');
  clock.advance(7_000);
  const later = await readyDuring(() => h2(url));
  assert.equal(later.ready, 1);
  assert.equal(Number(again.result.headers.age), 0);
  assert.equal(Number(later.result.headers.age), 7, 'Age counts on');
  // ttl is the freshness lifetime (60 s) less the current age.
  assert.equal(later.result.headers['cache-status'], 'Outpost; hit; ttl=53');
  // HTTP/1.1 has a key of its own shape; the second HTTP/1.1 request is sent ready too
  await h1(url);
  const h1again = await readyDuring(() => h1(url));
  assert.equal(h1again.ready, 1);
  assert.equal(h1again.result.body.toString(), hit.result.body.toString());
  assert.equal(origin.count(path), 1);
});

test('each Accept-Encoding gets its own kept reply, and a coded one only while its stored variant is the one sent', async () => {
  const page = htmlPage(20_000); // Brotli 11 makes it smaller than Brotli 2 does
  const path = origin.fresh('coded', (_req, res, n) => {
    res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'max-age=60', etag: `"v${n}"` });
    res.end(Buffer.concat([Buffer.from(`coded #${n} `), page]));
  });
  const url = `${outpost.url}${path}`;
  const br = { 'accept-encoding': 'br' };
  await h2(url, { headers: br }); // miss: encoded at Brotli 2 and kept
  // Hits of the kept variant until the Brotli 11 body its second hit queued has replaced it and
  // that reply is kept: until then the upgrade may land between two requests and end a kept reply.
  for (const deadline = Date.now() + 5000; ;) {
    const hit = await readyDuring(() => h2(url, { headers: br }));
    if (hit.ready === 1 && hit.result.headers.etag === '"v1-br11"') break;
    assert.ok(Date.now() < deadline, 'the upgraded reply is kept within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const coded = await readyDuring(() => h2(url, { headers: br }));
  assert.equal(coded.ready, 1);
  assert.equal(coded.result.headers['content-encoding'], 'br');
  assert.match(brotliDecompressSync(coded.result.body).toString(), /^coded #1/);
  const identity = await readyDuring(() => h2(url, { headers: { 'accept-encoding': 'identity' } }));
  assert.equal(identity.ready, 0, 'another Accept-Encoding: another key');
  assert.equal(identity.result.headers['content-encoding'], undefined);
  assert.equal(origin.count(path), 1);
});

test('a purge, the end of freshness and a changed record end a kept reply', async () => {
  const { path, url } = await keptUrl('ends', cacheable('ends', 'max-age=30'));
  // purged: the next request runs the chain and fetches again
  const purge = await fetch(`${outpost.adminUrl}/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ url }) });
  assert.equal(purge.status, 200);
  const refetched = await readyDuring(() => h2(url));
  assert.equal(refetched.ready, 0);
  assert.match(refetched.result.body.toString(), /^ends #2/);
  await h2(url);
  assert.equal((await readyDuring(() => h2(url))).ready, 1);
  // stale: the chain revalidates (the origin's 200 replaces the record)
  clock.advance(31_000);
  const stale = await readyDuring(() => h2(url));
  assert.equal(stale.ready, 0);
  assert.match(stale.result.body.toString(), /^ends #3/);
  assert.equal(origin.count(path), 3);
});

test('conditionals, ranges, request directives, a Host beside :authority and a :scheme other than https run the chain', async () => {
  const { path, url } = await keptUrl('shapes', cacheable('shapes'));
  const notModified = await readyDuring(() => h2(url, { headers: { 'if-none-match': '"v1"' } }));
  assert.deepEqual([notModified.ready, notModified.result.status], [0, 304]);
  const partial = await readyDuring(() => h2(url, { headers: { range: 'bytes=0-4' } }));
  assert.deepEqual([partial.ready, partial.result.status, partial.result.body.toString()], [0, 206, 'shape']);
  const noCache = await readyDuring(() => h2(url, { headers: { 'cache-control': 'no-cache' } }));
  assert.equal(noCache.ready, 0, 'no-cache: validated with the origin');
  assert.equal(origin.count(path), 2);
  // Two Accept-Encoding lines are one list to the chain (RFC 9110 §5.3); the key takes one line.
  const twoLines = await readyDuring(() => h2(url, { headers: { 'accept-encoding': ['identity', 'gzip'] } }));
  assert.deepEqual([twoLines.ready, twoLines.result.status, twoLines.result.headers['content-encoding']], [0, 200, 'gzip']);
  const session = await h2session(outpost.url);
  try {
    const host = await readyDuring(() => h2request(session, path, { headers: { ':authority': new URL(outpost.url).host, host: 'elsewhere.example' } }));
    assert.deepEqual([host.ready, host.result.status], [0, 400], 'Host and :authority differ: the chain refuses it');
    // RFC 9113 §8.3.1: :scheme may name a scheme only a translating proxy serves; this is none.
    const ftp = await readyDuring(() => h2request(session, path, { headers: { ':scheme': 'ftp' } }));
    assert.deepEqual([ftp.ready, ftp.result.status], [0, 400], ':scheme ftp: the chain refuses it');
    const http = await readyDuring(() => h2request(session, path, { headers: { ':scheme': 'http' } }));
    assert.deepEqual([http.ready, http.result.status], [0, 200], ':scheme http: served by the chain');
  } finally {
    session.close();
  }
});

test('a response that varies on a request field is never sent ready: each language gets its own', async () => {
  const path = origin.fresh('vary', (req, res, n) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'Accept-Language' });
    res.end(`${req.headers['accept-language']} #${n}`);
  });
  const url = `${outpost.url}${path}`;
  const fr = { 'accept-language': 'fr' };
  const de = { 'accept-language': 'de' };
  const answers = await readyDuring(async () => {
    const out: string[] = [];
    for (const headers of [fr, fr, fr, de, de, fr]) out.push((await h2(url, { headers })).body.toString());
    return out;
  });
  assert.deepEqual(answers.result, ['fr #1', 'fr #1', 'fr #1', 'de #2', 'de #2', 'fr #1']);
  assert.equal(answers.ready, 0);
});

test('HTTP/1.1: two Host lines are refused even when a reply for the first is kept', async () => {
  const { url } = await keptUrl('hosts', cacheable('hosts'), h1);
  const { port } = new URL(outpost.url);
  const twice = await readyDuring(() => h1(url, { headers: { host: [`127.0.0.1:${port}`, 'other.example'] } as never }));
  assert.deepEqual([twice.ready, twice.result.status], [0, 400]);
});

test('a guard with a rate limit: every answer is the client\'s own (RateLimit fields), none is kept', async () => {
  const path = origin.fresh('limited', cacheable('limited'));
  const url = `${limited.url}${path}`;
  const first = await readyDuring(async () => [await h2(url), await h2(url), await h2(url)]);
  assert.equal(first.ready, 0);
  assert.deepEqual(first.result.map((r) => r.status), [200, 200, 200]);
  assert.deepEqual(first.result.map((r) => /;r=(\d+);/.exec(String(r.headers.ratelimit))?.[1]), ['2', '1', '0'], 'each answer counts down');
  assert.equal((await h2(url)).status, 429, 'the fourth is over the limit, hit or not');
});

test('a kept static file is sent again until it changes on disk and the file cache looks again', async () => {
  const url = `${outpost.url}/files/page.txt`;
  assert.equal((await h2(url)).body.toString(), 'first version\n');
  const again = await readyDuring(() => h2(url));
  assert.equal(again.ready, 1);
  assert.equal(again.result.body.toString(), 'first version\n');
  writeFileSync(join(tmp, 'page.txt'), 'second version, longer\n');
  clock.advance(1_500); // past the file cache's trust window
  const changed = await readyDuring(() => h2(url));
  assert.equal(changed.ready, 0);
  assert.equal(changed.result.body.toString(), 'second version, longer\n');
  assert.notEqual(changed.result.headers.etag, again.result.headers.etag);
});

test('a kept static file goes out with the Date of its second by the server\'s clock; over HTTP/1.1 its head is written once for many responses', async (t) => {
  t.after(clock.hold());
  writeFileSync(join(tmp, 'dated.txt'), 'dated\n');
  const url = `${outpost.url}/files/dated.txt`;
  // Keep-alive: a kept head is for connections that stay open (h1() asks to close).
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: await testCa(), servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  t.after(() => agent.destroy());
  const get = () => new Promise<{ headers: Record<string, unknown>; raw: string[]; body: string }>((resolve, reject) => {
    httpsGet(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ headers: res.headers, raw: res.rawHeaders, body }));
    }).on('error', reject);
  });
  await untilReady(get);
  const first = await readyDuring(get);
  const second = await readyDuring(get);
  assert.equal(first.ready + second.ready, 2);
  assert.equal(first.result.headers.date, clock.dateHeader(), 'the server\'s clock, not Node\'s');
  assert.equal(first.result.headers.connection, 'keep-alive');
  assert.deepEqual(second.result.raw, first.result.raw);
  assert.equal(second.result.body, 'dated\n');

  clock.advance(1_000);
  await untilReady(get);
  const later = await readyDuring(get);
  assert.equal(later.ready, 1);
  assert.equal(later.result.headers.date, clock.dateHeader(), 'a new second, a new head');
  assert.notEqual(later.result.headers.date, first.result.headers.date);
  await untilReady(() => h2(url));
  const overH2 = await readyDuring(() => h2(url));
  assert.equal(overH2.ready, 1);
  assert.equal(overH2.result.headers.date, clock.dateHeader());
});

test('with a subscriber on the response channel (access log, metrics) a kept reply is reported as the chain\'s are', async () => {
  const path = origin.fresh('logged', cacheable('logged'));
  const url = `${outpost.url}${path}`;
  const seen: ResponseEndEvent[] = [];
  const listener = (message: unknown) => seen.push(message as ResponseEndEvent);
  responseEndChannel.subscribe(listener);
  try {
    await h2(url, { headers: { 'accept-encoding': 'br' } });
    const sent = 1 + await untilReady(() => h2(url, { headers: { 'accept-encoding': 'br' } }));
    const logged = await readyDuring(() => h2(url, { headers: { 'accept-encoding': 'br', 'user-agent': 'reader/1' } }));
    assert.equal(logged.ready, 1);
    await waitFor(() => seen.length === sent + 1 || undefined);
    const chain = seen.findLast((event) => event !== seen[sent] && event.request.notes?.get('compress') === 'br/stored')!;
    const last = seen[sent];
    assert.equal(last.request.target, path);
    assert.equal(last.request.headers['user-agent'], 'reader/1', 'this request\'s fields');
    assert.deepEqual([last.status, last.outcome, last.cache, last.bytes], [200, 'ok', 'hit', logged.result.body.length]);
    assert.equal(last.request.notes?.get('compress'), 'br/stored', 'what the chain noted when it made the reply');
    assert.deepEqual([chain.cache, chain.request.site], ['hit', last.request.site]);
    assert.match(last.request.remoteAddress, /^(127\.0\.0\.1|::1)$/, 'the client\'s address, plain');
    assert.equal(last.request.remoteAddress, chain.request.remoteAddress);
    assert.match(String(last.headers['cache-status']), /^Outpost; hit; ttl=\d+$/);
    // HTTP/1.1: kept under its own key (made by a chain hit first), then sent ready and reported the same way.
    const h1sent = await untilReady(() => h1(url, { headers: { 'accept-encoding': 'br' } }));
    const byH1 = await readyDuring(() => h1(url, { headers: { 'accept-encoding': 'br', 'user-agent': 'reader/2' } }));
    assert.equal(byH1.ready, 1);
    await waitFor(() => seen.length === sent + 1 + h1sent + 1 || undefined);
    const h1last = seen[seen.length - 1];
    assert.deepEqual([h1last.request.httpVersion, h1last.request.headers['user-agent'], h1last.request.target], ['1.1', 'reader/2', path]);
    assert.deepEqual([h1last.status, h1last.outcome, h1last.cache, h1last.bytes], [200, 'ok', 'hit', byH1.result.body.length]);
    assert.equal(h1last.request.notes?.get('compress'), 'br/stored');
    assert.equal(h1last.headers['content-encoding'], 'br');
  } finally {
    responseEndChannel.unsubscribe(listener);
  }
});

test('a reply is kept once the chain has answered its shape `proof` times within one second (8 unless told)', () => {
  let ms = 1_000_000;
  const ctx = { method: 'GET', target: '/', host: 'example.test', notes: new Map(), site: undefined, route: undefined } as unknown as Context;
  const body = Buffer.from('answer');
  const answer = (replies: ReturnType<typeof createReadyReplies>, key: string) =>
    replies.learn(key, ctx, { status: 200, headers: { 'content-length': String(body.length) }, body, reuse: { valid: () => true } }, replies.epoch);
  const hot = 'GET https://example.test/hot\n';
  const warm = 'GET https://example.test/warm\nbr';

  const byDefault = createReadyReplies({ now: () => ms });
  for (let i = 1; i < 8; i++) answer(byDefault, hot);
  assert.equal(byDefault.size, 0, 'seven answers in one second: not kept');
  answer(byDefault, hot);
  assert.equal(byDefault.size, 1, 'the eighth keeps it');

  const replies = createReadyReplies({ proof: 3, now: () => ms });
  // Asked for twice a second for five seconds: never three times in one of them.
  for (let i = 0; i < 10; i++) {
    answer(replies, warm);
    ms += 500;
  }
  assert.equal(replies.size, 0);
  // Two answers at the end of a second and one at the start of the next: the count starts again.
  ms = 2_000_900;
  answer(replies, hot);
  answer(replies, hot);
  ms = 2_001_000;
  answer(replies, hot);
  assert.equal(replies.size, 0);
  answer(replies, hot);
  answer(replies, hot);
  assert.equal(replies.size, 1, 'three in one second: kept');
  assert.throws(() => createReadyReplies({ proof: 0 }), /proof: expected 1-255, got 0/);
  assert.throws(() => createReadyReplies({ proof: 256 }), /proof: expected 1-255, got 256/);
});

test('sweep() lets go of kept replies not sent since the last sweep, without reading their records', async () => {
  const replies = createReadyReplies({ proof: 1 });
  let checks = 0;
  const ctx = { method: 'GET', target: '/', host: '127.0.0.1', notes: new Map(), site: undefined, route: undefined } as unknown as Context;
  // A plain HTTP/1.1 server in front of the kept replies: what is not kept is learned from "the chain".
  const server = createServer((req, res) => {
    const key = replies.keyOfHttp1(req, 'http')!;
    if (replies.sendHttp1(key, req, res)) return;
    const body = Buffer.from(`chain ${req.url}`);
    replies.learn(key, ctx, { status: 200, headers: { 'content-length': String(body.length) }, body, reuse: { valid: () => { checks++; return true; } } }, replies.epoch);
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = async (path: string) => (await fetch(`${base}${path}`)).text();
  try {
    await get('/a');
    await get('/b');
    assert.equal(replies.size, 2);
    replies.sweep();
    assert.equal(replies.size, 2, 'both were learned since the last sweep');
    const before = ready();
    assert.equal(await get('/b'), 'chain /b');
    assert.equal(ready() - before, 1, 'sent from the kept reply');
    const checked = checks;
    replies.sweep();
    assert.equal(checks, checked, 'the sweep asks no reply whether it is valid');
    assert.equal(replies.size, 1, '/a, idle since the last sweep, is gone; /b stays');
    replies.sweep();
    assert.equal(replies.size, 0);
  } finally {
    server.close();
  }
});

test('a Brotli 2 body whose upgrade waits is kept ready; the Brotli 11 body that replaces it is sent from then on', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let upgrades = 0;
  // The real background encoder, held until the test lets it go.
  const encodeHigh: HighQualityEncoder = async (coding, input) => {
    upgrades++;
    await gate;
    return encodeInBackground(coding, input);
  };
  const held = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url }] }, { now: clock.now, encodeHigh });
  try {
    const page = htmlPage(20_000); // Brotli 11 makes it smaller than Brotli 2 does
    const url = `${held.url}${origin.fresh('waiting-upgrade', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'max-age=60', etag: '"v1"' });
      res.end(page);
    })}`;
    const br = { headers: { 'accept-encoding': 'br' } };
    assert.equal((await h2(url, br)).headers.etag, '"v1-br2"'); // miss: stored at Brotli 2
    // hits of the kept Brotli 2 body until it proves popular and its upgrade is queued
    for (let hits = 0; upgrades === 0 && hits < 5; hits++) assert.equal((await h2(url, br)).headers.etag, '"v1-br2"');
    assert.equal(upgrades, 1);
    await h2(url, br); // through the chain once more: nothing left to count, so kept
    const waiting = await readyDuring(() => h2(url, br));
    assert.equal(waiting.ready, 1, 'sent from the kept reply while the upgrade waits');
    assert.equal(waiting.result.headers.etag, '"v1-br2"');
    release();
    let upgraded = waiting.result;
    for (const deadline = Date.now() + 5000; upgraded.headers.etag === '"v1-br2"' && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      upgraded = await h2(url, br);
    }
    assert.equal(upgraded.headers.etag, '"v1-br11"', 'the kept Brotli 2 reply gave way to the upgraded variant');
    assert.deepEqual(brotliDecompressSync(upgraded.body), page);
    assert.equal(upgrades, 1, 'one upgrade for the object and coding');
    assert.equal(await untilReady(() => h2(url, br)) <= 2, true, 'the Brotli 11 reply is kept ready too');
  } finally {
    release();
    await held.close();
  }
});
