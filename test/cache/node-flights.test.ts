import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createNodeFlights, LOCK_TIMEOUT_MS, type Turn } from '../../src/cache/node-flights.ts';
import type { Peer } from '../../src/runtime/primary-channel.ts';

test('node flights (the primary\'s side): the first worker fetches; the others wait for its outcome, a turn held too long, or its end', async () => {
  let clock = 1_000_000;
  const flights = createNodeFlights({ now: () => clock });
  const [a, b, c] = [{}, {}, {}] as Peer[];
  const turn = (peer: Peer, key: string) => Promise.resolve(flights.handle(peer, 'turn', [key], undefined as never)) as Promise<Turn>;
  const release = (peer: Peer, key: string, outcome: Turn) => flights.handle(peer, 'release', [key, outcome], undefined as never);
  const settledSoon = async (p: Promise<Turn>) => Promise.race([p, new Promise((resolve) => setTimeout(resolve, 20, 'waiting'))]);

  // Stored: the waiters read it.
  assert.equal(await turn(a, 'k'), 'lead');
  const bWaits = turn(b, 'k');
  const cWaits = turn(c, 'k');
  assert.equal(await settledSoon(bWaits), 'waiting');
  release(b, 'k', 'pass'); // not b's turn: changes nothing
  assert.equal(await settledSoon(bWaits), 'waiting');
  release(a, 'k', 'look');
  assert.deepEqual(await Promise.all([bWaits, cWaits]), ['look', 'look']);
  assert.equal(flights.size, 0);

  // Not storable: the waiters go to the origin alone; the next miss leads again.
  assert.equal(await turn(a, 'u'), 'lead');
  const waiter = turn(b, 'u');
  release(a, 'u', 'pass');
  assert.equal(await waiter, 'pass');
  assert.equal(await turn(b, 'u'), 'lead');
  release(b, 'u', 'lead');

  // A turn held longer than anyone waits is taken over; a worker that goes away lets its waiters fetch.
  assert.equal(await turn(a, 'slow'), 'lead');
  const stuck = turn(b, 'slow');
  clock += LOCK_TIMEOUT_MS + 1;
  assert.equal(await turn(c, 'slow'), 'lead');
  assert.equal(await stuck, 'lead');
  const behindC = turn(a, 'slow');
  flights.detach!(c);
  assert.equal(await behindC, 'lead');
});
