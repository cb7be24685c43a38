import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** What loading a serving process's modules (as main.ts loads them) brought in: Node's internal modules of `internal`, and packages of `packages`. */
function loadedWith(internal: string, packages: string): { internal: string[]; packages: string[] } {
  const script = `
    import { createRequire } from 'node:module';
    await import('./src/runtime/serve.ts');
    await import('./src/runtime/cluster.ts');
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({
      internal: process.moduleLoadList.filter((m) => m.includes(${JSON.stringify(internal)})),
      packages: loaded.filter((f) => f.includes(${JSON.stringify(`node_modules/${packages}/`)})),
    }));`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout.trim().split('\n').at(-1)!);
}

test('loading the server does not pull in Node\'s own fetch (src/server/node-http.ts: node:http is not imported as ESM)', () => {
  assert.deepEqual(loadedWith('internal/deps/undici', 'undici').internal, []);
});

test('prom-client is loaded only for the admin API\'s metrics (runtime/serve.ts nodeMetrics), not by every node', () => {
  assert.deepEqual(loadedWith('-', 'prom-client').packages, []);
});
