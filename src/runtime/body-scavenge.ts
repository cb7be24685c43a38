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
 * full collections one after another, every 30-90 ms, for as long as the uploads last.
 *
 * A scavenge every 8 MiB of bodies frees the chunks before they pile up to the limit. Measured
 * (1 MiB POSTs over HTTP/1.1 from 16 connections, 10 s on a fresh process, alternating): without
 * it 4-112 full collections per run, a storm in 4 runs of 5, 2,723-3,776 µs of CPU per upload;
 * with it 3-18 in 5 runs, 2,474-2,833 µs, and ~800 scavenges instead of ~100-180. A scavenge
 * costs what the live young objects cost to copy; one per 8 MiB is little beside the 8 MiB's TLS
 * and copies. 4 MiB bought no more. Without --expose-gc this does nothing.
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
