import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

test('loading the server does not pull in Node\'s own fetch (src/server/node-http.ts: node:http is not imported as ESM)', () => {
  // Every module of a serving process, as main.ts loads them; then the internal modules Node loaded.
  const script = `
    await import('./src/runtime/serve.ts');
    await import('./src/runtime/cluster.ts');
    console.log(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('internal/deps/undici'))));`;
  const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout.trim().split('\n').at(-1)!), []);
});
