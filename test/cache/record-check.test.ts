import { test } from 'node:test';
import assert from 'node:assert/strict';
import { refusedRecord } from '../../src/cache/record-check.ts';

const response = { status: 200, headers: { 'content-type': 'text/html', vary: 'accept-language', 'set-cookie': ['a=1', 'b=2'], 'x-latin': 'caf\u00e9' }, requestTime: 1, responseTime: 2, tags: ['t'] };
const body = Buffer.from('x');

test('records as the cache writes them are used', () => {
  assert.equal(refusedRecord('o:https://a.test/x\n', { meta: response, body }), undefined);
  assert.equal(refusedRecord('o:https://a.test/x\nen', { meta: { ...response, invalidatedAt: 5 }, body }), undefined);
  assert.equal(refusedRecord('e:o:https://a.test/x\n\nbr', { meta: { token: 'br11' }, body }), undefined);
  assert.equal(refusedRecord('v:https://a.test/x', { meta: { vary: ['accept-language'], until: 10 }, body }), undefined);
});

test('records that are not what their key says are refused, with the reason', () => {
  const refused: Array<[string, unknown, RegExp]> = [
    ['o:k\n', null, /not an object/],
    ['o:k\n', [], /not an object/],
    ['o:k\n', { ...response, status: 999 }, /status 999/],
    ['o:k\n', { ...response, status: 101 }, /status 101/],
    ['o:k\n', { ...response, status: '200' }, /status "200"/],
    ['o:k\n', { ...response, headers: null }, /fields/],
    ['o:k\n', { ...response, headers: { 'Content-Type': 'x' } }, /field name/],
    ['o:k\n', { ...response, headers: { ':status': '200' } }, /field name/],
    ['o:k\n', { ...response, headers: { 'x-a': 'a\r\nx-b: 1' } }, /value of x-a/],
    ['o:k\n', { ...response, headers: { 'x-a': ['ok', 'a\nb'] } }, /value of x-a/],
    ['o:k\n', { ...response, headers: { 'x-a': 'a\u0000' } }, /value of x-a/],
    ['o:k\n', { ...response, headers: { 'x-a': 'snow \u2603' } }, /value of x-a/],
    ['o:k\n', { ...response, headers: { 'x-a': 5 } }, /value of x-a/],
    ['o:k\n', { ...response, requestTime: 'soon' }, /times/],
    ['o:k\n', { ...response, tags: 'a' }, /tags/],
    ['o:k\n', { ...response, invalidatedAt: 'now' }, /invalidation/],
    ['e:k\n\nbr', { token: 11 }, /token/],
    ['v:k', { vary: 'accept' }, /Vary/],
    ['v:k', { vary: ['Accept'] }, /Vary/],
    ['v:k', { vary: [], until: 'later' }, /Vary/],
  ];
  for (const [key, meta, reason] of refused) assert.match(refusedRecord(key, { meta, body }) ?? 'used', reason, JSON.stringify(meta));
  assert.match(refusedRecord('o:k\n', { meta: response, body: 'x' as unknown as Buffer }) ?? 'used', /body/);
});
