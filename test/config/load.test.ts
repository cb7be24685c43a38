import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyOverrides, loadConfig, validateConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { parseDuration, parseSize } from '../../src/config/units.ts';

const problemsOf = (raw: unknown): string[] => {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return [...err.problems];
  }
  assert.fail('expected a ConfigError');
};

test('units: sizes and durations', () => {
  const sizes: Array<[unknown, number | undefined]> = [['16KB', 16384], ['1.5MB', 1572864], [1024, 1024], ['1GB', 1073741824], ['12 parsecs', undefined], [-1, undefined], ['', undefined]];
  for (const [input, expected] of sizes) assert.equal(parseSize(input), expected, String(input));
  const durations: Array<[unknown, number | undefined]> = [['10s', 10000], ['500ms', 500], ['2m', 120000], [3, 3000], ['1d', 86400000], ['soon', undefined]];
  for (const [input, expected] of durations) assert.equal(parseDuration(input), expected, String(input));
});

test('defaults: an empty file is a valid config serving public/', () => {
  const config = validateConfig({});
  assert.equal(config.listen.https, 8443);
  assert.equal(config.sites[0].static?.root, 'public');
  assert.equal(config.limits.maxConcurrentStreams, 128);
  assert.ok(Object.isFrozen(config.limits));
});

test('every problem is reported at once, each naming its key', () => {
  const problems = problemsOf({
    listen: { https: 'x', bogus: 1 },
    limits: { headersTimeout: '10 parsecs' },
    sites: [{ routes: [{ path: '/a', origin: 'http://ok:1' }, { path: '/b', origin: 'ftp://x' }, { path: 'c', static: 'public' }] }],
  });
  assert.deepEqual(problems.sort(), [
    'limits.headersTimeout: expected a duration such as 10s or 500ms, got "10 parsecs"',
    'listen.https: expected a port number, got "x"',
    'listen: unknown key "bogus"',
    'sites[0].routes[1].origin: expected an http(s) URL, got "ftp://x"',
    'sites[0].routes[2].path: expected a path prefix starting with "/", got "c"',
  ]);
});

test('deadlines and idle limits of 0 are refused, each naming its key: 0 would close every connection at once or time out every upload, not turn the limit off', () => {
  const problems = problemsOf({
    limits: { headersTimeout: '0s', requestTimeout: 0, keepAliveTimeout: '0ms', idleTimeout: '0s', sendTimeout: '0s', maxHeaderSize: '512B' },
    proxy: { connectTimeout: '0s', headersTimeout: '0s', bodyTimeout: '0s', failTimeout: '0s', retryDeadline: '0s' },
    sites: [{ hosts: ['*'], origin: 'http://127.0.0.1:1', proxy: { headersTimeout: '0s' } }],
    tls: { passthrough: [{ hosts: ['p.test'], to: '127.0.0.1:1', idleTimeout: '0s' }] },
  });
  assert.deepEqual(problems.sort(), [
    'limits.headersTimeout: expected more than 0s',
    'limits.idleTimeout: expected more than 0s',
    'limits.keepAliveTimeout: expected more than 0s',
    'limits.maxHeaderSize: expected at least 1KB',
    'limits.requestTimeout: expected more than 0s',
    'limits.sendTimeout: expected more than 0s',
    'proxy.connectTimeout: expected more than 0s',
    'proxy.headersTimeout: expected more than 0s',
    'sites[0].proxy.headersTimeout: expected more than 0s',
    'tls.passthrough[0].idleTimeout: expected more than 0s',
  ]);
});

test('a host two sites list, or a route path a site lists twice, is an error naming the one never used', () => {
  const problems = problemsOf({
    sites: [
      { hosts: ['a.test', 'b.test'], origin: 'http://127.0.0.1:1', routes: [{ path: '/x/', origin: 'http://127.0.0.1:2' }, { path: '/x/', origin: 'http://127.0.0.1:3' }] },
      { hosts: ['c.test', 'B.Test'], origin: 'http://127.0.0.1:4' },
    ],
  });
  assert.deepEqual(problems.sort(), [
    'sites[0].routes[1].path: "/x/" is already routes[0]\'s: this route would never be used',
    'sites[1].hosts[1]: "b.test" is already sites[0].hosts[1]: this site would never get its requests',
  ]);
});

