import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SERVING_FLAGS, servingLaunch, withServingFlags } from '../../src/runtime/node-flags.ts';

const ROOT = resolve(import.meta.dirname, '../..');

test('serving flags are added to a launch line that lacks them, and never override one given', () => {
  assert.deepEqual(withServingFlags([]), [...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--enable-source-maps']), ['--enable-source-maps', ...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--max-semi-space-size=4']), ['--max-semi-space-size=4', '--no-allocation-site-pretenuring', '--expose-gc'], 'the operator\'s own size wins');
  assert.deepEqual(withServingFlags(['--allocation-site-pretenuring']), ['--allocation-site-pretenuring', '--max-semi-space-size=16', '--expose-gc'], 'so does a flag turned back on');
  assert.deepEqual(withServingFlags(['--max_semi_space_size=2']), ['--max_semi_space_size=2', '--no-allocation-site-pretenuring', '--expose-gc'], 'V8 reads _ as -');
});

test('npm start runs with every serving flag', async () => {
  const { readFile } = await import('node:fs/promises');
  const start: string = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')).scripts.start;
  for (const flag of SERVING_FLAGS) assert.ok(start.split(' ').includes(flag), `${flag} in ${start}`);
});

test('outpost [start] is relaunched with the serving flags it lacks; check and --help run as they are', () => {
  assert.deepEqual(servingLaunch(['-c', 'x.yaml'], []), [...SERVING_FLAGS]);
  assert.deepEqual(servingLaunch(['start'], ['--enable-source-maps']), ['--enable-source-maps', ...SERVING_FLAGS]);
  assert.equal(servingLaunch([], [...SERVING_FLAGS]), null, 'started with them: nothing to do');
  assert.equal(servingLaunch(['check', '-c', 'x.yaml'], []), null);
  assert.equal(servingLaunch(['--help'], []), null);
  assert.deepEqual(servingLaunch([], [], '--max-semi-space-size=4  --expose-gc'), ['--no-allocation-site-pretenuring'], 'NODE_OPTIONS counts as given: the command line would override it');
});

// /proc shows what a process was started with (and the relaunch keeps the PID: execve).
const NO_PROC = existsSync('/proc/self/cmdline') ? false : 'no /proc here';
const argvOf = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');

/** Runs `args` (a script and its arguments) on this Node with a config of `workers` until it listens, then `check`s it and stops it with SIGTERM. */
async function whileServing(args: (config: string) => string[], workers: number, env: NodeJS.ProcessEnv, check: (pid: number, config: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-launch-'));
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, `workers: ${workers}\nlisten: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\nadmin: { listen: null }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\nsites: [{ hosts: ["*"], static: ${JSON.stringify(dir)} }]\n`);
  const child = spawn(process.execPath, args(config), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d; });
  child.stderr.on('data', (d: Buffer) => { output += d; });
  try {
    const deadline = Date.now() + 30_000;
    while (!/listening on https:/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    check(child.pid!, config);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const { MALLOC_ARENA_MAX: _, NODE_OPTIONS: __, ...plainEnv } = process.env;

test('npx outpost (bin/outpost.js) serves with the serving flags and two malloc arenas, in the process it was started as', { skip: NO_PROC }, async () => {
  await whileServing((config) => [join(ROOT, 'bin/outpost.js'), '-c', config], 1, plainEnv, (pid, config) => {
    const argv = argvOf(pid);
    for (const flag of SERVING_FLAGS) assert.ok(argv.includes(flag), `${flag} in ${argv.join(' ')}`);
    assert.ok(argv.includes('-c') && argv.includes(config), 'with its own arguments');
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'), 'glibc held to two arenas, as bin/pinned-node does');
  });
});

test('cluster workers get the serving flags the primary lacks, but not one the operator set in NODE_OPTIONS', { skip: NO_PROC }, async () => {
  await whileServing((config) => ['src/main.ts', '-c', config], 2, { ...plainEnv, NODE_OPTIONS: '--max-semi-space-size=4' }, (pid) => {
    const workers = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    assert.equal(workers.length, 2);
    for (const worker of workers) {
      const argv = argvOf(worker);
      assert.ok(argv.includes('--expose-gc') && argv.includes('--no-allocation-site-pretenuring'), argv.join(' '));
      assert.ok(!argv.some((flag) => flag.startsWith('--max-semi-space-size')), `NODE_OPTIONS' size stands: ${argv.join(' ')}`);
    }
  });
});
