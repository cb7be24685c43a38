import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { brotliCompressSync } from 'node:zlib';
import { createEncodeOnce } from '../../src/compress/encode-once.ts';
import type { Encoding } from '../../src/pipeline/context.ts';
import { chain, gc, promotedByTwoYoungCollections } from '../helpers/young-generation.ts';

/** A real encoder (Brotli, whatever the coding: only the calls matter here) that counts its calls. */
function countingBrotli() {
  const calls: Array<[Encoding, Buffer]> = [];
  const encode = async (coding: Encoding, input: Buffer) => {
    calls.push([coding, input]);
    return brotliCompressSync(input);
  };
  return { calls, encode };
}

test('requests encoding one body at the same moment share one encode; the first to keep it is the only one', async () => {
  const { calls, encode } = countingBrotli();
  const encodeOnce = createEncodeOnce(encode);
  const body = Buffer.from('x'.repeat(5000));
  const shared = [encodeOnce('br', body), encodeOnce('br', body), encodeOnce('br', body)];
  assert.equal(calls.length, 1);
  assert.equal(shared[0], shared[1]);
  assert.equal(shared[1], shared[2]);
  const outputs = await Promise.all(shared.map((s) => s.fast));
  assert.ok(outputs.every((out) => out === outputs[0]), 'the same Buffer for all');
  // another coding, or other bytes (even equal ones), is another encode
  const equalBytes = Buffer.from(body);
  encodeOnce('gzip', body);
  encodeOnce('br', equalBytes);
  assert.equal(calls.length, 3);
  assert.equal(shared[0].kept, false, 'whoever hands it to a holder says so');
});

test('an encode that settled is forgotten in the next turn: a later request encodes again (or finds the kept variant)', async () => {
  const { calls, encode } = countingBrotli();
  const encodeOnce = createEncodeOnce(encode);
  const body = Buffer.from('y'.repeat(3000));
  const first = encodeOnce('br', body);
  await first.fast;
  // still this turn: the microtasks of requests woken together share it
  assert.equal(encodeOnce('br', body), first);
  await nextTurn();
  await nextTurn();
  assert.notEqual(encodeOnce('br', body), first);
  assert.equal(calls.length, 2);
});

test('a failed encode fails every request that shared it, and is forgotten', async () => {
  let calls = 0;
  const encodeOnce = createEncodeOnce(async () => {
    calls++;
    throw new Error('refused');
  });
  const body = Buffer.from('z');
  const [a, b] = [encodeOnce('br', body), encodeOnce('br', body)];
  await assert.rejects(a.fast, /refused/);
  await assert.rejects(b.fast, /refused/);
  await nextTurn();
  await nextTurn();
  await assert.rejects(encodeOnce('br', body).fast, /refused/);
  assert.equal(calls, 2);
});

test('a body encoded at a busy moment is not kept by a table V8 rebuilt while it was being encoded: it dies young', async () => {
  // The bodies being encoded are the keys of a Map, which V8 rebuilds as keys come and go; a
  // replaced table in the old generation (where a long-lived Map's is) goes on pointing at its keys
  // until the next full collection, and young collections take that as alive: every miss's whole
  // body was moved to the old generation. The Map is made anew each turn it was used in, so it is young.
  const encodeOnce = createEncodeOnce(async () => Buffer.alloc(0));
  gc(); // the Map and its table are old now
  await encodeOnce('br', Buffer.from('first')).fast;
  await nextTurn(); // the turn's encodes are forgotten
  gc({ type: 'minor' }); // the young generation empty, so nothing below outlives a young collection by chance
  await (async () => {
    const body = { chain: chain(10_000) } as unknown as Buffer; // only a key here
    const encodes = [encodeOnce('br', body).fast];
    // Other bodies in the same moment: the table is rebuilt while `body` is in it.
    for (let i = 0; i < 20; i++) encodes.push(encodeOnce('br', Buffer.from(`other ${i}`)).fast);
    await Promise.all(encodes);
  })();
  for (let i = 0; i < 3; i++) await nextTurn();
  const promoted = promotedByTwoYoungCollections();
  // ~320 KB when a replaced table held the body, a few KB when not.
  assert.ok(promoted < 100_000, `the encoded body was moved to the old generation (${promoted} bytes)`);
});
