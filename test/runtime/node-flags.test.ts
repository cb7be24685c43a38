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

// /proc shows what a process was started with; the relaunch keeps the PID (execve).
test('npx outpost (bin/outpost.js) serves with the serving flags and two malloc arenas, in the process it was started as', { skip: existsSync('/proc/self/cmdline') ? false : 'no /proc here' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-launch-'));
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, `listen: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\nadmin: { listen: null }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\nsites: [{ hosts: ["*"], static: ${JSON.stringify(dir)} }]\n`);
  const { MALLOC_ARENA_MAX: _, NODE_OPTIONS: __, ...env } = process.env;
  const child = spawn(process.execPath, [join(ROOT, 'bin/outpost.js'), '-c', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d; });
  child.stderr.on('data', (d: Buffer) => { output += d; });
  try {
    const deadline = Date.now() + 15_000;
    while (!/listening on https:/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    for (const flag of SERVING_FLAGS) assert.ok(argv.includes(flag), `${flag} in ${argv.join(' ')}`);
    assert.ok(argv.includes('-c') && argv.includes(config), 'with its own arguments');
    const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
    assert.ok(environ.includes('MALLOC_ARENA_MAX=2'), 'glibc held to two arenas, as bin/pinned-node does');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
