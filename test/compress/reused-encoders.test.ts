import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { reusedBrotli, reusedGzip } from '../../src/compress/reused-encoders.ts';
import { QUALITY, brotliWindowFor, encodeBuffer } from '../../src/compress/encoders.ts';
import { htmlPage } from './support.ts';

test('reused gzip: the bytes gzipSync makes, body after body on one engine', () => {
  const gzip = reusedGzip(6);
  assert.notEqual(gzip, null, 'this runtime has the engine internals it drives (else every call would fall back to gzipSync)');
  const inputs = [
    Buffer.alloc(0), Buffer.from('a'), htmlPage(100), htmlPage(1500), htmlPage(10_000), htmlPage(65_536),
    randomBytes(70_000), // incompressible and larger than one output space: several writes
    htmlPage(300_000), htmlPage(2_000),
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
  const input = htmlPage(20_000);
  assert.deepEqual(reusedGzip(1)!(input), zlib.gzipSync(input, { level: 1 }));
  assert.deepEqual(reusedGzip(9)!(input), zlib.gzipSync(input, { level: 9 }));
});

test('encodeBuffer: fast gzip of a small body is gzip at the fast level', async () => {
  const input = htmlPage(12_000);
  assert.deepEqual(await encodeBuffer('gzip', input, 'fast'), zlib.gzipSync(input, { level: QUALITY.fast.gzip }));
});

test('reused Brotli: the bytes brotliCompressSync makes with the same parameters, body after body on one engine', () => {
  const Z = zlib.constants;
  const brotli = reusedBrotli();
  assert.notEqual(brotli, null, 'this runtime has the engine internals it drives (else every call would fall back to brotliCompressSync)');
  const cases: Array<[Buffer, Record<number, number>]> = [
    [Buffer.alloc(0), { [Z.BROTLI_PARAM_QUALITY]: 2 }],
    [htmlPage(100), { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: 100, [Z.BROTLI_PARAM_LGWIN]: 10 }],
    [htmlPage(30_000), { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: 30_000, [Z.BROTLI_PARAM_LGWIN]: 15 }],
    // parameters of the previous body must not carry over: quality 5 and the default window now
    [htmlPage(30_000), { [Z.BROTLI_PARAM_QUALITY]: 5 }],
    [randomBytes(70_000), { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: 70_000 }], // several writes
    [htmlPage(5_000), { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: 5_000, [Z.BROTLI_PARAM_LGWIN]: 13 }],
  ];
  for (const [input, params] of cases) {
    const made = brotli!(input, params);
    assert.deepEqual(made, zlib.brotliCompressSync(input, { params }), `${input.length} bytes, ${JSON.stringify(params)}`);
    assert.deepEqual(zlib.brotliDecompressSync(made), input);
    assert.equal(made.buffer.byteLength, made.length, `${input.length} bytes: owns its memory`);
  }
});

test('encodeBuffer: fast Brotli of a small body is Brotli at the fast quality with its size hint and window', async () => {
  const Z = zlib.constants;
  const input = htmlPage(12_000);
  const params = { [Z.BROTLI_PARAM_QUALITY]: QUALITY.fast.br, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: brotliWindowFor(input.length) };
  assert.deepEqual(await encodeBuffer('br', input, 'fast'), zlib.brotliCompressSync(input, { params }));
});
