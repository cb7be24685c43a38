/**
 * Body bytes that pass through the process in fresh Buffers: each socket read hands JavaScript a
 * new ArrayBuffer (up to 64 KiB), each file read stream chunk another. They die young, but V8
 * counts their bytes as external memory, and a process that moves megabytes while making few
 * objects of its own (a large pass-through download: 16 reads per MiB and little else) reaches
 * V8's external-memory limit long before its young generation fills. V8 then runs a full
 * mark-compact (10-25 ms each, every ~20 MiB in --trace-gc), though a scavenge would have freed
 * them all.
 *
 * So a minor collection is asked for after every `YOUNG_EVERY` such bytes (when the process runs
 * with --expose-gc, as `npm start` does): 0.4-0.6 ms each, and no mark-compact at all. 1 MiB
 * pass-through responses over HTTP/1.1: 3.0-4.0 ms of CPU each before, 1.4-1.8 after (nginx 1.22,
 * which spills them to a temp file, 1.6); 2026-12-05, AMD EPYC host.
 */

/** Bytes between two minor collections: 8 MiB (32 MiB was too late to spare the mark-compacts). */
export const YOUNG_EVERY = 8 * 1024 * 1024;

type ExposedGc = (options: { type: 'minor' }) => void;

const gc = (globalThis as { gc?: ExposedGc }).gc;
let moved = 0;

/** Counts `bytes` of body passed through in fresh Buffers; past YOUNG_EVERY a minor collection runs. */
export function noteMovedBytes(bytes: number): void {
  moved += bytes;
  if (moved < YOUNG_EVERY) return;
  moved = 0;
  if (gc !== undefined) gc({ type: 'minor' });
}
