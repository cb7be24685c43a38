import { test } from 'node:test';
import assert from 'node:assert/strict';
import CachePolicy from 'http-cache-semantics';
import { parseCacheControl } from '../../src/http/cache-control.ts';
import { responseFacts, whyNotStorable, type PolicyOptions } from '../../src/cache/policy.ts';

/**
 * Our policy against http-cache-semantics, the reference implementation it replaced: on the
 * plain cases (lower-case directives, one field line, statuses it understands) both must agree;
 * every case where they differ is listed with the rule that makes ours right. A change that makes
 * us disagree anywhere else fails here.
 */

const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
const DATE = new Date(NOW).toUTCString();
const options: PolicyOptions = { targeted: [], heuristicFraction: 0.1 };
const rules = { storeSetCookie: false, heuristicWithCredentials: true };

function ours(status: number, headers: Record<string, string>, request: Record<string, string> = {}) {
  const all = { date: DATE, ...headers };
  const facts = responseFacts({ status, headers: all, receivedAt: NOW }, options);
  const storable = whyNotStorable({ requestHeaders: request, requestDirectives: parseCacheControl(request['cache-control']), status, headers: all, facts }, rules) === null;
  return { storable, lifetime: storable ? facts.lifetime : 0 };
}

function reference(status: number, headers: Record<string, string>, request: Record<string, string> = {}) {
  const policy = new CachePolicy({ method: 'GET', url: '/', headers: { host: 'example.com', ...request } },
    { status, headers: { date: DATE, ...headers } }, { shared: true, cacheHeuristic: 0.1, immutableMinTimeToLive: 0, ignoreCargoCult: false });
  return { storable: policy.storable(), lifetime: policy.storable() ? policy.maxAge() : 0 };
}

const AGREE: Array<[string, number, Record<string, string>, Record<string, string>?]> = [
  ['max-age', 200, { 'cache-control': 'max-age=60' }],
  ['s-maxage over max-age', 200, { 'cache-control': 'max-age=60, s-maxage=10' }],
  ['no-store', 200, { 'cache-control': 'no-store, max-age=60' }],
  ['private', 200, { 'cache-control': 'private, max-age=60' }],
  ['Expires', 200, { expires: new Date(NOW + 90_000).toUTCString() }],
  ['past Expires', 200, { expires: new Date(NOW - 90_000).toUTCString() }],
  ['heuristic from Last-Modified', 200, { 'last-modified': new Date(NOW - 1_000_000_000).toUTCString() }],
  ['a 404 with max-age', 404, { 'cache-control': 'max-age=60' }],
  ['a 301 heuristic', 301, { 'last-modified': new Date(NOW - 1_000_000_000).toUTCString() }],
  ['Authorization without public', 200, { 'cache-control': 'max-age=60' }, { authorization: 'x' }],
  ['Authorization with public', 200, { 'cache-control': 'public, max-age=60' }, { authorization: 'x' }],
  ['request no-store', 200, { 'cache-control': 'max-age=60' }, { 'cache-control': 'no-store' }],
];

test('agrees with http-cache-semantics on the plain cases', () => {
  for (const [name, status, headers, request] of AGREE) {
    assert.deepEqual(ours(status, headers, request), reference(status, headers, request), name);
  }
});

// name, status, response, what we answer, what the reference answers, the rule
const DIFFER: Array<[string, number, Record<string, string>, { storable: boolean; lifetime: number }, { storable: boolean; lifetime: number }, string]> = [
  ['Private (capitalised)', 200, { 'cache-control': 'max-age=60, Private' }, { storable: false, lifetime: 0 }, { storable: true, lifetime: 60 }, 'RFC 9111 §5.2: directive names are case-insensitive'],
  ['a 500 with max-age', 500, { 'cache-control': 'max-age=60' }, { storable: true, lifetime: 60 }, { storable: false, lifetime: 0 }, 'RFC 9111 §3: any final status with explicit freshness'],
  ['Expires with UTC', 200, { expires: new Date(NOW + 90_000).toUTCString().replace('GMT', 'UTC') }, { storable: true, lifetime: 0 }, { storable: true, lifetime: 90 }, 'RFC 9111 §5.3: an invalid date is already expired'],
  ['Age: 7200.0', 200, { 'cache-control': 'max-age=7300', age: '7200.0' }, { storable: true, lifetime: 7300 }, { storable: true, lifetime: 7300 }, 'same lifetime; the age differs (ours ignores it, §5.1): see policy.test.ts'],
  ['Vary: *', 200, { 'cache-control': 'max-age=60', vary: '*' }, { storable: false, lifetime: 0 }, { storable: true, lifetime: 0 }, 'RFC 9111 §4.1: it always fails to match, so storing it only costs memory'],
  ['contradicting max-age', 200, { 'cache-control': 'max-age=3600, max-age=1' }, { storable: true, lifetime: 0 }, { storable: true, lifetime: 1 }, 'RFC 9111 §4.2.1: the safe reading, stale'],
];

test('differs from http-cache-semantics only where the RFC says so', () => {
  for (const [name, status, headers, mine, theirs, rule] of DIFFER) {
    assert.deepEqual(ours(status, headers), mine, `${name} (ours): ${rule}`);
    assert.deepEqual(reference(status, headers), theirs, `${name} (reference): ${rule}`);
  }
});
