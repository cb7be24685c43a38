import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SERVING_FLAGS, withServingFlags } from '../../src/runtime/node-flags.ts';

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
