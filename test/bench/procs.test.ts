import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SLOW_PAGE_FAULT_MICROS, pageFaultMicros, pageFaultWarning } from '../../bench/procs.ts';

test('pageFaultMicros measures a cost per page: a finite number, never negative', () => {
  const micros = pageFaultMicros(4 * 1024 * 1024);
  assert.ok(Number.isFinite(micros), `got ${micros}`);
  assert.ok(micros >= 0, `got ${micros}`);
});

test('pageFaultWarning speaks only when fresh pages cost more than the threshold', () => {
  assert.equal(pageFaultWarning(0), undefined);
  assert.equal(pageFaultWarning(0.3), undefined);
  assert.equal(pageFaultWarning(SLOW_PAGE_FAULT_MICROS), undefined);
  assert.equal(pageFaultWarning(Number.NaN), undefined);
  const warning = pageFaultWarning(14.26);
  assert.match(warning ?? '', /14\.3 µs per 4 KiB page/);
  assert.match(warning ?? '', /miss/);
});
