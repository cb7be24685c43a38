import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createNegotiator, parseAcceptEncoding } from '../../src/compress/negotiate.ts';
import { hasContentEncoding, isCompressibleType } from '../../src/compress/compressible.ts';
import { hasNoTransform } from '../../src/http/cache-control.ts';
import type { Encoding } from '../../src/pipeline/context.ts';

// Accept-Encoding in, (coding, identity acceptable) out, with our order br, zstd, gzip.
const NEGOTIATION: Array<[string | undefined, Encoding | null, boolean, string]> = [
  [undefined, null, true, 'no header: identity (any coding would be allowed, none is assumed)'],
  ['', null, true, 'empty: "does not want any content coding"'],
  ['gzip', 'gzip', true, 'one coding'],
  ['gzip, deflate, br, zstd', 'br', true, 'equal q: our order'],
  ['gzip, deflate, br', 'br', true, 'what browsers send'],
  ['zstd, gzip', 'zstd', true, 'br absent: next in our order'],
  ['br;q=0.5, gzip', 'gzip', true, 'higher q wins over our order'],
  ['br;q=1.0, gzip;q=0.999', 'br', true, 'qvalue with decimals'],
  ['BR, GZip', 'br', true, 'codings are case-insensitive'],
  ['x-gzip', 'gzip', true, 'x-gzip is gzip (§8.4.1.3)'],
  ['br;q=0, gzip', 'gzip', true, 'q=0 refuses'],
  ['br;q=0', null, true, 'only a refusal: identity'],
  ['*', 'br', true, '* accepts every coding, ours first'],
  ['*;q=0.5, gzip', 'gzip', true, 'explicit beats *'],
  ['br;q=0, *', 'zstd', true, '* covers what is not listed; br stays refused'],
  ['*;q=0', null, false, '*;q=0 refuses identity too: nothing acceptable'],
  ['*;q=0, identity', null, true, 'a more specific identity entry wins over *;q=0'],
  ['identity;q=0', null, false, 'identity refused and no coding: 406 material'],
  ['gzip, identity;q=0', 'gzip', false, 'identity refused, gzip fine'],
  ['identity, gzip;q=0.5', null, true, 'identity preferred by q'],
  ['identity, gzip', 'gzip', true, 'identity ties a coding: the coding wins'],
  ['gzip;q=0.001', 'gzip', true, 'the lowest non-zero q still beats implicit identity'],
  ['deflate, compress', null, true, 'codings we do not make'],
  ['br;q=2, gzip', 'gzip', true, 'q above 1 is invalid: the element is ignored'],
  ['br;q=abc, gzip;q=0.1', 'gzip', true, 'q that does not parse: the element is ignored'],
  ['br;q=0.5000', null, true, 'more than three decimals is not a qvalue'],
  [' br ; Q=0.2 , gzip ; q=0.1 ', 'br', true, 'whitespace and upper-case Q'],
  ['br;level=5;q=0.4, gzip;q=0.3', 'br', true, 'other parameters are skipped'],
  [',, gzip,', 'gzip', true, 'empty list elements'],
  ['gzip;q=0, gzip', null, true, 'the first of duplicates counts'],
  ['zstd;q=0.8, br;q=0.8, gzip;q=0.9', 'gzip', true, 'highest q'],
];

test('negotiation table (RFC 9110 §12.5.3)', () => {
  const negotiate = createNegotiator(['br', 'zstd', 'gzip']);
  for (const [header, coding, identity, why] of NEGOTIATION) {
    assert.deepEqual({ ...negotiate(header) }, { coding, identity }, `${JSON.stringify(header)}: ${why}`);
    // the cached answer is the same
    assert.deepEqual({ ...negotiate(header) }, { coding, identity }, `${JSON.stringify(header)} (cached)`);
  }
});

test('negotiation follows the configured order and only offers configured codings', () => {
  const gzipFirst = createNegotiator(['gzip', 'br']);
  assert.equal(gzipFirst('br, gzip, zstd').coding, 'gzip');
  assert.equal(gzipFirst('zstd').coding, null);
  assert.equal(gzipFirst('*').coding, 'gzip');
  assert.equal(gzipFirst(['br', 'gzip']).coding, 'gzip', 'a repeated header is one list');
});

test('the parse cache is bounded and does not keep very long values', () => {
  const negotiate = createNegotiator(['br', 'gzip']);
  for (let i = 0; i < 5000; i++) assert.equal(negotiate(`gzip;q=0.${i % 10}01, x${i}`).coding, 'gzip');
  const long = `${'x-junk, '.repeat(200)}br`;
  assert.equal(negotiate(long).coding, 'br');
  assert.deepEqual([...parseAcceptEncoding('gzip;q=0.5, br')], [['gzip', 0.5], ['br', 1]]);
});

test('compressible types, no-transform and existing codings', () => {
  const TYPES: Array<[unknown, boolean]> = [
    ['text/html; charset=utf-8', true], ['TEXT/CSS', true], ['application/javascript', true], ['text/javascript', true],
    ['application/json', true], ['application/problem+json', true], ['application/vnd.api+json', true],
    ['application/x-foo+xml', true], ['image/svg+xml', true], ['application/wasm', true], ['text/x-unknown', true],
    ['image/png', false], ['image/jpeg', false], ['video/mp4', false], ['application/zip', false], ['font/woff2', false],
    ['application/octet-stream', false], ['text/event-stream', false], [undefined, false], ['', false], [42, false],
  ];
  for (const [type, expected] of TYPES) assert.equal(isCompressibleType(type), expected, String(type));
  assert.equal(hasNoTransform('public, no-transform'), true);
  assert.equal(hasNoTransform('No-Transform'), true);
  assert.equal(hasNoTransform(['max-age=1', 'no-transform']), true);
  assert.equal(hasNoTransform('no-transformer'), false);
  assert.equal(hasNoTransform(undefined), false);
  assert.equal(hasContentEncoding('gzip'), true);
  assert.equal(hasContentEncoding('identity'), false);
  assert.equal(hasContentEncoding(undefined), false);
});
