import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, mayServeStaleOnError } from '../../src/cache/decide.ts';
import { parseCacheControl, seconds } from '../../src/http/cache-control.ts';
import { primaryKey, secondaryKey, varyNames } from '../../src/cache/key.ts';
import { tagsOf } from '../../src/cache/entries.ts';

test('Cache-Control parsing: case, quotes, first occurrence wins, malformed numbers', () => {
  const cc = parseCacheControl('Max-Age=60, max-age=10, no-cache="set-cookie", s-maxage="30", private');
  assert.equal(seconds(cc, 'max-age'), 60);
  assert.equal(cc.get('no-cache'), 'set-cookie');
  assert.equal(seconds(cc, 's-maxage'), 30);
  assert.equal(cc.get('private'), true);
  assert.equal(seconds(parseCacheControl('max-age=-1'), 'max-age'), undefined);
  assert.equal(seconds(parseCacheControl('max-age=abc'), 'max-age'), undefined);
  assert.equal(seconds(parseCacheControl('max-age=99999999999999'), 'max-age'), 2 ** 31);
  assert.equal(parseCacheControl(['max-age=5', 'public']).get('public'), true);
});

// age, lifetime in seconds; response and request Cache-Control; expected verdict
const table: Array<[string, number, number, string, string, string]> = [
  ['fresh', 10, 60, 'max-age=60', '', 'fresh'],
  ['stale', 61, 60, 'max-age=60', '', 'revalidate'],
  ['must-revalidate while fresh is still fresh', 10, 60, 'max-age=60, must-revalidate', '', 'fresh'],
  ['request no-cache', 10, 60, 'max-age=60', 'no-cache', 'revalidate'],
  ['request max-age=5 on a 10 s old response', 10, 60, 'max-age=60', 'max-age=5', 'revalidate'],
  ['request max-age=0', 1, 60, 'max-age=60', 'max-age=0', 'revalidate'],
  ['request min-fresh beyond what is left', 50, 60, 'max-age=60', 'min-fresh=20', 'revalidate'],
  ['request min-fresh within', 30, 60, 'max-age=60', 'min-fresh=20', 'fresh'],
  ['max-stale without value', 500, 60, 'max-age=60', 'max-stale', 'stale-acceptable'],
  ['max-stale=100 within', 100, 60, 'max-age=60', 'max-stale=100', 'stale-acceptable'],
  ['max-stale=10 beyond', 100, 60, 'max-age=60', 'max-stale=10', 'revalidate'],
  ['max-stale never beats must-revalidate', 100, 60, 'max-age=60, must-revalidate', 'max-stale', 'revalidate'],
  ['max-stale never beats s-maxage', 100, 60, 's-maxage=60', 'max-stale', 'revalidate'],
  ['max-stale never beats proxy-revalidate', 100, 60, 'max-age=60, proxy-revalidate', 'max-stale', 'revalidate'],
  ['no-cache response', 0, 0, 'no-cache', '', 'revalidate'],
  ['stale-while-revalidate window', 70, 60, 'max-age=60, stale-while-revalidate=30', '', 'stale-while-revalidate'],
  ['past the stale-while-revalidate window', 100, 60, 'max-age=60, stale-while-revalidate=30', '', 'revalidate'],
  ['stale-while-revalidate never beats must-revalidate', 70, 60, 'max-age=60, must-revalidate, stale-while-revalidate=30', '', 'revalidate'],
];

for (const [name, age, lifetime, response, request, expected] of table) {
  test(`decide: ${name}`, () => {
    const verdict = decide({ age, lifetime }, { response: parseCacheControl(response), request: parseCacheControl(request) });
    assert.equal(verdict.kind, expected);
  });
}

test('decide: Pragma: no-cache counts only without Cache-Control (RFC 9111 §5.4)', () => {
  assert.equal(decide({ age: 1, lifetime: 60 }, { response: parseCacheControl('max-age=60'), request: parseCacheControl(undefined), pragmaNoCache: true }).kind, 'revalidate');
  assert.equal(decide({ age: 1, lifetime: 60 }, { response: parseCacheControl('max-age=60'), request: parseCacheControl('max-stale'), pragmaNoCache: true }).kind, 'fresh');
});

test('stale-if-error: response window, request window, grace; never with must-revalidate', () => {
  const f = { age: 100, lifetime: 60 };
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60, stale-if-error=60'), request: parseCacheControl(''), graceSeconds: 0 }), true);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60, stale-if-error=10'), request: parseCacheControl(''), graceSeconds: 0 }), false);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60'), request: parseCacheControl('stale-if-error=50'), graceSeconds: 0 }), true);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60'), request: parseCacheControl(''), graceSeconds: 40 }), true);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60'), request: parseCacheControl(''), graceSeconds: 0 }), false);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60, must-revalidate, stale-if-error=600'), request: parseCacheControl(''), graceSeconds: 600 }), false);
  // an explicit window is the limit: grace does not stretch it
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60, stale-if-error=10'), request: parseCacheControl(''), graceSeconds: 600 }), false);
  assert.equal(mayServeStaleOnError(f, { response: parseCacheControl('max-age=60'), request: parseCacheControl('stale-if-error=10'), graceSeconds: 600 }), false);
});

test('keys: scheme, host case and default port, path and query; GET and HEAD share', () => {
  assert.equal(primaryKey({ scheme: 'https', authority: 'Example.COM:443', target: '/a?b=1' }), 'https://example.com/a?b=1');
  assert.equal(primaryKey({ scheme: 'https', authority: 'example.com:8443', target: '/a' }), 'https://example.com:8443/a');
  assert.notEqual(primaryKey({ scheme: 'http', authority: 'example.com', target: '/a' }), primaryKey({ scheme: 'https', authority: 'example.com', target: '/a' }));
});

test('vary: names normalized, Accept-Encoding never splits, * is unstorable', () => {
  assert.deepEqual(varyNames('Accept-Language, accept-encoding,  X-Device'), ['accept-language', 'x-device']);
  assert.equal(varyNames('Accept, *'), '*');
  assert.deepEqual(varyNames(undefined), []);
  const a = secondaryKey(['accept-language'], { 'accept-language': 'en, fr' });
  assert.equal(a, secondaryKey(['accept-language'], { 'accept-language': 'en,fr' }));
  assert.notEqual(a, secondaryKey(['accept-language'], {}));
  assert.notEqual(secondaryKey(['accept-language'], {}), secondaryKey(['accept-language'], { 'accept-language': '' }));
  // list fields: case, member order and whitespace carry no meaning
  assert.equal(secondaryKey(['accept-language'], { 'accept-language': 'fr, en;q=0.5' }), secondaryKey(['accept-language'], { 'accept-language': 'EN; q=0.5,FR' }));
  assert.notEqual(secondaryKey(['accept-language'], { 'accept-language': 'fr' }), secondaryKey(['accept-language'], { 'accept-language': 'en' }));
  // other fields keep case and order
  assert.notEqual(secondaryKey(['cookie'], { cookie: 'a=1; b=2' }), secondaryKey(['cookie'], { cookie: 'A=1; b=2' }));
});

test('tags: Cache-Tag is comma-separated, Surrogate-Key space-separated', () => {
  assert.deepEqual([...tagsOf({ 'cache-tag': 'a, b', 'surrogate-key': 'c  d a' })].sort(), ['a', 'b', 'c', 'd']);
  assert.equal(tagsOf({}), tagsOf({ 'content-type': 'text/html' }), 'no tags: one shared empty list');
  assert.deepEqual(tagsOf({}), []);
});
