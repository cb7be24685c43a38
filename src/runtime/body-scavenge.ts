/**
 * A young-generation collection (a scavenge) after every SCAVENGE_EVERY bytes of request bodies,
 * where the process runs with --expose-gc (one of the serving flags, src/runtime/node-flags.ts).
 *
 * Every chunk a client's connection delivers is a new ArrayBuffer outside V8's heap, dead within
 * milliseconds but freed only when a collection finds its JS object dead. V8 (13.6, Node 24)
 * counts the external memory allocated since its last full collection against the old
 * generation's limit, whose headroom is only ~12 MB while the heap is small. Uploads allocate
 * little JS heap, so scavenges come every 50-100 ms while bodies arrive at 250 MB/s: 15-25 MB of
 * dead chunks pile up between two of them, V8 starts a full collection to stay under its limit,
 * and when that one ends at a low point of the sawtooth the next peak is over the limit again:
 * full collections one after another, every 30-90 ms, for as long as the uploads last (1 MiB
 * POSTs over HTTP/1.1, 10 s runs: 29-112 of them against 1-10 otherwise, 3,100-5,300 µs of CPU
 * per upload against 2,500-2,700).
 *
 * A scavenge every 8 MiB of bodies frees the chunks before they reach the limit: the same runs
 * had 4-7 full collections and ~800 scavenges, at 2,474-2,627 µs per upload. A scavenge costs
 * what the live young objects cost to copy (a few hundred µs); one per 8 MiB is nothing beside
 * the 8 MiB's TLS and copies. 4 MiB bought no more. Without --expose-gc this does nothing.
 */
const SCAVENGE_EVERY = 8 * 1024 * 1024;

type MinorGc = (options: { type: 'minor' }) => void;
const gc = (globalThis as { gc?: MinorGc }).gc;
const collect: MinorGc | undefined = typeof gc === 'function' ? gc : undefined;

let since = 0;

/** Counts `bytes` of request body received; every SCAVENGE_EVERY of them, a scavenge. */
export function noteBodyBytes(bytes: number): void {
  since += bytes;
  if (since < SCAVENGE_EVERY) return;
  since = 0;
  collect?.({ type: 'minor' });
}
