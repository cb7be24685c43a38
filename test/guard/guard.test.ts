import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { addressList, cidrProblem } from '../../src/net/cidr.ts';
import { clientAddress } from '../../src/guard/client.ts';
import { createLocalLimiter, gcra } from '../../src/guard/rate-limit.ts';
import { clientKey } from '../../src/net/client-key.ts';
import { compileRules } from '../../src/guard/rules.ts';
import { validateConfig, applyOverrides } from '../../src/config/load.ts';
import { h1, h2, startOutpost, testClock, type RunningOutpost } from '../helpers/outpost.ts';
import { startRoutedOrigin, type RoutedOrigin } from '../helpers/routed-origin.ts';
import { redisSkipReason, startRedis, type TestRedis } from '../helpers/redis.ts';

// ---- pure parts -------------------------------------------------------------------------------------

test('address lists: IPv4, IPv6, CIDR ranges; bad entries named', () => {
  const list = addressList(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7']);
  for (const [address, expected] of [['10.1.2.3', true], ['11.0.0.1', false], ['2001:db8::1', true], ['2001:db9::1', false], ['192.0.2.7', true], ['192.0.2.8', false], ['not-an-ip', false]] as const) {
    assert.equal(list.has(address), expected, address);
  }
  assert.equal(cidrProblem('10.0.0.0/8'), null);
  assert.match(cidrProblem('10.0.0.0/33') ?? '', /prefix length from 0 to 32/);
  assert.match(cidrProblem('example.com') ?? '', /IP address or CIDR/);
  assert.match(cidrProblem('::1/129') ?? '', /0 to 128/);
});

test('the client is the peer, or the right-most untrusted X-Forwarded-For hop behind a trusted proxy', () => {
  const trusted = addressList(['10.0.0.0/8']);
  const from = (peer: string, xff?: string) => clientAddress({ remoteAddress: peer, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }, trusted);
  assert.equal(from('203.0.113.9', '1.2.3.4'), '203.0.113.9', 'an untrusted peer cannot claim another address');
  assert.equal(from('10.0.0.1', '1.2.3.4, 198.51.100.7'), '198.51.100.7');
  assert.equal(from('10.0.0.1', '198.51.100.7, 10.0.0.9'), '198.51.100.7', 'trusted hops are skipped');
  assert.equal(from('10.0.0.1'), '10.0.0.1');
  assert.equal(from('10.0.0.1', '[2001:db8::5]:443'), '2001:db8::5');
});

test('GCRA: burst at once, then one per interval; Retry-After when over; time injected', () => {
  const clock = testClock();
  const limiter = createLocalLimiter({ rate: 2, burst: 3 }, { now: clock.now });
  const taken = [1, 2, 3, 4].map(() => limiter.take('a') as ReturnType<typeof gcra>['decision']);
  assert.deepEqual(taken.map((d) => d.allowed), [true, true, true, false]);
  assert.deepEqual(taken.map((d) => d.remaining), [2, 1, 0, 0]);
  assert.ok(taken[3].retryAfterMs > 0 && taken[3].retryAfterMs <= 500);
  assert.equal((limiter.take('b') as { allowed: boolean }).allowed, true, 'clients are counted apart');
  clock.advance(500);
  assert.equal((limiter.take('a') as { allowed: boolean }).allowed, true, 'one more after 1/rate');
  assert.equal((limiter.take('a') as { allowed: boolean }).allowed, false);
  assert.equal(clientKey('2001:DB8:0:1:aaaa::1'), '2001:db8:0:1::/64');
  assert.equal(clientKey('2001:db8::1'), clientKey('2001:db8:0:0:ffff::9'), 'one /64, one client');
  assert.equal(clientKey('192.0.2.1'), '192.0.2.1');
});

test('rules: the first match decides; paths are matched as sent and decoded', () => {
  const rules = compileRules([{ path: '^/\\.(git|env)', action: 'deny' }, { method: ['TRACK'], action: 'deny' }]);
  const denied = (method: string, path: string) => rules.some((r) => r.matches({ method, path }) && r.action === 'deny');
  assert.equal(denied('GET', '/.git/config'), true);
  assert.equal(denied('GET', '/%2egit/config'), true, 'an encoded dot does not slip past');
  assert.equal(denied('GET', '/.well-known/acme'), false);
  assert.equal(denied('TRACK', '/'), true);
  assert.equal(denied('GET', '/%E0%A4%A'), false, 'a malformed escape is matched as sent');
});

test('guard config: every problem named', () => {
  assert.throws(() => validateConfig(applyOverrides({ guard: { deny: ['10.0.0.0/40'], rateLimit: { rate: 'fast' }, rules: [{ path: '(', action: 'deny' }, { action: 'deny' }] } }, {})), (error: Error) => {
    assert.match(error.message, /guard\.deny\[0\]: expected a prefix length/);
    assert.match(error.message, /guard\.rateLimit\.rate: expected a rate such as 100\/s/);
    assert.match(error.message, /guard\.rules\[0\]\.path: not a regular expression/);
    assert.match(error.message, /guard\.rules\[1\]: a rule needs a path or a method/);
    return true;
  });
});

// ---- through the listener ---------------------------------------------------------------------------

describe('guard through the listener', () => {
  let origin: RoutedOrigin;
  const clock = testClock();
  const nodes: RunningOutpost[] = [];
  const start = async (raw: Record<string, unknown>) => {
    const node = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, ...raw }] }, { now: clock.now });
    nodes.push(node);
    return node;
  };
  before(async () => {
    origin = await startRoutedOrigin();
  });
  after(async () => {
    for (const node of nodes) await node.close();
    await origin.close();
  });

  test('deny and allow lists answer 403 before anything reaches the origin; a trusted proxy\'s X-Forwarded-For names the client', async () => {
    const p = origin.fresh('listed', (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }); res.end('ok'); });
    const denied = await start({ guard: { deny: ['127.0.0.0/8'] } });
    for (const client of [h1, h2]) {
      const res = await client(`${denied.url}${p}`);
      assert.equal(res.status, 403);
      assert.equal(res.headers['cache-control'], 'no-store');
    }
    const allowOther = await start({ guard: { allow: ['10.0.0.0/8'] } });
    assert.equal((await h2(`${allowOther.url}${p}`)).status, 403, 'not on the allow list');
    const allowUs = await start({ guard: { allow: ['127.0.0.1', '::1'] } });
    assert.equal((await h2(`${allowUs.url}${p}`)).status, 200);
    assert.equal(origin.count(p), 1);

    const behindProxy = await startOutpost({ trustedProxies: ['127.0.0.1'], sites: [{ hosts: ['*'], origin: origin.url, guard: { deny: ['203.0.113.0/24'] } }] });
    nodes.push(behindProxy);
    assert.equal((await h1(`${behindProxy.url}${p}`, { headers: { 'x-forwarded-for': '203.0.113.50' } })).status, 403);
    assert.equal((await h1(`${behindProxy.url}${p}`, { headers: { 'x-forwarded-for': '198.51.100.1' } })).status, 200);
  });

  test('rules: the default refuses /.git and /.env on proxied routes too; a route can have its own guard', async () => {
    const secret = origin.route('/.git/config', (_req, res) => { res.writeHead(200); res.end('[core]'); });
    const node = await start({ routes: [{ path: '/open/', origin: origin.url, guard: { rules: [] } }] });
    assert.equal((await h2(`${node.url}${secret}`)).status, 403);
    assert.equal((await h1(`${node.url}/%2egit/config`)).status, 403);
    assert.equal(origin.count(secret), 0);
    // At any depth and in any case (an origin on a case-insensitive file system serves the same
    // file): before 2026-12-05 these reached the origin. /.well-known/ and .gitignore-like names stay open.
    const deep = origin.route('/app/.git/HEAD', (_req, res) => { res.writeHead(200); res.end('ref: refs/heads/main'); });
    const shouting = origin.route('/.GIT/config', (_req, res) => { res.writeHead(200); res.end('[core]'); });
    for (const p of [deep, shouting, '/x/.Env']) assert.equal((await h2(`${node.url}${p}`)).status, 403, p);
    assert.equal(origin.count(deep) + origin.count(shouting), 0);
    const known = origin.route('/.well-known/security.txt', (_req, res) => { res.writeHead(200); res.end('Contact: x'); });
    assert.equal((await h2(`${node.url}${known}`)).status, 200);
    const open = origin.route('/open/.env', (_req, res) => { res.writeHead(200); res.end('A=1'); });
    assert.equal((await h2(`${node.url}${open}`)).status, 200, 'the route replaced the rule list');
  });

  test('a route\'s guard is not stepped around by another spelling of its path (escapes, repeated slashes, dot-segments)', async () => {
    const admin = origin.route('/admin/secret', (_req, res) => { res.writeHead(200); res.end('secret'); });
    const node = await start({ routes: [{ path: '/admin/', origin: origin.url, guard: { deny: ['127.0.0.0/8', '::1'] } }] });
    // Before 2026-12-05 each of these but the first went by the catch-all route, unguarded, to an
    // origin that may well read it as /admin/secret (RFC 3986 §6.2.2: the same URI).
    for (const spelling of [admin, '/%61dmin/secret', '/%61%64min/secret', '//admin/secret', '/x/../admin/secret', '/./admin/secret', '/admin%2fsecret', '/x/%2e%2e/admin/secret']) {
      for (const client of [h1, h2]) assert.equal((await client(`${node.url}${spelling}`)).status, 403, spelling);
    }
    assert.equal(origin.count(admin), 0);
  });

  test('rate limit: 429 with Retry-After and RateLimit fields; refilled as time passes (clock injected)', async () => {
    const p = origin.fresh('limited', (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('ok'); });
    const node = await start({ guard: { rateLimit: { rate: '1/s', burst: 3 } } });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await (i % 2 ? h1 : h2)(`${node.url}${p}`));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429]);
    assert.equal(answers[0].headers['ratelimit-policy'], '"default";q=3;w=3');
    assert.match(String(answers[2].headers.ratelimit), /^"default";r=0;t=\d+$/);
    assert.equal(answers[3].headers['retry-after'], '1');
    assert.equal(answers[3].headers['cache-control'], 'no-store');
    assert.equal(origin.count(p), 3, 'the 429 never reached the origin');
    clock.advance(1000);
    assert.equal((await h2(`${node.url}${p}`)).status, 200);
    assert.equal((await h2(`${node.url}${p}`)).status, 429);
  });

  test('/stats counts what the guard refused, and the front\'s own counters', async () => {
    const token = 'guard-stats-token-0123456789';
    const node = await startOutpost({ admin: { token }, sites: [{ hosts: ['*'], origin: origin.url, guard: { deny: ['127.0.0.1'], rateLimit: { rate: '1/h', burst: 1 } } }] });
    nodes.push(node);
    await h2(`${node.url}/anything`);
    const stats = await (await fetch(`${node.adminUrl}/stats`, { headers: { authorization: `Bearer ${token}` } })).json() as { guard: { forbidden: number; limited: number }; front: Record<string, number> };
    assert.equal(stats.guard.forbidden >= 1, true);
    assert.equal(typeof stats.front.connectionsRefused, 'number');
    assert.equal(typeof stats.front.badRequests, 'number');
  });
});

