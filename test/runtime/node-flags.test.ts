import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SERVING_FLAGS, withServingFlags } from '../../src/runtime/node-flags.ts';

test('serving flags are added to a launch line that lacks them, and never override one given', () => {
  assert.deepEqual(withServingFlags([]), [...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--enable-source-maps']), ['--enable-source-maps', ...SERVING_FLAGS]);
  assert.deepEqual(withServingFlags(['--max-semi-space-size=16']), ['--max-semi-space-size=16'], 'the operator\'s own size wins');
});
