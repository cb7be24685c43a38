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

test('a route needs exactly one of static, origin, redirect; static roots must exist', () => {
  assert.deepEqual(problemsOf({ sites: [{ routes: [{ path: '/x' }] }] }), ['sites[0].routes[0]: expected exactly one of static, origin or redirect']);
  assert.deepEqual(problemsOf({ sites: [{ static: 'no/such/dir' }] }), ['sites[0].static: not a directory: "no/such/dir"']);
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