test('a route needs exactly one of static, origin, redirect; static roots must exist', () => {
  assert.deepEqual(problemsOf({ sites: [{ routes: [{ path: '/x' }] }] }), ['sites[0].routes[0]: expected exactly one of static, origin or redirect']);
  assert.deepEqual(problemsOf({ sites: [{ static: 'no/such/dir' }] }), ['sites[0].static: not a directory: "no/such/dir"']);
});

test('an access log file must have a directory to be made in: start would otherwise run on and lose every line', () => {
  assert.deepEqual(problemsOf({ log: { access: 'no/such/dir/access.log' } }), ['log.access: no directory to write "no/such/dir/access.log" in: "no/such/dir"']);
  assert.deepEqual(problemsOf({ log: { access: 'package.json/access.log' } }), ['log.access: no directory to write "package.json/access.log" in: "package.json"']);
  for (const access of ['stdout', 'off', 'access.log']) assert.equal(validateConfig({ log: { access } }).log.access, access);
});

test('proxy temp files: tempPath must be a directory, wherever proxy options are given; maxTempFileSize a size', () => {
  assert.deepEqual(problemsOf({
    proxy: { tempPath: 'no/such/dir', maxTempFileSize: 'lots' },
    sites: [{ hosts: ['*'], origin: 'http://127.0.0.1:3000', proxy: { tempPath: 'package.json' }, routes: [{ path: '/a/', origin: 'http://127.0.0.1:3000', proxy: { tempPath: '/nowhere' } }] }],
  }), [
    'proxy.maxTempFileSize: expected a size such as 16KB or 1MB, got "lots"',
    'proxy.tempPath: not a directory: "no/such/dir"',
    'sites[0].proxy.tempPath: not a directory: "package.json"',
    'sites[0].routes[0].proxy.tempPath: not a directory: "/nowhere"',
  ]);
  const config = validateConfig({ proxy: { tempPath: '.', maxTempFileSize: '0' } });
  assert.deepEqual([config.proxy.tempPath, config.proxy.maxTempFileSize], ['.', 0]);
  assert.deepEqual([validateConfig({}).proxy.tempPath, validateConfig({}).proxy.maxTempFileSize], [null, 1024 ** 3]);
});

test('overrides: --origin and --root change the catch-all site; ports are validated too', () => {
  const config = validateConfig(applyOverrides({}, { origin: 'http://127.0.0.1:3000', httpsPort: 9443, httpPort: null }));
  assert.deepEqual(config.sites[0].origin?.upstreams.map((u) => u.url), ['http://127.0.0.1:3000']);
  assert.equal(config.listen.https, 9443);
  assert.equal(config.listen.http, null);
  assert.deepEqual(problemsOf(applyOverrides({}, { origin: 'nope' })), ['sites[0].origin: expected an http(s) URL, got "nope"']);
});

test('YAML errors name the file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-config-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'listen:\n  https: 1\n  https: 2\n');
  assert.throws(() => loadConfig(file), (err: ConfigError) => err.problems[0].startsWith(`${file}:3:`));
  assert.throws(() => loadConfig(join(dir, 'missing.yaml')), /cannot read/);
});

test('outpost check: exit 0 for a valid file, 1 with the problems for an invalid one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-check-'));
  const good = join(dir, 'good.yaml');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(good, 'listen: { https: 9443 }\n');
  writeFileSync(bad, 'sites:\n  - routes:\n      - { path: /api/, origin: "ftp://x" }\n');
  const run = (...args: string[]) => spawnSync(process.execPath, ['src/main.ts', 'check', ...args], { encoding: 'utf8' });
  const ok = run('-c', good);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /configuration is valid/);
  const failed = run('-c', bad);
  assert.equal(failed.status, 1);
  assert.match(failed.stderr, /sites\[0\]\.routes\[0\]\.origin: expected an http\(s\) URL, got "ftp:\/\/x"/);
  assert.equal(run('-c', 'config/outpost.yaml').status, 0, 'the documented default config is valid');
});

test('proxy overrides per site and route hold only the keys they name, so the rest comes from the level above', () => {
  const config = validateConfig({
    proxy: { connectTimeout: '2s', retries: 1 },
    sites: [{ origin: 'http://127.0.0.1:3000', proxy: { headersTimeout: '3s' }, routes: [{ path: '/a/', origin: 'http://127.0.0.1:3001', proxy: { retries: 0 } }] }],
  });
  assert.deepEqual(config.sites[0].proxy, { headersTimeout: 3000 });
  assert.deepEqual(config.sites[0].routes[0].proxy, { retries: 0 });
  assert.deepEqual(problemsOf({ sites: [{ proxy: { retries: -1, bogus: 1 } }] }).sort(), [
    'sites[0].proxy.retries: Too small: expected number to be >=0',
    'sites[0].proxy: unknown key "bogus"',
  ]);
});

