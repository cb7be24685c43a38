import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENCODER_PATH, encodeInBackground, encodeInWorker, nativeEncoder, type BackgroundEncode } from '../../src/compress/background.ts';
import { brotliWindowFor, encodeBuffer } from '../../src/compress/encoders.ts';

const input = readFileSync(new URL('../../README.md', import.meta.url)).subarray(0, 20_000);

// .ci/run sets OUTPOST_REQUIRE_MALLOC_TRIM (npm ci must build the native helpers), so there the
// native encoder's tests never skip.
const native = nativeEncoder(ENCODER_PATH);
if (native.encode === null && process.env.OUTPOST_REQUIRE_MALLOC_TRIM === '1') throw new Error(`OUTPOST_REQUIRE_MALLOC_TRIM=1 but ${native.why}`);
const skipNative = native.encode === null ? `native encoder: ${native.why}` : false;

const Z = zlib.constants;
const implementations: [string, () => BackgroundEncode, string | false][] = [
  ['native thread', () => native.encode!, skipNative],
  ['worker', () => encodeInWorker, false],
];

/** This process's threads: id → name (Linux: /proc/self/task). */
function threads(): Map<string, string> {
  return new Map(readdirSync('/proc/self/task').map((tid) => [tid, readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()]));
}

/** A thread's nice value (/proc/self/task/TID/stat, field 19). */
function niceOf(tid: string): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

// First in this file: no encoder has started yet in this process.
test('background encoder: with the native helper, encodeInBackground runs on one thread of its own at nice 19, not in a worker', { skip: skipNative }, async () => {
  const before = threads();
  for (const coding of ['br', 'zstd', 'gzip', 'br'] as const) await encodeInBackground(coding, input);
  const added = [...threads()].filter(([tid]) => !before.has(tid));
  // A worker would be another thread (a V8 isolate, named otherwise); the helper's is named outpost-encode.
  assert.deepEqual(added.map(([, name]) => name), ['outpost-encode']);
  assert.equal(niceOf(added[0][0]), 19);
});

for (const [name, encoderOf, skip] of implementations) {
  test(`background encoder (${name}): each coding at high quality, smaller than fast, the bytes Node's zlib makes`, { skip }, async () => {
    const encode = encoderOf();
    const decode = { br: zlib.brotliDecompressSync, zstd: zlib.zstdDecompressSync, gzip: zlib.gunzipSync } as const;
    for (const coding of ['br', 'zstd', 'gzip'] as const) {
      const [high, fast] = await Promise.all([encode(coding, input), encodeBuffer(coding, input, 'fast')]);
      assert.ok(decode[coding](high).equals(input), coding);
      assert.ok(high.length <= fast.length, `${coding}: high ${high.length} B, fast ${fast.length} B`);
    }
    // Deterministic: the same bytes as zlib's own encoders of the input, Brotli 11 with a window that
    // holds the input (brotliWindowFor: 15 bits for 20 KB, not the default 22).
    assert.equal(brotliWindowFor(input.length), 15);
    assert.ok((await encode('br', input)).equals(zlib.brotliCompressSync(input, {
      params: { [Z.BROTLI_PARAM_QUALITY]: 11, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: 15 },
    })));
    assert.ok((await encode('zstd', input)).equals(zlib.zstdCompressSync(input, { params: { [Z.ZSTD_c_compressionLevel]: 19 } })));
    assert.ok((await encode('gzip', input)).equals(zlib.gzipSync(input, { level: 9 })));
    // An empty body, and many queued at once: each its own answer, in any order of completion.
    assert.equal(zlib.gunzipSync(await encode('gzip', Buffer.alloc(0))).length, 0);
    assert.equal(zlib.brotliDecompressSync(await encode('br', Buffer.alloc(0))).length, 0);
    const sizes = Array.from({ length: 40 }, (_, i) => 500 + i * 250);
    const many = await Promise.all(sizes.map((size) => encode(size % 2 ? 'gzip' : 'br', input.subarray(0, size))));
    many.forEach((out, i) => assert.ok((sizes[i] % 2 ? zlib.gunzipSync(out) : zlib.brotliDecompressSync(out)).equals(input.subarray(0, sizes[i])), `job ${i}`));
  });

  test(`background encoder (${name}): a coding it does not know fails that job, and the next one still runs`, { skip }, async () => {
    const encode = encoderOf();
    await assert.rejects(encode('compress' as 'br', input), /background encoder: unknown coding compress/);
    assert.ok(zlib.gunzipSync(await encode('gzip', input)).equals(input));
  });
}

test('background encoder (native thread): its input is a copy (the caller may reuse its buffer at once)', { skip: skipNative }, async () => {
  const mine = Buffer.from(input);
  const pending = native.encode!('br', mine);
  mine.fill(0);
  assert.ok(zlib.brotliDecompressSync(await pending).equals(input));
});

test('background encoder: without the native helper, or with a file that is not one, it says why (the worker does the job)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-encoder-'));
  const missing = nativeEncoder(join(dir, 'none.node'));
  assert.equal(missing.encode, null);
  assert.match(missing.why!, /the native helper is not built \(.*none\.node; npm ci builds it/);
  writeFileSync(join(dir, 'bad.node'), 'not a shared object');
  const bad = nativeEncoder(join(dir, 'bad.node'));
  assert.equal(bad.encode, null);
  assert.match(bad.why!, /^the native helper did not load: /);
});

test('background-worker.js loads nothing but Node modules (a .ts import brings the TypeScript stripper into the worker: ~18 MB)', () => {
  const source = readFileSync(new URL('../../src/compress/background-worker.js', import.meta.url), 'utf8');
  const specifiers = [...source.matchAll(/^import\s.*?from\s+'([^']+)'/gm)].map((m) => m[1]);
  assert.ok(specifiers.length > 0);
  for (const specifier of specifiers) assert.match(specifier, /^node:/);
  assert.doesNotMatch(source, /\bimport\(/);
});
