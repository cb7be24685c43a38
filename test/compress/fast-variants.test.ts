import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFastVariants, FAST } from '../../src/compress/fast-variants.ts';
import type { Context, Variants } from '../../src/pipeline/context.ts';

test('an upgrade waiting in the queue holds a copy of its input, not a view into a cache slab', async () => {
  const inputs: Buffer[] = [];
  const fast = createFastVariants(async (_coding, input) => {
    inputs.push(input);
    return Buffer.from('smaller');
  });
  // The record's bytes as the memory store holds them: 30 KB inside a 1 MiB slab.
  const slab = Buffer.alloc(1 << 20, 0x61);
  const identity = slab.subarray(4096, 4096 + 30_000);
  const kept: Array<{ token: string; from: Buffer }> = [];
  const variants: Variants = { identity, get: () => undefined, put: (_coding, _body, token, from) => kept.push({ token, from }) };
  const ctx = {} as Context;
  // Kept at fast quality, then served from there until it proves popular.
  const stored = { body: Buffer.from('fast'), token: FAST.br };
  const key = fast.upgradable(ctx, variants, 'br', stored, '"e"')!;
  for (let i = 0; i < 5 && inputs.length === 0; i++) {
    fast.servedFast(ctx, variants, 'br', 100, stored.body, key, '"e"');
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(inputs.length, 1, 'upgraded once');
  assert.equal(inputs[0]!.buffer.byteLength, 30_000, 'its own 30,000 bytes, not the slab');
  assert.deepEqual(inputs[0], identity);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(kept.length, 1);
  assert.deepEqual(kept[0]!.from, identity, 'kept as made from the same bytes');
});
