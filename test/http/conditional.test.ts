import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  evaluatePreconditions, fileValidators, ifRangeHolds, matchesTagList, parseHttpDate, parseRange,
} from '../../src/http/conditional.ts';

const LM = Date.UTC(1994, 10, 6, 8, 49, 37); // Sun, 06 Nov 1994 08:49:37 GMT
const V = { etag: '"1a-2b"', lastModified: LM };
const BEFORE = 'Sun, 06 Nov 1994 08:49:36 GMT';
const SAME = 'Sun, 06 Nov 1994 08:49:37 GMT';
const AFTER = 'Sun, 06 Nov 1994 08:49:38 GMT';

test('fileValidators: strong ETag from size and mtime, Last-Modified in whole seconds, never in the future', () => {
  assert.deepEqual(fileValidators(26, 43.9, 10_000), { etag: '"1a-2b"', lastModified: 0 });
  assert.equal(fileValidators(1, LM + 999.5, Date.now()).lastModified, LM);
  const now = Date.UTC(2030, 0, 1, 0, 0, 0, 500);
  assert.equal(fileValidators(1, now + 86_400_000, now).lastModified, Date.UTC(2030, 0, 1)); // clamped to now
});

test('matchesTagList: strong and weak comparison, lists, *', () => {
  const cases: Array<[string, boolean, boolean]> = [
    // [value, strong, expected]
    ['"1a-2b"', true, true],
    ['W/"1a-2b"', true, false],
    ['W/"1a-2b"', false, true],
    ['"x", "1a-2b"', true, true],
    ['"x",W/"1a-2b"', false, true],
    ['"x", "y"', false, false],
    ['*', true, true],
    [' * ', false, true],
    ['1a-2b', false, false], // unquoted: not an entity-tag
    ['"1A-2B"', false, false], // opaque tags compare exactly
    ['', false, false],
  ];
  for (const [value, strong, expected] of cases) assert.equal(matchesTagList(value, V.etag, strong), expected, `${value} strong=${strong}`);
});

test('evaluatePreconditions: RFC 9110 §13.2.2 order', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{}, 'proceed'],
    // 1. If-Match, strong
    [{ 'if-match': '"1a-2b"' }, 'proceed'],
    [{ 'if-match': '*' }, 'proceed'],
    [{ 'if-match': '"other"' }, 'failed'],
    [{ 'if-match': 'W/"1a-2b"' }, 'failed'],
    // 2. If-Unmodified-Since only without If-Match
    [{ 'if-unmodified-since': SAME }, 'proceed'],
    [{ 'if-unmodified-since': AFTER }, 'proceed'],
    [{ 'if-unmodified-since': BEFORE }, 'failed'],
    [{ 'if-unmodified-since': 'garbage' }, 'proceed'],
    [{ 'if-match': '"1a-2b"', 'if-unmodified-since': BEFORE }, 'proceed'],
    // 3. If-None-Match, weak
    [{ 'if-none-match': '"1a-2b"' }, 'not-modified'],
    [{ 'if-none-match': 'W/"1a-2b"' }, 'not-modified'],
    [{ 'if-none-match': '"a", "1a-2b"' }, 'not-modified'],
    [{ 'if-none-match': '*' }, 'not-modified'],
    [{ 'if-none-match': '"other"' }, 'proceed'],
    // 4. If-Modified-Since only without If-None-Match
    [{ 'if-modified-since': SAME }, 'not-modified'],
    [{ 'if-modified-since': AFTER }, 'not-modified'],
    [{ 'if-modified-since': BEFORE }, 'proceed'],
    [{ 'if-modified-since': '3000' }, 'proceed'], // not an HTTP-date: ignored
    [{ 'if-none-match': '"other"', 'if-modified-since': AFTER }, 'proceed'],
    // 412 wins over 304
    [{ 'if-match': '"other"', 'if-none-match': '"1a-2b"' }, 'failed'],
  ];
  for (const [headers, expected] of cases) assert.equal(evaluatePreconditions(headers, V), expected, JSON.stringify(headers));
});

