import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFlights, leadFlight, type FlightResult, type Leader } from '../../src/cache/flights.ts';
import { AbortSource } from '../../src/pipeline/abort-watch.ts';
import { chain, gc, promotedByTwoYoungCollections } from '../helpers/young-generation.ts';

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

/**
 * V8's coverage collection (NODE_V8_COVERAGE, which `node --test --experimental-test-coverage` sets)
 * changes what its young collections keep: under it this test saw 329-337 KB promoted in every run
 * (without it, 15 runs: under 100 KB each), though a payload that is simply dropped is not promoted
 * under coverage either (2026-12-06). What the test measures is V8's: it runs without coverage only.
 */
const UNDER_COVERAGE = process.env.NODE_V8_COVERAGE !== undefined ? 'V8 coverage collection changes what young collections keep' : false;

test('a landed flight is not kept by a table V8 rebuilt while it was in the air: its outcome dies young', { skip: UNDER_COVERAGE }, async () => {
  // V8 rebuilds a Map's table as keys come and go, and the table it replaces, in the old generation
  // once the Map is, keeps pointing at what it held until the next full collection; young
  // collections take that as alive, so every flight in the air at a rebuild, and the response it
  // settled with, was moved to the old generation after it landed (misses over HTTP/2: 3.5 KB
  // promoted per miss, --trace-gc-nvp; 1.6-2.5 KB with the table's slots let go on landing).
  const flights = createFlights();
  const signal = new AbortSource().signal; // as the server's requests have: watched without a listener
  gc(); // the flights' Map and its table are old now
  gc({ type: 'minor' }); // and the young generation empty, so nothing below outlives a young collection by chance
  let watched: Leader | undefined = (() => {
    const { leader } = leadFlight(flights, signal, 'watched');
    leader.settle({ kind: 'shared', body: chain(10_000) } as unknown as FlightResult);
    // Keys come and go while it is in the air: the table is rebuilt a few times.
    for (let i = 0; i < 20; i++) leadFlight(flights, signal, `k${i}`).leader.settle({ kind: 'pass' });
    return leader;
  })();
  watched.land();
  watched = undefined;
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  const promoted = promotedByTwoYoungCollections();
  // ~320 KB when the replaced table held the flight, ~6 KB when not.
  assert.ok(promoted < 100_000, `the landed flight's outcome was moved to the old generation (${promoted} bytes)`);
});
