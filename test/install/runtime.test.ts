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

// bin/pinned-node preloads jemalloc when the system has it (Debian: libjemalloc2). .ci/run installs
// it and sets OUTPOST_REQUIRE_JEMALLOC, so these never skip there.
const loaded = (env: NodeJS.ProcessEnv) => spawnSync(join(ROOT, 'bin/pinned-node'), ['--input-type=module', '-e',
  `import { allocatorOf } from ${JSON.stringify(join(ROOT, 'src/runtime/allocator.ts'))}; console.log(JSON.stringify({ allocator: allocatorOf(), conf: process.env.MALLOC_CONF ?? null }))`],
{ encoding: 'utf8', env: { ...withoutAllocator(process.env), ...env } });
const withoutAllocator = ({ LD_PRELOAD: _p, MALLOC_CONF: _c, OUTPOST_MALLOC: _m, ...env }: NodeJS.ProcessEnv) => env;
const jemallocInstalled = JSON.parse(loaded({}).stdout).allocator === 'jemalloc';
const skipJemalloc = jemallocInstalled || process.env.OUTPOST_REQUIRE_JEMALLOC === '1' ? false : 'libjemalloc2 is not installed (apt-get install libjemalloc2)';

test('bin/pinned-node: runs on jemalloc when it is installed, with its own MALLOC_CONF unless one is given', { skip: skipJemalloc }, () => {
  assert.deepEqual(JSON.parse(loaded({}).stdout), { allocator: 'jemalloc', conf: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0' });
  assert.deepEqual(JSON.parse(loaded({ OUTPOST_MALLOC: 'auto', MALLOC_CONF: 'narenas:1' }).stdout), { allocator: 'jemalloc', conf: 'narenas:1' });
});

test('bin/pinned-node: OUTPOST_MALLOC=system keeps the system malloc', { skip: skipJemalloc }, () => {
  assert.deepEqual(JSON.parse(loaded({ OUTPOST_MALLOC: 'system' }).stdout), { allocator: 'system', conf: null });
});

test('bin/pinned-node: any other OUTPOST_MALLOC is refused with one line naming it', () => {
  const out = loaded({ OUTPOST_MALLOC: 'tcmalloc' });
  assert.equal(out.status, 2);
  assert.equal(out.stdout, '');
  assert.match(out.stderr.trim(), /^outpost: OUTPOST_MALLOC must be auto .* or system .*, not 'tcmalloc'$/);
});

test('the startup line says which allocator serves and what to do when it is not jemalloc', async () => {
  const { allocatorLine } = await import('../../src/runtime/allocator.ts');
  assert.equal(allocatorLine('jemalloc'), 'outpost: memory allocator: jemalloc');
  assert.match(allocatorLine('system') ?? '', /system malloc.*libjemalloc2/);
  assert.equal(allocatorLine('unknown'), null);
});
