import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createFlights, leadFlight, type Leader } from '../../src/cache/flights.ts';
import { AbortSource } from '../../src/pipeline/abort-watch.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('a leader whose client goes away before the outcome still abandons the fetch', async () => {
  const client = new AbortSource();
  const { fetchSignal } = leadFlight(createFlights(), client.signal, 'k');
  client.abort();
  assert.equal(fetchSignal.aborted, true);
});

/** A flight led for `client`, settled and landed; only a weak reference to its leader is kept. */
function settledFlight(client: AbortSource) {
  const flights = createFlights();
  const { leader, fetchSignal } = leadFlight(flights, client.signal, 'k');
  leader.settle({ kind: 'pass' }); // lands the flight too
  assert.equal(flights.get('k'), undefined);
  return { leaderRef: new WeakRef<Leader>(leader), fetchSignal };
}

test('once the outcome is known the client signal lets go of the flight', async () => {
  // The client's abort source lives as long as its HTTP/2 stream, which V8 may keep long after the
  // response (server/stream-listeners.ts): it must not keep the flight, and all the flight reaches.
  const client = new AbortSource();
  const { leaderRef, fetchSignal } = settledFlight(client);
  // Past the job that made the WeakRef, and past the outcome's reactions.
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  gc();
  assert.equal(leaderRef.deref(), undefined, 'the client signal still holds the flight');
  client.abort(); // too late to matter
  assert.equal(fetchSignal.aborted, false);
});

test('flights: a validation\'s flight says so (a request that finds no stored response joins only a fetch without looking)', () => {
  const flights = createFlights();
  const signal = new AbortController().signal;
  assert.equal(leadFlight(flights, signal, 'fetch').leader.validating, false);
  assert.equal(leadFlight(flights, signal, 'validation', true).leader.validating, true);
  assert.equal(flights.get('fetch')?.validating, false);
  assert.equal(flights.get('validation')?.validating, true);
});
