import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { reusedGzip } from '../../src/compress/reused-gzip.ts';
import { QUALITY, encodeBuffer } from '../../src/compress/encoders.ts';

/** Text that compresses like a page: words repeated with variation. */
function text(length: number, seed: number): Buffer {
  const words = ['cache', 'origin', 'vary', 'stale', 'edge', 'brotli', 'header', 'purge', 'status', `n${seed}`];
  let out = '';
  for (let i = 0; out.length < length; i++) out += `${words[(i * 7 + seed) % words.length]}${i % 13 === 0 ? '\n' : ' '}`;
  return Buffer.from(out.slice(0, length));
}

test('reused gzip: the bytes gzipSync makes, body after body on one engine', () => {
  const gzip = reusedGzip(6);
  assert.notEqual(gzip, null, 'this runtime has the engine internals it drives (else every call would fall back to gzipSync)');
  const inputs = [
    Buffer.alloc(0), Buffer.from('a'), text(100, 1), text(1500, 2), text(10_000, 3), text(65_536, 4),
    randomBytes(70_000), // incompressible and larger than one output space: several writes
    text(300_000, 5), text(2_000, 6),
  ];
  for (const input of inputs) {
    const made = gzip!(input);
    assert.deepEqual(made, zlib.gzipSync(input, { level: 6 }), `${input.length} bytes`);
    assert.deepEqual(zlib.gunzipSync(made), input);
    // Kept as a cache variant: it must hold only itself, not a slice of a shared pool or of the output space.
    assert.equal(made.buffer.byteLength, made.length, `${input.length} bytes: owns its memory`);
  }
});

test('reused gzip: each level makes its own bytes', () => {
  const input = text(20_000, 7);
  assert.deepEqual(reusedGzip(1)!(input), zlib.gzipSync(input, { level: 1 }));
  assert.deepEqual(reusedGzip(9)!(input), zlib.gzipSync(input, { level: 9 }));
});

test('encodeBuffer: fast gzip of a small body is gzip at the fast level', async () => {
  const input = text(12_000, 8);
  assert.deepEqual(await encodeBuffer('gzip', input, 'fast'), zlib.gzipSync(input, { level: QUALITY.fast.gzip }));
});