test('origin: the long form, and each bad part of it named', () => {
  const config = validateConfig({ sites: [{ origin: { upstreams: ['http://127.0.0.1:3000', { url: 'https://127.0.0.1:3443/app/', weight: 2, http2: true }, { url: 'http://127.0.0.1:3001', backup: true }], balance: 'hash', healthCheck: { path: '/health', expect: '200,204' } } }] });
  const origin = config.sites[0].origin!;
  assert.equal(origin.balance, 'hash');
  assert.deepEqual(origin.upstreams.map((u) => [u.url, u.weight, u.backup, u.http2]), [
    ['http://127.0.0.1:3000', 1, false, null],
    ['https://127.0.0.1:3443/app', 2, false, { connections: 2, maxConcurrentStreams: 100 }],
    ['http://127.0.0.1:3001', 1, true, null],
  ]);
  assert.deepEqual(origin.healthCheck, { path: '/health', host: null, interval: 5000, timeout: 2000, fails: 3, passes: 2, expect: [[200, 200], [204, 204]] });
  assert.deepEqual(problemsOf({ sites: [{ origin: { upstreams: ['ftp://x', { url: 'http://y', weight: 0, bogus: 1 }], balance: 'random', healthCheck: { interval: '10ms', expect: '700' } } }] }).sort(), [
    'sites[0].origin.balance: Invalid option: expected one of "round-robin"|"least-connections"|"hash"',
    'sites[0].origin.healthCheck.expect: expected statuses such as 200-399 or "200,204", got "700"',
    'sites[0].origin.healthCheck.interval: expected at least 100ms',
    'sites[0].origin.upstreams[0]: expected an http(s) URL, got "ftp://x"',
    'sites[0].origin.upstreams[1].weight: Too small: expected number to be >=1',
    'sites[0].origin.upstreams[1]: unknown key "bogus"',
  ]);
  assert.deepEqual(problemsOf({ sites: [{ origin: { upstreams: ['ftp://x', { url: 'http://y', weight: 0, bogus: 1 }] } }] }).sort(), [
    'sites[0].origin.upstreams[0]: expected an http(s) URL, got "ftp://x"',
    'sites[0].origin.upstreams[1].weight: Too small: expected number to be >=1',
    'sites[0].origin.upstreams[1]: unknown key "bogus"',
  ]);
  assert.deepEqual(problemsOf({ sites: [{ origin: [{ url: 'http://a', backup: true }] }] }), ['sites[0].origin: expected at least one upstream that is not a backup']);
  assert.deepEqual(problemsOf({ sites: [{ origin: [] }] }), ['sites[0].origin: expected at least one http(s) URL']);
});

test('tls.passthrough: hosts by name or one-label wildcard, to host:port', () => {
  const config = validateConfig({ tls: { passthrough: [{ hosts: ['Legacy.Example.com', '*.mtls.example.com'], to: '10.0.0.5:443', proxyProtocol: 2 }, { hosts: ['v6.example'], to: '[::1]:8443' }] } });
  assert.deepEqual(config.tls.passthrough.map((p) => [p.hosts, p.to, p.proxyProtocol, p.connectTimeout, p.idleTimeout]), [
    [['legacy.example.com', '*.mtls.example.com'], { host: '10.0.0.5', port: 443 }, 2, 5000, 120000],
    [['v6.example'], { host: '::1', port: 8443 }, false, 5000, 120000],
  ]);
  assert.deepEqual(problemsOf({ tls: { passthrough: [{ hosts: ['*'], to: 'nowhere' }, { hosts: [], to: 'a:0', proxyProtocol: 3 }] } }).sort(), [
    'tls.passthrough[0].hosts[0]: expected a host name or "*.domain"',
    'tls.passthrough[0].to: expected host:port such as 10.0.0.5:443 or [::1]:8443, got "nowhere"',
    'tls.passthrough[1].hosts: Too small: expected array to have >=1 items',
    'tls.passthrough[1].proxyProtocol: expected false, 1 or 2, got 3',
    'tls.passthrough[1].to: expected host:port such as 10.0.0.5:443 or [::1]:8443, got "a:0"',
  ]);
});
