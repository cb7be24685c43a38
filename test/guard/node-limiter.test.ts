import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createNodeLimiter, createNodeLimits } from '../../src/guard/node-limiter.ts';
import { createWorkerChannel, type Peer } from '../../src/runtime/primary-channel.ts';

test('node limiter: a primary that does not answer in time leaves the decision to this worker, counted and reported', async () => {
  // A process with an IPC channel and nobody answering on it.
  const silent = fork(new URL('../helpers/silent-child.ts', import.meta.url).pathname, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await once(silent, 'spawn');
  const channel = createWorkerChannel({ send: (message) => silent.send(message as never), messages: silent });
  const errors: unknown[] = [];
  const limiter = createNodeLimiter({ rate: 1, burst: 2 }, { id: 'all', channel, timeoutMs: 50, onError: (error) => errors.push(error) });
  try {
    const decisions = [await limiter.take('203.0.113.7'), await limiter.take('203.0.113.7'), await limiter.take('203.0.113.7')];
    assert.deepEqual(decisions.map((d) => d.allowed), [true, true, false], 'the local limiter holds the limit meanwhile');
    assert.equal(limiter.fallbacks, 3);
    assert.equal(errors.length, 1, 'reported once a second at most');
    assert.match(String(errors[0]), /did not answer limits take within 50 ms/);
  } finally {
    channel.close();
    silent.kill();
  }
});

test('node limits (the primary\'s side): one counter per limit and client, whoever asks; malformed requests refused', () => {
  const limits = createNodeLimits({ now: () => 1_000_000 });
  const a = {} as Peer;
  const b = {} as Peer;
  const take = (from: Peer, ...args: unknown[]) => limits.handle(from, 'take', args, undefined as never) as { allowed: boolean };
  assert.equal(take(a, 'all', 1, 2, '198.51.100.1').allowed, true);
  assert.equal(take(b, 'all', 1, 2, '198.51.100.1').allowed, true);
  assert.equal(take(a, 'all', 1, 2, '198.51.100.1').allowed, false, 'the third within the burst of 2, from either worker');
  assert.equal(take(b, 's0', 1, 2, '198.51.100.1').allowed, true, 'another guard block counts apart');
  assert.equal(take(b, 'all', 1, 2, '198.51.100.2').allowed, true, 'another client counts apart');
  assert.throws(() => take(a, 'all', 0, 2, 'x'), /malformed/);
  assert.throws(() => take(a, 'all', 1, 2, 42), /malformed/);
  assert.throws(() => limits.handle(a, 'drop', [], undefined as never), /unknown operation/);
});
