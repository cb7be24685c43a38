import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** What loading a serving process's modules (as main.ts loads them) brought in: Node's internal modules, and the files of packages. */
function loadedModules(): { internal: string[]; files: string[] } {
  const script = `
    import { createRequire } from 'node:module';
    await import('./src/runtime/serve.ts');
    await import('./src/runtime/cluster.ts');
    console.log(JSON.stringify({ internal: process.moduleLoadList, files: Object.keys(createRequire(import.meta.url).cache) }));`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout.trim().split('\n').at(-1)!);
}

test('loading the server does not pull in Node\'s own fetch (src/server/node-http.ts: node:http is not imported as ESM)', () => {
  assert.deepEqual(loadedModules().internal.filter((m) => m.includes('internal/deps/undici')), []);
});

test('prom-client is loaded only for the admin API\'s metrics (runtime/serve.ts nodeMetrics), not by every node', () => {
  assert.deepEqual(loadedModules().files.filter((f) => f.includes('node_modules/prom-client/')), []);
});
