/**
 * A young-generation collection (a scavenge) after every SCAVENGE_EVERY bytes of bodies that pass
 * through in fresh Buffers, where the process runs with --expose-gc (one of the serving flags,
 * src/runtime/node-flags.ts): request bodies, origin responses (each socket read a new
 * ArrayBuffer of up to 64 KiB), static files streamed from disk, temp files read back. One count
 * for all of them, since V8 counts all of them against one limit.
 *
 * Every such chunk is a new ArrayBuffer outside V8's heap, dead within milliseconds but freed only
 * when a collection finds its JS object dead. V8 (13.6, Node 24) counts the external memory
 * allocated since its last full collection against the old generation's limit, whose headroom is
 * only ~12 MB while the heap is small. Moving bodies allocates little JS heap, so scavenges come
 * seldom while bodies arrive at hundreds of MB/s: 15-25 MB of dead chunks pile up between two of
 * them, V8 starts a full collection to stay under its limit, and when that one ends at a low point
 * of the sawtooth the next peak is over the limit again: full collections one after another, for
 * as long as the bodies flow.
 *
 * A scavenge every 8 MiB frees the chunks before they pile up to the limit. Measured (1 MiB POSTs
 * over HTTP/1.1 from 16 connections, 10 s on a fresh process, alternating): without it 4-112 full
 * collections per run, a storm in 4 runs of 5, 2,723-3,776 µs of CPU per upload; with it 3-18 in 5
 * runs, 2,474-2,833 µs, and ~800 scavenges instead of ~100-180. Responses (2026-12-05, AMD EPYC,
 * --trace-gc, h2load): before they were counted, a mark-compact every ~20 MiB of them (10-25 ms
 * each); 8 MiB static files from disk 23 ms of CPU each, now 8.5-9 (nginx 8.4-10.5); 1 MiB
 * pass-through responses 3.0-4.0 ms, now 1.4-1.8 over HTTP/1.1 from 4 connections (nginx 1.6); the
 * bench's pass-1mb row 4,697 -> 2,066 µs over HTTP/2 and 3,032 -> 1,856 with wrk. A scavenge costs
 * what the live young objects cost to copy (0.4-0.7 ms here); one per 8 MiB is little beside the
 * 8 MiB's TLS and copies. 4 MiB bought no more, 32 MiB was too late. Without --expose-gc this does
 * nothing, and it needs the chunks freed at the scavenge itself, not by V8's background sweeper
 * once it gets a core (--no-concurrent-array-buffer-sweeping, node-flags.ts).
 */
const SCAVENGE_EVERY = 8 * 1024 * 1024;

type MinorGc = (options: { type: 'minor' }) => void;
const gc = (globalThis as { gc?: MinorGc }).gc;
const collect: MinorGc | undefined = typeof gc === 'function' ? gc : undefined;

let since = 0;

/** Counts `bytes` of body passed through in fresh Buffers; every SCAVENGE_EVERY of them, a scavenge. */
export function noteBodyBytes(bytes: number): void {
  since += bytes;
  if (since < SCAVENGE_EVERY) return;
  since = 0;
  collect?.({ type: 'minor' });
}
