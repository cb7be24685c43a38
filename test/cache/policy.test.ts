import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCacheControl, parseCacheControlField } from '../../src/http/cache-control.ts';
import { currentAge, initialAge, responseFacts, retentionMs, whyNotStorable, type PolicyOptions } from '../../src/cache/policy.ts';
import { mergeNotModified, selectedBy304 } from '../../src/cache/revalidation.ts';
import { invalidationTargets, isUnsafeMethod } from '../../src/cache/invalidation.ts';

/**
 * The cache policy as pure functions: literal header fields in, decisions out, time passed in.
 * Each row names the rule (and the bug on 6d04436 it guards against, where there was one).
 */

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const DATE = new Date(NOW).toUTCString();
const options: PolicyOptions = { targeted: ['outpost-cache-control', 'cdn-cache-control'], heuristicFraction: 0.1 };
const rules = { storeSetCookie: false, heuristicWithCredentials: false };
const facts = (headers: Record<string, string | string[]>, status = 200) => responseFacts({ status, headers: { date: DATE, ...headers }, receivedAt: NOW }, options);

test('Cache-Control parsing: names are case-insensitive, lines join, quoted values keep commas, first value wins', () => {
  const cc = parseCacheControl(['Max-Age=60, PRIVATE', 'no-cache="set-cookie, x-a", max-age=10']);
  assert.equal(cc.get('max-age'), '60');
  assert.equal(cc.get('private'), true);
  assert.equal(cc.get('no-cache'), 'set-cookie, x-a');
  assert.deepEqual([...parseCacheControlField('max-age=60, max-age=10').conflicting], ['max-age']);
  assert.equal(parseCacheControlField('max-age=60, max-age=60').conflicting.size, 0);
  assert.equal(parseCacheControl('a="x\\"y", b').get('a'), 'x"y');
  assert.equal(parseCacheControl(' , ,max-age=5 ,').get('max-age'), '5');
  assert.equal(parseCacheControl('max-age =5').get('max-age'), true, 'no whitespace before "=" (RFC 9111 §5.2 grammar)');
  assert.equal(parseCacheControl('max-age= 5').get('max-age'), '', 'nor after it');
  assert.equal(parseCacheControl(undefined).size, 0);
});

test('Cache-Control: one parse per distinct value, shared by the records and requests that send it; the memo is bounded', () => {
  const first = parseCacheControlField('public, max-age=300');
  assert.equal(parseCacheControlField('public, max-age=300'), first, 'the same value: the same read-only result');
  assert.equal(parseCacheControlField(['public', 'max-age=300']), first, 'field lines join to the same value');
  assert.equal(first.directives.get('max-age'), '300');
  const long = `max-age=60, x=${'y'.repeat(300)}`;
  assert.notEqual(parseCacheControlField(long), parseCacheControlField(long), 'a long value is parsed each time, never kept');
  assert.equal(parseCacheControlField(long).directives.get('max-age'), '60');
  for (let i = 0; i < 1000; i++) parseCacheControlField(`max-age=${i}, x-once`);
  assert.notEqual(parseCacheControlField('public, max-age=300'), first, 'a thousand other values started the memo over');
});

// name, response fields, status, expected lifetime (s), source
const lifetimes: Array<[string, Record<string, string | string[]>, number, number, string]> = [
  ['max-age', { 'cache-control': 'max-age=60' }, 200, 60, 'max-age'],
  ['Max-Age in another case', { 'cache-control': 'Max-Age=60' }, 200, 60, 'max-age'],
  ['s-maxage wins for a shared cache', { 'cache-control': 'max-age=60, s-maxage=5' }, 200, 5, 's-maxage'],
  ['two Cache-Control lines', { 'cache-control': ['public', 'max-age=30'] }, 200, 30, 'max-age'],
  ['contradicting max-age values: stale (§4.2.1)', { 'cache-control': 'max-age=3600, max-age=1' }, 200, 0, 'invalid'],
  ['negative max-age: stale', { 'cache-control': 'max-age=-1' }, 200, 0, 'invalid'],
  ['max-age with junk: stale', { 'cache-control': 'max-age=60s' }, 200, 0, 'invalid'],
  ['Expires minus Date', { expires: new Date(NOW + 120_000).toUTCString() }, 200, 120, 'expires'],
  ['Expires with UTC instead of GMT is invalid: already expired (§5.3)', { expires: new Date(NOW + 120_000).toUTCString().replace('GMT', 'UTC') }, 200, 0, 'invalid'],
  ['Expires with dashes is invalid', { expires: 'Mon, 30-Nov-2026 13:00:00 GMT' }, 200, 0, 'invalid'],
  ['Expires with a one-digit hour is invalid', { expires: 'Mon, 30 Nov 2026 1:00:00 GMT' }, 200, 0, 'invalid'],
  ['Expires: 0', { expires: '0' }, 200, 0, 'invalid'],
  ['two different Expires lines', { expires: [new Date(NOW + 60_000).toUTCString(), new Date(NOW + 99_000).toUTCString()] }, 200, 0, 'invalid'],
  ['max-age beats Expires', { 'cache-control': 'max-age=10', expires: new Date(NOW + 120_000).toUTCString() }, 200, 10, 'max-age'],
  ['no-cache: stored, never fresh', { 'cache-control': 'no-cache, max-age=60' }, 200, 0, 'none'],
  ['heuristic: 10 % of Date − Last-Modified', { 'last-modified': new Date(NOW - 100_000_000).toUTCString() }, 200, 10_000, 'heuristic'],
  ['no heuristic for a 500', { 'last-modified': new Date(NOW - 100_000_000).toUTCString() }, 500, 0, 'none'],
  ['explicit freshness for a 500 counts', { 'cache-control': 'max-age=7' }, 500, 7, 'max-age'],
  ['CDN-Cache-Control overrides Cache-Control (RFC 9213)', { 'cache-control': 'max-age=5', 'cdn-cache-control': 'max-age=300' }, 200, 300, 'max-age'],
  ['the targeted field also replaces Expires', { 'cdn-cache-control': 'max-age=30', expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }, 200, 30, 'max-age'],
  ['our own field wins over CDN-Cache-Control', { 'cdn-cache-control': 'max-age=30', 'outpost-cache-control': 'max-age=90' }, 200, 90, 'max-age'],
  ['an empty targeted field is ignored', { 'cdn-cache-control': '', 'cache-control': 'max-age=9' }, 200, 9, 'max-age'],
];

