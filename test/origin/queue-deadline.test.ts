import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueueDeadline, type Queued } from '../../src/origin/queue-deadline.ts';
import { manualTimers } from '../helpers/timers.ts';

/** A waiting request that records when it was told to expire. */
function waiter(name: string, expired: string[]): Queued {
  return { expireQueued: () => void expired.push(name), queuedSince: 0, queuedBefore: null, queuedAfter: null };
}

test('each waiting request expires ms after it joined, in the order they joined, with one timer for all of them', () => {
  const timers = manualTimers();
  const deadline = new QueueDeadline(1000, timers);
  const expired: string[] = [];
  deadline.join(waiter('a', expired));
  timers.advance(300);
  deadline.join(waiter('b', expired));
  timers.advance(200);
  deadline.join(waiter('c', expired));
  assert.equal(timers.pending, 1);
  assert.equal(deadline.size, 3);

  timers.advance(499);
  assert.deepEqual(expired, []);
  timers.advance(1); // t = 1000: a's time is up, not b's
  assert.deepEqual(expired, ['a']);
  timers.advance(299);
  assert.deepEqual(expired, ['a']);
  timers.advance(1); // t = 1300
  assert.deepEqual(expired, ['a', 'b']);
  timers.advance(200); // t = 1500
  assert.deepEqual(expired, ['a', 'b', 'c']);
  assert.equal(deadline.size, 0);
  assert.equal(timers.pending, 0);
});

test('a request that leaves (sent) never expires, from the front, the middle or the end, and with none waiting no timer runs', () => {
  const timers = manualTimers();
  const deadline = new QueueDeadline(1000, timers);
  const expired: string[] = [];
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => waiter(name, expired));
  deadline.join(a);
  timers.advance(100);
  deadline.join(b);
  deadline.join(c);
  deadline.join(d);
  deadline.leave(c); // the middle
  deadline.leave(a); // the front
  deadline.leave(d); // the end
  assert.equal(deadline.size, 1);
  timers.advance(899);
  assert.deepEqual(expired, []);
  timers.advance(1); // t = 1000: the timer armed for a finds b, due at 1100
  assert.deepEqual(expired, []);
  timers.advance(100);
  assert.deepEqual(expired, ['b']);

  deadline.join(a);
  deadline.leave(a);
  assert.equal(timers.pending, 0);
  deadline.leave(a); // twice: nothing happens
  deadline.leave(b); // after it expired: nothing happens
  assert.equal(deadline.size, 0);
  timers.advance(5000);
  assert.deepEqual(expired, ['b']);
});

test('a request that waits long at the front does not keep those that joined and left after it', () => {
  const timers = manualTimers();
  const deadline = new QueueDeadline(60_000, timers);
  const expired: string[] = [];
  const slow = waiter('slow', expired);
  deadline.join(slow);
  const sent: Queued[] = [];
  for (let i = 0; i < 10_000; i++) {
    const request = waiter(`r${i}`, expired);
    deadline.join(request);
    sent.push(request);
    if (sent.length > 50) deadline.leave(sent.shift()!);
    timers.advance(1);
  }
  for (const request of sent) deadline.leave(request);
  assert.equal(deadline.size, 1);
  // The one left links to nothing: those that left are not reachable from it.
  assert.equal(slow.queuedAfter, null);
  timers.advance(60_000);
  assert.deepEqual(expired, ['slow']);
  assert.equal(deadline.size, 0);
});

test('a request that joins while others expire does not put off the next one due', () => {
  const timers = manualTimers();
  const deadline = new QueueDeadline(1000, timers);
  const expired: string[] = [];
  // a's expiry makes another request join at once (as a retry would): b, due before it, stays due at 1100.
  deadline.join({ ...waiter('a', expired), expireQueued: () => { expired.push('a'); deadline.join(waiter('late', expired)); } });
  timers.advance(100);
  deadline.join(waiter('b', expired));
  timers.advance(900);
  assert.deepEqual(expired, ['a']);
  assert.equal(timers.pending, 1); // one timer, for b: not one more for the late one
  timers.advance(100);
  assert.deepEqual(expired, ['a', 'b']);
  timers.advance(900);
  assert.deepEqual(expired, ['a', 'b', 'late']);
  assert.equal(timers.pending, 0);
});
