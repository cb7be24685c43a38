import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
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

// bin/pinned-node preloads jemalloc when OUTPOST_MALLOC asks for it (Debian: libjemalloc2). .ci/run
// installs it and sets OUTPOST_REQUIRE_JEMALLOC, so these never skip there.
const withoutAllocator = ({ LD_PRELOAD: _p, MALLOC_CONF: _c, OUTPOST_MALLOC: _m, MALLOC_ARENA_MAX: _a, ...env }: NodeJS.ProcessEnv) => env;
const loaded = (env: NodeJS.ProcessEnv) => spawnSync(join(ROOT, 'bin/pinned-node'), ['--input-type=module', '-e',
  `import { allocatorOf } from ${JSON.stringify(join(ROOT, 'src/runtime/allocator.ts'))};
   const { MALLOC_CONF, MALLOC_ARENA_MAX } = process.env;
   console.log(JSON.stringify({ allocator: allocatorOf(), conf: MALLOC_CONF ?? null, arenas: MALLOC_ARENA_MAX ?? null }))`],
{ encoding: 'utf8', env: { ...withoutAllocator(process.env), ...env } });
const JEMALLOC = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib']
  .map((dir) => join(dir, 'libjemalloc.so.2')).find((path) => existsSync(path));
const skipJemalloc = JEMALLOC !== undefined || process.env.OUTPOST_REQUIRE_JEMALLOC === '1' ? false : 'libjemalloc2 is not installed (apt-get install libjemalloc2)';
const OUR_CONF = 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0';

test('bin/pinned-node: the system malloc by default, and with OUTPOST_MALLOC=system, held to 2 arenas', () => {
  for (const env of [{}, { OUTPOST_MALLOC: 'system' }]) {
    const out = loaded(env);
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { allocator: 'system', conf: null, arenas: '2' });
  }
});

test('bin/pinned-node: an operator\'s own MALLOC_ARENA_MAX wins over ours', () => {
  assert.deepEqual(JSON.parse(loaded({ MALLOC_ARENA_MAX: '8' }).stdout), { allocator: 'system', conf: null, arenas: '8' });
});

test('bin/pinned-node: OUTPOST_MALLOC=jemalloc or its path preloads jemalloc, with our MALLOC_CONF unless one is given (and no glibc arena setting)', { skip: skipJemalloc }, () => {
  assert.deepEqual(JSON.parse(loaded({ OUTPOST_MALLOC: 'jemalloc' }).stdout), { allocator: 'jemalloc', conf: OUR_CONF, arenas: null });
  assert.deepEqual(JSON.parse(loaded({ OUTPOST_MALLOC: JEMALLOC }).stdout), { allocator: 'jemalloc', conf: OUR_CONF, arenas: null });
  assert.deepEqual(JSON.parse(loaded({ OUTPOST_MALLOC: 'jemalloc', MALLOC_CONF: 'narenas:1' }).stdout), { allocator: 'jemalloc', conf: 'narenas:1', arenas: null });
});

test('bin/pinned-node: an OUTPOST_MALLOC it cannot honour is refused with one line naming it', () => {
  for (const [value, message] of [
    ['tcmalloc', /^outpost: OUTPOST_MALLOC must be system .*, jemalloc, or the path of libjemalloc\.so\.2, not 'tcmalloc'$/],
    ['/nowhere/libjemalloc.so.2', /^outpost: OUTPOST_MALLOC=\/nowhere\/libjemalloc\.so\.2: no readable libjemalloc\.so\.2 /],
  ] as const) {
    const out = loaded({ OUTPOST_MALLOC: value });
    assert.equal(out.status, 2);
    assert.equal(out.stdout, '');
    assert.match(out.stderr.trim(), message);
  }
});

test('the startup line: jemalloc when it serves, a warning when it was asked for but is not loaded, nothing by default', async () => {
  const { allocatorLine } = await import('../../src/runtime/allocator.ts');
  assert.deepEqual(allocatorLine('jemalloc', 'jemalloc'), { warning: false, text: 'outpost: memory allocator: jemalloc' });
  assert.match(allocatorLine('system', 'jemalloc')?.text ?? '', /warning: OUTPOST_MALLOC=jemalloc but this process runs on the system malloc/);
  assert.equal(allocatorLine('system', 'jemalloc')?.warning, true);
  assert.equal(allocatorLine('system', undefined), null);
  assert.equal(allocatorLine('system', 'system'), null);
  assert.equal(allocatorLine('unknown', undefined), null);
});