test('parseRange: RFC 9110 §14.1.1 single ranges; everything else is the whole 200', () => {
  const cases: Array<[string | undefined, number, unknown]> = [
    [undefined, 100, { kind: 'full' }],
    ['bytes=0-9', 100, { kind: 'partial', start: 0, end: 9 }],
    ['bytes=10-', 100, { kind: 'partial', start: 10, end: 99 }],
    ['bytes=-10', 100, { kind: 'partial', start: 90, end: 99 }],
    ['bytes=-1000', 100, { kind: 'partial', start: 0, end: 99 }],
    ['bytes=90-1000', 100, { kind: 'partial', start: 90, end: 99 }],
    ['bytes=0-99999999999999999999999', 100, { kind: 'partial', start: 0, end: 99 }],
    ['bytes=99-99', 100, { kind: 'partial', start: 99, end: 99 }],
    ['Bytes=0-0', 100, { kind: 'partial', start: 0, end: 0 }],
    ['bytes= 0-9 ,', 100, { kind: 'partial', start: 0, end: 9 }],
    ['bytes=0-', 100, { kind: 'partial', start: 0, end: 99 }],
    // unsatisfiable → 416
    ['bytes=100-', 100, { kind: 'unsatisfiable' }],
    ['bytes=100-200', 100, { kind: 'unsatisfiable' }],
    ['bytes=-0', 100, { kind: 'unsatisfiable' }],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }],
    ['bytes=99999999999999999999999-', 100, { kind: 'unsatisfiable' }],
    // several ranges, malformed, other units → whole
    ['bytes=0-1,5-6', 100, { kind: 'full' }],
    ['bytes=0-1,200-300', 100, { kind: 'full' }],
    ['bytes=9-0', 100, { kind: 'full' }],
    ['bytes=-', 100, { kind: 'full' }],
    ['bytes=', 100, { kind: 'full' }],
    ['bytes=a-b', 100, { kind: 'full' }],
    ['bytes=1.5-2', 100, { kind: 'full' }],
    ['bytes=--1', 100, { kind: 'full' }],
    ['bytes 0-9', 100, { kind: 'full' }],
    ['items=0-9', 100, { kind: 'full' }],
    ['bytes=-5', 0, { kind: 'full' }], // no 206 can describe an empty file
  ];
  for (const [value, size, expected] of cases) assert.deepEqual(parseRange(value, size), expected, `${value} of ${size}`);
});

test('ifRangeHolds: strong ETag match or exact date', () => {
  assert.equal(ifRangeHolds(undefined, V), true);
  assert.equal(ifRangeHolds('"1a-2b"', V), true);
  assert.equal(ifRangeHolds('W/"1a-2b"', V), false); // weak never matches
  assert.equal(ifRangeHolds('"other"', V), false);
  assert.equal(ifRangeHolds(SAME, V), true);
  assert.equal(ifRangeHolds(AFTER, V), false); // exact match only
  assert.equal(ifRangeHolds(BEFORE, V), false);
  assert.equal(ifRangeHolds('nonsense', V), false);
});

test('parseHttpDate: the three formats of RFC 9110 §5.6.7, nothing else', () => {
  assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT'), LM);
  assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(2024, 0, 1)), LM);
  assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994'), LM);
  // two-digit years: not more than 50 years in the future
  assert.equal(parseHttpDate('Tuesday, 01-Jan-80 00:00:00 GMT', Date.UTC(2024, 0, 1)), Date.UTC(1980, 0, 1));
  assert.equal(parseHttpDate('Tuesday, 01-Jan-74 00:00:00 GMT', Date.UTC(2024, 0, 1)), Date.UTC(2074, 0, 1));
  assert.equal(parseHttpDate('Wednesday, 01-Jan-30 00:00:00 GMT', Date.UTC(2024, 0, 1)), Date.UTC(2030, 0, 1));
  for (const bad of ['', '1', '3000', '1994-11-06T08:49:37Z', 'Sun, 06 Nov 1994 08:49:37 PST', 'Sun, 31 Feb 1994 08:49:37 GMT',
    'Sun, 06 Foo 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 25:49:37 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT']) {
    assert.equal(parseHttpDate(bad), undefined, bad);
  }
  assert.equal(parseHttpDate(undefined), undefined);
  // names in any case (RFC 9111 §4.2)
  assert.equal(parseHttpDate('SUN, 06 NOV 1994 08:49:37 gmt'), LM);
  assert.equal(parseHttpDate('sunday, 06-nov-94 08:49:37 GMT', Date.UTC(2024, 0, 1)), LM);
});

test('matchesTagList: a malformed tag from the origin still matches itself byte for byte', () => {
  assert.equal(matchesTagList('abc', 'abc', false), true);
  assert.equal(matchesTagList('"abc", xyz', 'xyz', false), true);
  assert.equal(matchesTagList('w/"abc"', 'w/"abc"', false), true);
  assert.equal(matchesTagList('w/"abc"', 'w/"abc"', true), false, 'weak, even when spelled in lower case');
  assert.equal(matchesTagList('abcd', 'abc', false), false);
});
