import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { encodeInBackground } from '../../src/compress/background.ts';
import { brotliWindowFor, encodeBuffer } from '../../src/compress/encoders.ts';

const input = readFileSync(new URL('../../README.md', import.meta.url)).subarray(0, 20_000);

test('background encoder: each coding at high quality, smaller than fast, decodes to the input', async () => {
  const decode = { br: zlib.brotliDecompressSync, zstd: zlib.zstdDecompressSync, gzip: zlib.gunzipSync } as const;
  for (const coding of ['br', 'zstd', 'gzip'] as const) {
    const [high, fast] = await Promise.all([encodeInBackground(coding, input), encodeBuffer(coding, input, 'fast')]);
    assert.ok(decode[coding](high).equals(input), coding);
    assert.ok(high.length <= fast.length, `${coding}: high ${high.length} B, fast ${fast.length} B`);
  }
  // Brotli 11 is deterministic: the same bytes as zlib's own Brotli 11 of the input, with a window
  // that holds the input (brotliWindowFor: 15 bits for 20 KB, not the default 22).
  const Z = zlib.constants;
  assert.equal(brotliWindowFor(input.length), 15);
  assert.ok((await encodeInBackground('br', input)).equals(zlib.brotliCompressSync(input, {
    params: { [Z.BROTLI_PARAM_QUALITY]: 11, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: 15 },
  })));
});

test('background encoder: a coding it does not know fails that job, and the next one still runs', async () => {
  await assert.rejects(encodeInBackground('compress' as 'br', input), /background encoder: unknown coding compress/);
  assert.ok(zlib.gunzipSync(await encodeInBackground('gzip', input)).equals(input));
});

test('background-worker.js loads nothing but Node modules (a .ts import brings the TypeScript stripper into the worker: ~18 MB)', () => {
  const source = readFileSync(new URL('../../src/compress/background-worker.js', import.meta.url), 'utf8');
  const specifiers = [...source.matchAll(/^import\s.*?from\s+'([^']+)'/gm)].map((m) => m[1]);
  assert.ok(specifiers.length > 0);
  for (const specifier of specifiers) assert.match(specifier, /^node:/);
  assert.doesNotMatch(source, /\bimport\(/);
});
