import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

test('package.json: the runtime is pinned to one version and its preinstall script is allowed (npm 12 blocks unlisted ones)', () => {
  const pinned = pkg.devDependencies.node as string;
  assert.match(pinned, /^\d+\.\d+\.\d+$/, 'devDependency "node" is an exact version');
  assert.ok(Number(pinned.split('.')[0]) >= 24);
  // Name-only: npm refuses a name@version key as "unverifiable" when the lockfile has no resolved
  // URLs (.npmrc omit-lockfile-registry-resolved); the version is pinned by the exact spec above
  // and the lockfile's integrity hash.
  assert.equal(pkg.allowScripts?.node, true);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  assert.equal(lock.packages['node_modules/node'].version, pinned);
  assert.equal(lock.packages[''].devDependencies.node, pinned);
});

test('package.json: start, check, test and bench run through bin/pinned-node, never a bare system node', () => {
  for (const name of ['start', 'check', 'test', 'bench', 'typecheck']) {
    const script = pkg.scripts[name] as string;
    assert.match(script, /^bin\/pinned-node /, name);
    assert.doesNotMatch(script, /(^|&& )(node|tsc) /, name);
  }
});

test('bin/pinned-node: without the pinned runtime, one clear line on stderr and exit 127', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-runtime-'));
  mkdirSync(join(dir, 'bin'));
  copyFileSync(join(ROOT, 'bin/pinned-node'), join(dir, 'bin/pinned-node'));
  const out = spawnSync('sh', [join(dir, 'bin/pinned-node'), '--version'], { encoding: 'utf8' });
  assert.equal(out.status, 127);
  assert.equal(out.stdout, '');
  const lines = out.stderr.trim().split('\n');
  assert.equal(lines.length, 1, out.stderr);
  assert.match(lines[0], /pinned Node\.js 24 runtime is missing .*run npm ci/);
});

test('bin/pinned-node: with it, runs the pinned runtime with the arguments given', () => {
  const out = spawnSync(join(ROOT, 'bin/pinned-node'), ['-p', 'process.version'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.equal(out.stdout.trim(), `v${pkg.devDependencies.node}`);
});
