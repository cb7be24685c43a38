import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { attemptBodies, classifyFailure, mayRetryFailure, mayRetryStatus } from '../../src/origin/retry.ts';

const err = (code: string) => Object.assign(new Error(code), { code });

test('failures: what each error says about whether the request reached the upstream', () => {
  const table: Array<[string, ReturnType<typeof classifyFailure>]> = [
    ['ECONNREFUSED', 'unreached'], ['UND_ERR_CONNECT_TIMEOUT', 'unreached'], ['ENOTFOUND', 'unreached'], ['EHOSTUNREACH', 'unreached'],
    ['ECONNRESET', 'reset'], ['UND_ERR_SOCKET', 'reset'], ['EPIPE', 'reset'],
    ['UND_ERR_HEADERS_TIMEOUT', 'other'], ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'other'], ['', 'other'],
  ];
  for (const [code, expected] of table) assert.equal(classifyFailure(err(code)), expected, code);
});

test('retries: any method when the request never left; idempotent ones after a reset; never once the body was read', () => {
  const table: Array<[ReturnType<typeof classifyFailure>, string, boolean, boolean]> = [
    // failure, method, body touched, may retry
    ['unreached', 'POST', false, true],
    ['unreached', 'PATCH', false, true],
    ['reset', 'GET', false, true],
    ['reset', 'PUT', false, true],
    ['reset', 'DELETE', false, true],
    ['reset', 'POST', false, false],
    ['reset', 'PATCH', false, false],
    ['reset', 'PUT', true, false],
    ['other', 'GET', false, false],
  ];
  for (const [failure, method, bodyTouched, expected] of table) {
    assert.equal(mayRetryFailure(failure, { method, bodyTouched }), expected, `${failure} ${method} ${bodyTouched}`);
  }
  const on = new Set([502, 503, 504]);
  assert.equal(mayRetryStatus(503, on, { method: 'GET', bodyTouched: false }), true);
  assert.equal(mayRetryStatus(500, on, { method: 'GET', bodyTouched: false }), false);
  assert.equal(mayRetryStatus(503, on, { method: 'POST', bodyTouched: false }), false);
  assert.equal(mayRetryStatus(503, on, { method: 'PUT', bodyTouched: true }), false);
});

const read = async (stream: Readable) => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
};

test('attempt bodies: a stand-in destroyed unread leaves the client\'s body whole for the next attempt', async () => {
  const source = Readable.from([Buffer.from('hello '), Buffer.from('world')], { objectMode: false });
  const bodies = attemptBodies(source);
  const first = bodies.next();
  first.destroy(new Error('connect ECONNREFUSED')); // what undici does to the body of a failed request
  first.on('error', () => {});
  assert.equal(bodies.touched, false);
  assert.equal(source.destroyed, false);
  assert.equal(await read(bodies.next()), 'hello world');
  assert.equal(bodies.touched, true);
});

test('attempt bodies: a stand-in destroyed after reading takes the client\'s body with it', async () => {
  const source = new Readable({ read() {} });
  source.push('part');
  const bodies = attemptBodies(source);
  const first = bodies.next();
  first.on('error', () => {});
  await new Promise((resolve) => first.once('data', resolve));
  first.destroy(new Error('reset'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(bodies.touched, true);
  assert.equal(source.destroyed, true);
});
