import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createValueTable, sharedValueCount, storedValue } from '../../src/cache/shared-values.ts';
import { storedFields } from '../../src/cache/requests.ts';
import { mergeNotModified } from '../../src/cache/revalidation.ts';

/** An equal string that is a new heap object (not the literal the test wrote). */
const fresh = (text: string) => [...text].join('');

test('a value table keeps one copy of each value and hands it out for equal ones', () => {
  const table = createValueTable({ maxValues: 3 });
  assert.equal(table.shared(fresh('text/html')), 'text/html');
  assert.equal(table.shared(fresh('text/html')), 'text/html');
  assert.equal(table.size, 1);
  table.shared('a');
  table.shared('b');
  assert.equal(table.size, 3);
  table.shared('c'); // full: starts over with this one
  assert.equal(table.size, 1);
});

test('a value table leaves long values out', () => {
  const table = createValueTable({ maxLength: 8 });
  const long = 'x'.repeat(9);
  assert.equal(table.shared(long), long);
  assert.equal(table.size, 0);
  table.shared('x'.repeat(8));
  assert.equal(table.size, 1);
});

test('storedValue shares the values of fields that repeat, not those that are unique or lists', () => {
  const before = sharedValueCount();
  const type = `application/x-test-${Math.random()}`;
  assert.equal(storedValue('content-type', fresh(type)), type);
  assert.equal(storedValue('content-type', fresh(type)), type);
  assert.equal(sharedValueCount(), before + 1);
  assert.equal(storedValue('etag', `"${Math.random()}"`).length > 0, true);
  assert.equal(storedValue('x-request-id', String(Math.random())).length > 0, true);
  assert.deepEqual(storedValue('cache-control', ['max-age=1', 'public']), ['max-age=1', 'public']);
  assert.equal(sharedValueCount(), before + 1);
});

test('stored fields and a 304 merge go through the shared table with their values unchanged', () => {
  const before = sharedValueCount();
  const control = `max-age=${Math.floor(Math.random() * 1e9)}`;
  const fields = storedFields({ 'cache-control': fresh(control), 'content-length': 30, etag: '"a"' }, { storeSetCookie: false, heuristicWithCredentials: false });
  assert.deepEqual(fields, { 'cache-control': control, 'content-length': '30', etag: '"a"' });
  assert.equal(sharedValueCount(), before + 1);
  const merged = mergeNotModified({ status: 200, headers: fields, requestTime: 0, responseTime: 0, tags: [] }, { 'cache-control': fresh(control), expires: 'Thu, 01 Jan 2099 00:00:00 GMT' }, { requestTime: 1, responseTime: 2 });
  assert.equal(merged.headers['cache-control'], control);
  assert.equal(merged.headers.expires, 'Thu, 01 Jan 2099 00:00:00 GMT');
  assert.equal(sharedValueCount(), before + 2);
});