describe('rate limits shared through Redis', { skip: redisSkipReason() }, () => {
  let redis: TestRedis;
  let origin: RoutedOrigin;
  const nodes: RunningOutpost[] = [];
  before(async () => {
    redis = await startRedis();
    origin = await startRoutedOrigin();
    // a rate so low that nothing refills during the test: only the burst counts
    for (let i = 0; i < 2; i++) nodes.push(await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, guard: { rateLimit: { rate: '1/h', burst: 4, store: redis.url } } }] }));
  });
  after(async () => {
    for (const node of nodes) await node.close();
    await origin.close();
    await redis.stop();
  });

  test('two nodes together allow the configured burst, not twice it', async () => {
    const p = origin.fresh('shared-limit', (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('ok'); });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await (i % 2 ? h1 : h2)(`${nodes[i % 2].url}${p}`)).status);
    assert.equal(statuses.filter((s) => s === 200).length, 4);
    assert.equal(statuses.filter((s) => s === 429).length, 4);
  });

  test('Redis down: each node falls back to its own limiter and keeps answering', async () => {
    await redis.kill();
    const p = origin.fresh('fallback-limit', (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('ok'); });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await h2(`${nodes[0].url}${p}`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429], 'the local limiter applies the same burst');
    await redis.restart();
  });
});
