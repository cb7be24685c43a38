import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Node's module compile cache (src/runtime/compile-cache.ts): where the launchers point it, and that a running server writes it. */

const ROOT = resolve(import.meta.dirname, '../..');

/** NODE_COMPILE_CACHE as a process started by bin/pinned-node sees it, given `env`. */
function cacheSeenBy(env: Record<string, string>): string {
  const { NODE_COMPILE_CACHE: _, ...rest } = process.env;
  const out = spawnSync('sh', [join(ROOT, 'bin/pinned-node'), '-e', 'console.log(JSON.stringify(process.env.NODE_COMPILE_CACHE ?? null))'], { encoding: 'utf8', env: { ...rest, ...env } });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout) as string;
}

test('bin/pinned-node keeps compiled modules in node_modules/.cache unless the operator chose a place (or none)', () => {
  assert.equal(cacheSeenBy({}), join(ROOT, 'node_modules/.cache/outpost-compile'));
  assert.equal(cacheSeenBy({ NODE_COMPILE_CACHE: '/srv/outpost-cache' }), '/srv/outpost-cache');
  assert.equal(cacheSeenBy({ NODE_COMPILE_CACHE: '' }), '', 'an empty value is the operator\'s: off');
});

/** Files under `dir`, at any depth. */
const filesIn = (dir: string): number =>
  readdirSync(dir, { withFileTypes: true, recursive: true }).filter((entry) => entry.isFile()).length;

test('a started server writes its compiled modules once it listens, not only when it exits (Node\'s own moment)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-compile-cache-'));
  const cache = join(dir, 'cache');
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, `listen: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\nadmin: { listen: null }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\nsites: [{ hosts: ["*"], static: ${JSON.stringify(dir)} }]\n`);
  const child = spawn(process.execPath, ['src/main.ts', '-c', config], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_COMPILE_CACHE: cache } });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d; });
  child.stderr.on('data', (d: Buffer) => { output += d; });
  try {
    const deadline = Date.now() + 15_000;
    while (!/listening on https:/.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Still running: every module loaded so far is in the cache (dozens of ours, undici's, zod's).
    const written = filesIn(cache);
    assert.ok(written >= 50, `${written} compiled modules in the cache while the server runs`);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
