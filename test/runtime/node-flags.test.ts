import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnOutpost } from '../helpers/process.ts';
import { SERVING_FLAGS, servingLaunch, withServingFlags } from '../../src/runtime/node-flags.ts';


test('serving flags are added to a launch line that lacks them, and never override one given', () => {
  assert.deepEqual(withServingFlags([]), [...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--enable-source-maps']), ['--enable-source-maps', ...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--max-semi-space-size=4']), ['--max-semi-space-size=4', '--no-allocation-site-pretenuring', '--expose-gc', '--no-concurrent-array-buffer-sweeping'], 'the operator\'s own size wins');
  assert.deepEqual(withServingFlags(['--allocation-site-pretenuring']), ['--allocation-site-pretenuring', '--max-semi-space-size=16', '--expose-gc', '--no-concurrent-array-buffer-sweeping'], 'so does a flag turned back on');
  assert.deepEqual(withServingFlags(['--max_semi_space_size=2']), ['--max_semi_space_size=2', '--no-allocation-site-pretenuring', '--expose-gc', '--no-concurrent-array-buffer-sweeping'], 'V8 reads _ as -');
  assert.deepEqual(withServingFlags(['--concurrent-array-buffer-sweeping']), ['--concurrent-array-buffer-sweeping', '--max-semi-space-size=16', '--no-allocation-site-pretenuring', '--expose-gc'], 'and the sweeper turned back on');
});

test('npm start and npm run check run with every serving flag (a check leaves the compile cache the start reads)', async () => {
  const { readFile } = await import('node:fs/promises');
  const { scripts } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
  for (const name of ['start', 'check']) {
    for (const flag of SERVING_FLAGS) assert.ok(scripts[name].split(' ').includes(flag), `${flag} in ${name}: ${scripts[name]}`);
  }
});

test('outpost [start] and outpost check are relaunched with the serving flags they lack; --help runs as it is', () => {
  assert.deepEqual(servingLaunch(['-c', 'x.yaml'], []), [...SERVING_FLAGS]);
  assert.deepEqual(servingLaunch(['start'], ['--enable-source-maps']), ['--enable-source-maps', ...SERVING_FLAGS]);
  assert.equal(servingLaunch([], [...SERVING_FLAGS]), null, 'started with them: nothing to do');
  assert.deepEqual(servingLaunch(['check', '-c', 'x.yaml'], []), [...SERVING_FLAGS], 'V8\'s flags key the compile cache: a check warms the start\'s');
  assert.equal(servingLaunch(['--help'], []), null);
  assert.deepEqual(servingLaunch([], [], '--max-semi-space-size=4  --expose-gc'), ['--no-allocation-site-pretenuring', '--no-concurrent-array-buffer-sweeping'], 'NODE_OPTIONS counts as given: the command line would override it');
});

// /proc shows what a process was started with (and the relaunch keeps the PID: execve).
const NO_PROC = existsSync('/proc/self/cmdline') ? false : 'no /proc here';
const argvOf = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

/**
 * Outpost started from `entry` with a config of `workers` and `env` (after `before`, given the
 * config's path); `check` runs once it listens, then it must stop cleanly.
 */
async function whileServing(entry: string, workers: number, env: NodeJS.ProcessEnv, check: (pid: number, config: string, output: string) => void, before?: (config: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-launch-'));
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, `workers: ${workers}\nlisten: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\nadmin: { listen: null }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\nsites: [{ hosts: ["*"], static: ${JSON.stringify(dir)} }]\n`);
  before?.(config);
  const outpost = spawnOutpost(['-c', config], env, entry);
  try {
    await outpost.waitFor(/listening on https:/, 30_000);
    check(outpost.child.pid!, config, outpost.output());
  } finally {
    assert.equal(await outpost.stop(), 0, outpost.output());
  }
}

// Left out of the children's environment: bin/pinned-node (which runs the tests) sets the first.
const plainEnv = { MALLOC_ARENA_MAX: undefined, NODE_OPTIONS: undefined };

test('npx outpost (bin/outpost.js) serves with the serving flags and two malloc arenas, in the process it was started as', { skip: NO_PROC }, async () => {
  await whileServing('bin/outpost.js', 1, plainEnv, (pid, config) => {
    const argv = argvOf(pid);
    for (const flag of SERVING_FLAGS) assert.ok(argv.includes(flag), `${flag} in ${argv.join(' ')}`);
    assert.ok(argv.includes('-c') && argv.includes(config), 'with its own arguments');
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'), 'glibc held to two arenas, as bin/pinned-node does');
  });
});

test('npx outpost check leaves the compile cache npx outpost reads: a single process started after it strips no TypeScript', { skip: NO_PROC }, async () => {
  // A fresh cache, as after a deploy: the check fills it, and Node's own trace of the start
  // (NODE_DEBUG_NATIVE=COMPILE_CACHE) shows every module's stripped source found there.
  const cache = mkdtempSync(join(tmpdir(), 'outpost-compile-'));
  const env = { ...plainEnv, NODE_COMPILE_CACHE: cache };
  await whileServing('bin/outpost.js', 1, { ...env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' }, (_pid, _config, output) => {
    const found = output.match(/retrieving transpile cache for StrippedTypeScript \S+src\/\S+\.\.\.success/g) ?? [];
    assert.ok(found.length > 50, `${found.length} modules found stripped in the cache`);
    const missing = output.match(/no transpile cache for StrippedTypeScript \S+/g) ?? [];
    assert.deepEqual(missing, [], 'compiled again: the check ran with other runtime flags than the start');
  }, (config) => {
    const check = spawnSync(process.execPath, ['bin/outpost.js', 'check', '-c', config], { encoding: 'utf8', env: { ...process.env, ...env } });
    assert.equal(check.status, 0, check.stderr);
  });
});

test('cluster workers get the serving flags the primary lacks, but not one the operator set in NODE_OPTIONS', { skip: NO_PROC }, async () => {
  await whileServing('src/main.ts', 2, { ...plainEnv, NODE_OPTIONS: '--max-semi-space-size=4' }, (pid) => {
    const workers = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    assert.equal(workers.length, 2);
    for (const worker of workers) {
      const argv = argvOf(worker);
      assert.ok(argv.includes('--expose-gc') && argv.includes('--no-allocation-site-pretenuring'), argv.join(' '));
      assert.ok(!argv.some((flag) => flag.startsWith('--max-semi-space-size')), `NODE_OPTIONS' size stands: ${argv.join(' ')}`);
    }
  });
});

test('npx outpost where the process cannot be replaced (execve refused) says so and serves from the process it has', async () => {
  // Preloaded through NODE_OPTIONS (which splits at spaces and reads quotes): base64.
  const refuse = `data:text/javascript;base64,${Buffer.from('process.execve = () => { throw new Error("refused"); };').toString('base64')}`;
  await whileServing('bin/outpost.js', 1, { ...plainEnv, NODE_OPTIONS: `--import=${refuse}` }, (_pid, _config, output) => {
    assert.match(output, /outpost: starting without the serving runtime flags \(refused\)/);
  });
});