test('freshness lifetime (RFC 9111 §4.2.1, §4.2.2, §5.3; RFC 9213)', () => {
  for (const [name, headers, status, lifetime, source] of lifetimes) {
    const f = facts(headers, status);
    assert.equal(f.lifetime, lifetime, name);
    assert.equal(f.lifetimeSource, source, name);
  }
  assert.equal(facts({ 'cdn-cache-control': 'private', 'cache-control': 'max-age=60' }).directivesFrom, 'cdn-cache-control');
});

test('age (RFC 9111 §4.2.3): Age, apparent age, response delay and resident time; malformed Age ignored', () => {
  const stored = (age: string | undefined, _date: number) => ({ headers: age === undefined ? {} as Record<string, string> : { age }, requestTime: NOW - 2000, responseTime: NOW });
  assert.equal(initialAge(stored('100', NOW), NOW), 102, 'Age + the 2 s the request took');
  assert.equal(initialAge(stored(undefined, NOW - 30_000), NOW - 30_000), 30, 'the Date lies 30 s in the past');
  assert.equal(initialAge(stored('7200.0', NOW), NOW), 2, '"7200.0" is no delta-seconds (§5.1)');
  assert.equal(initialAge(stored('-5', NOW), NOW), 2);
  assert.equal(initialAge(stored('7200, 0', NOW), NOW), 7202, 'of a list, the first member');
  assert.equal(currentAge(10, NOW, NOW + 5000), 15);
});

// name, request fields, request Cache-Control, status, response fields, expected reason (null = storable)
const storability: Array<[string, Record<string, string>, string, number, Record<string, string>, string | null]> = [
  ['max-age', {}, '', 200, { 'cache-control': 'max-age=60' }, null],
  ['private in any case is never stored (the privacy leak)', {}, '', 200, { 'cache-control': 'max-age=600, Private' }, 'private'],
  ['No-Store', {}, '', 200, { 'cache-control': 'No-Store, max-age=60' }, 'no-store'],
  ['request no-store', {}, 'no-store', 200, { 'cache-control': 'max-age=60' }, 'request-no-store'],
  ['Set-Cookie is personal by default', {}, '', 200, { 'cache-control': 'max-age=60', 'set-cookie': 'a=1' }, 'set-cookie'],
  ['Authorization without public', { authorization: 'Bearer x' }, '', 200, { 'cache-control': 'max-age=60' }, 'authorization'],
  ['Authorization with s-maxage', { authorization: 'Bearer x' }, '', 200, { 'cache-control': 's-maxage=60' }, null],
  ['Authorization with must-revalidate', { authorization: 'Bearer x' }, '', 200, { 'cache-control': 'max-age=60, must-revalidate' }, null],
  ['any final status with explicit freshness: 204', {}, '', 204, { 'cache-control': 'max-age=60' }, null],
  ['299', {}, '', 299, { 'cache-control': 'max-age=60' }, null],
  ['400', {}, '', 400, { 'cache-control': 'max-age=60' }, null],
  ['503', {}, '', 503, { 'cache-control': 'max-age=60' }, null],
  ['599', {}, '', 599, { 'cache-control': 'max-age=60' }, null],
  ['999 is no valid status', {}, '', 999, { 'cache-control': 'max-age=60' }, 'invalid-status'],
  ['500 without freshness', {}, '', 500, {}, 'no-explicit-freshness'],
  ['302 without freshness', {}, '', 302, {}, 'no-explicit-freshness'],
  ['206 is never stored', {}, '', 206, { 'cache-control': 'max-age=60' }, 'partial'],
  ['Vary: *', {}, '', 200, { 'cache-control': 'max-age=60', vary: 'Accept, *' }, 'vary-star'],
  ['heuristic for a request with Cookie: no (cache deception)', { cookie: 'sid=alice' }, '', 200, { 'last-modified': 'Mon, 02 Nov 2026 00:00:00 GMT' }, 'heuristic-with-credentials'],
  ['explicit freshness with Cookie: yes', { cookie: 'sid=alice' }, '', 200, { 'cache-control': 'max-age=60' }, null],
  ['heuristic without credentials', {}, '', 200, { 'last-modified': 'Mon, 02 Nov 2026 00:00:00 GMT' }, null],
  ['must-understand lets an understood status ignore no-store', {}, '', 200, { 'cache-control': 'must-understand, no-store, max-age=60' }, null],
  ['must-understand with a status it does not understand', {}, '', 299, { 'cache-control': 'must-understand, max-age=60' }, 'must-understand'],
  ['CDN-Cache-Control: private governs this cache', {}, '', 200, { 'cache-control': 'max-age=60', 'cdn-cache-control': 'private' }, 'private'],
  ['CDN-Cache-Control: max-age lifts a browser-only no-store', {}, '', 200, { 'cache-control': 'no-store', 'cdn-cache-control': 'max-age=60' }, null],
];

