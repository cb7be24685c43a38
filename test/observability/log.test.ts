import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createErrorLogLimiter, errorKind, formatErrorLine } from '../../src/observability/log.ts';
import { OutpostError } from '../../src/errors.ts';

/** The error log's per-kind rate limit, on an injected clock. */

const event = (where: string, code: string) => ({ ctx: null, where, error: Object.assign(new Error('x'), { code }) });

test('one kind: 5 lines a second, then one "suppressed N" line when the second ends', () => {
  let now = 1_000_000;
  const written: string[] = [];
  const limiter = createErrorLogLimiter((line) => written.push(line), { now: () => now });
  let admitted = 0;
  for (let i = 0; i < 100; i++) if (limiter.admit(event('h2 stream', 'ERR_X'))) admitted++;
  assert.equal(admitted, 5);
  // another kind in the same second still gets its lines
  assert.equal(limiter.admit(event('origin', 'ECONNREFUSED')), true);
  assert.deepEqual(written, []);
  // the next second: the summary comes first, then the budget is fresh
  now += 1000;
  assert.equal(limiter.admit(event('h2 stream', 'ERR_X')), true);
  assert.equal(written.length, 1);
  assert.match(written[0], /error h2 stream: suppressed 95 similar errors \(ERR_X\) in the last second\n$/);
  limiter.flush();
  assert.equal(written.length, 1, 'nothing more was suppressed');
});

test('the summary is written when the second ends even if no further error comes', async () => {
  const written: string[] = [];
  const limiter = createErrorLogLimiter((line) => written.push(line), { perSecond: 1 });
  limiter.admit(event('a', 'E'));
  limiter.admit(event('a', 'E'));
  await new Promise((resolve) => setTimeout(resolve, 1100));
  assert.equal(written.length, 1);
  assert.match(written[0], /suppressed 1 similar error \(E\)/);
});

test('a kind is where (digits aside) and the code', () => {
  assert.equal(errorKind(event('cache store (redis), 3 failures so far', 'ECONNREFUSED')), errorKind(event('cache store (redis), 4 failures so far', 'ECONNREFUSED')));
  assert.notEqual(errorKind(event('origin', 'A')), errorKind(event('origin', 'B')));
  assert.equal(errorKind({ ctx: null, where: 'request', error: new OutpostError('BAD_GATEWAY', 502, 'x') }), 'request BAD_GATEWAY');
});

test('a passed-through connection is one access-log entry in either format', async () => {
  const { formatPassthroughJson, formatPassthroughLine } = await import('../../src/observability/log.ts');
  const event = { client: '192.0.2.1', servername: 'legacy.test', backend: '10.0.0.5:443', bytesIn: 517, bytesOut: 4096, durationMs: 12.5, error: null };
  const entry = JSON.parse(formatPassthroughJson(event, Date.UTC(2026, 10, 30)));
  assert.deepEqual(entry, { time: '2026-11-30T00:00:00.000Z', passthrough: 'legacy.test', remote: '192.0.2.1', backend: '10.0.0.5:443', bytes_in: 517, bytes_out: 4096, duration_ms: 12.5, error: null });
  assert.match(formatPassthroughLine(event), /^192\.0\.2\.1 legacy\.test \[.+\] "PASSTHROUGH 10\.0\.0\.5:443" 517 4096 12\.5ms\n$/);
});

test('an error line says a system error\'s code once: Node starts the message with it', () => {
  const error = Object.assign(new Error("ENOENT: no such file or directory, open '/var/log/x/access.log'"), { code: 'ENOENT' });
  const line = formatErrorLine({ ctx: null, error, where: 'access log /var/log/x/access.log' });
  assert.match(line, / error access log \/var\/log\/x\/access\.log: ENOENT: no such file or directory, open '\/var\/log\/x\/access\.log'\n$/);
  const other = formatErrorLine({ ctx: null, error: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), where: 'somewhere' });
  assert.match(other, / error somewhere: ECONNRESET: socket hang up\n$/);
});