test('storability (RFC 9111 §3, §3.5, §5.2.2; RFC 9213)', () => {
  for (const [name, requestHeaders, requestCc, status, headers, reason] of storability) {
    const input = { requestHeaders, requestDirectives: parseCacheControl(requestCc), status, headers: { date: DATE, ...headers }, facts: facts(headers, status) };
    assert.equal(whyNotStorable(input, rules), reason, name);
  }
  const cookie = { requestHeaders: {}, requestDirectives: parseCacheControl(''), status: 200, headers: { 'cache-control': 'max-age=60', 'set-cookie': 'a=1' }, facts: facts({ 'cache-control': 'max-age=60' }) };
  assert.equal(whyNotStorable(cookie, { ...rules, storeSetCookie: true }), null, 'storeSetCookie stores it (without the cookie), whatever public says');
});

test('retention: what is left of freshness plus the longest stale window; nothing for an immediately stale response without validators', () => {
  assert.equal(retentionMs({ facts: facts({ 'cache-control': 'max-age=60' }), age: 10, graceSeconds: 10 }), 60_000);
  assert.equal(retentionMs({ facts: facts({ 'cache-control': 'max-age=60, stale-while-revalidate=100' }), age: 0, graceSeconds: 10 }), 160_000);
  assert.equal(retentionMs({ facts: facts({ 'cache-control': 'max-age=60', etag: '"a"' }), age: 0, graceSeconds: 10 }), (60 + 3600) * 1000);
  assert.equal(retentionMs({ facts: facts({ 'cache-control': 'no-cache' }), age: 0, graceSeconds: 10 }), 0);
  assert.equal(retentionMs({ facts: facts({ 'cache-control': 'no-cache', etag: '"a"' }), age: 0, graceSeconds: 10 }), 3600_000);
});

test('a 304 updates the stored response it is about (RFC 9111 §4.3.4, §3.2)', () => {
  const stored = { status: 200, headers: { etag: '"a"', 'content-length': '5', 'x-v': '1', age: '30' }, requestTime: NOW - 1, responseTime: NOW, tags: [] };
  assert.equal(selectedBy304(stored, { etag: '"a"' }), true);
  assert.equal(selectedBy304(stored, { etag: '"b"' }), false, 'another strong validator: another representation');
  assert.equal(selectedBy304(stored, { etag: 'W/"a"' }), true, 'weak comparison for a weak validator');
  assert.equal(selectedBy304(stored, {}), true, 'no validator: our own conditional named this response');
  const merged = mergeNotModified(stored, { etag: '"a"', 'x-v': '2', 'content-length': '0', 'cache-control': 'max-age=9' }, { requestTime: NOW + 1, responseTime: NOW + 2 });
  assert.equal(merged.headers['x-v'], '2');
  assert.equal(merged.headers['content-length'], '5', 'Content-Length is never updated');
  assert.equal(merged.headers.age, undefined, 'the old Age no longer applies');
  assert.equal(merged.responseTime, NOW + 2);
});

test('invalidation (RFC 9111 §4.4): every method not known to be safe; same-origin Location and Content-Location', () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'M-SEARCH', 'PROPPATCH', 'MKCOL', 'LOCK', 'UNLOCK', 'FOO']) assert.equal(isUnsafeMethod(method), true, method);
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'PROPFIND']) assert.equal(isUnsafeMethod(method), false, method);
  const ctx = { scheme: 'https' as const, authority: 'example.com', target: '/a' };
  assert.deepEqual(invalidationTargets(ctx, { location: '/b?x=1', 'content-location': 'https://other.example/c' }), ['https://example.com/a', 'https://example.com/b?x=1']);
});
