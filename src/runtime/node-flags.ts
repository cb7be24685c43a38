/**
 * Runtime flags a serving process should start with. They cannot be set from inside a running
 * process (V8 sizes its heap at start), so they go where Outpost is launched: the cluster primary
 * gives them to its workers, `npm start` passes them, and so does the benchmark.
 *
 * --max-semi-space-size=16 (MB: the most V8 grows each half of the young generation to when much
 * survives; left alone, on this 24 GiB machine, it grew to 64, new space 128 MB committed, for an
 * allocation loop that kept 300,000 objects alive): room for the requests in flight to die young
 * at the concurrency load tools and busy sites bring, without V8's own ceiling (the bench's
 * ceiling server runs with V8's default).
 * History: 4 from 2026-11-30 (POST 1 MiB 3,021 → 1,018 µs of CPU per response over HTTP/1.1
 * against the default, pass-through p99 15 → 5 ms, hits a few percent less CPU, misses 2-4 % more,
 * RSS after the run 1,148 → 984 MiB), when uploads fell into storms of full collections;
 * body-scavenge.ts ends those storms now, whatever the size. Measured again on 2026-12-01
 * (instructions under callgrind, all threads, so the host's drift, ±25 % at speed that day, does
 * not enter; pass-through over HTTP/2 after 30,000 requests to warm, 10,000 counted, two windows
 * each):
 *   with 256 requests in flight (32 connections x 8 streams):  4: 388k, 375k per response (of it
 *     88-90k scavenging: a request outlives two young collections and is copied twice)
 *                                                              8: 293k, 320k (scavenging 32-37k)
 *                                                             16: 272k, 321k (scavenging 13-21k)
 *   with 1,000 in flight (100 x 10, as users run h2load): 4: 449k (scavenging 102k), 8: 422k (79k),
 *     16: 376k (40k); the ceiling 282k (8k)
 *   with 16 in flight (the bench's 2 x 8): alike; 4: 227k, 226k, 268k; 8: 282k; 16: 218k, 244k
 *     (scavenging 4-11k whatever the size; a window differs from the next by the full collection
 *     it holds or not); Brotli hits 149k / 148k (4 / 16), with 256 in flight 176k / 169k;
 *     POST 1 MiB over HTTP/1.1 (16 connections) 9.95M / 9.77M
 *   right after start (20,000 pass-through requests over HTTP/1.1, 16 connections, nothing to warm,
 *     compilers included): 403k, 401k with 4; 397k, 399k with 16: the same work (a quick bench that
 *     seemed to say otherwise measured the host)
 *   the 60 s soak's RSS (second half, MiB): 4: 205, 256 (294-303 the day before); 8: 244, 253,
 *     295, 293; 16: 284, 277, 284, 283 (280-286 the day before): V8's old generation decides it,
 *     not the young one
 * At speed, once warm, the same day on a quieter host: 16 against 4 cost 15-25 % less CPU per
 * pass-through response with 256 in flight (HTTP/2 32x8: 77-94 against 98-117 µs; HTTP/1.1, 256
 * connections: 116-126 against 138-146), 4 % less with 16 in flight.
 * 8 was the default for an hour: it keeps 16's saving at 256 in flight, not at 1,000, and its soak
 * was no smaller.
 * 32, measured on 2026-12-01 (1,000 in flight, 100 x 10, after 30,000 to warm, 10,000 counted, the
 * compilers' work left out): 335k per response (scavenging 16k) against 16's 381k (42k); the
 * relaying ceiling 285k (7.5k). There a request waits ~200 ms on the origin, the young generation
 * of 16 MB fills every ~140 ms, and most requests are promoted (--trace-gc: ~9.8 KB per request
 * moved to the old generation, the ceiling's ~1.4 KB with the same 16 MB). Not the default:
 * the soak's RSS 291, 296 MiB against 284, 285 with 16 (alternating runs), a target already
 * missed; a deployment whose API calls wait long at high concurrency can pass it.
 *
 * --no-allocation-site-pretenuring: V8 allocates straight into the old generation the objects of
 * any allocation site whose objects once survived young collections often (during a burst, or
 * while the cache fills). A request's objects made there (its context, the compress stage's
 * frame, header objects) then die only in a full GC, and so do the Buffers they hold: the soak
 * (bench/soak.ts) promoted 28 MB/s, held a 150 MiB V8 heap for 50 MiB live, and 37-81 MiB of
 * external memory. Without it: 9 MB/s promoted, a heap of 62-95 MiB, 35-40 MiB external, a third
 * less time in young collections. CPU on the quick bench (2 runs each, µs per response, with /
 * without): pass 46-51 / 58-64, hit-br h2 16 / 19-20, miss h2 413-423 / 453-462, miss h1
 * 428-434 / 417-426; RSS after miss, hit-br and pass 821-829 / 913-936 MiB.
 *
 * --expose-gc: lets `memory.trim` ask for a full collection when the load stops, before it gives
 * glibc's free pages back (src/runtime/malloc-trim.ts): the bodies let go since V8's last full
 * collection are freed then, not whenever the next load comes (after 40,000 misses: RSS 663-680
 * MiB against 726-742 with the trim alone). And bodies (uploads, origin responses, files streamed
 * from disk) ask for a young collection every 8 MiB (src/runtime/body-scavenge.ts), which ends the
 * storms of full collections under large bodies described below. Nothing else calls gc().
 *
 * --no-concurrent-array-buffer-sweeping: after a collection, the ArrayBuffers it found dead (the
 * chunks of bodies) are freed on the main thread at once, not by a background task later. V8
 * counts external memory against its limit until the sweeper has freed it, so the young
 * collection body-scavenge.ts asks for every 8 MiB of bodies only helps if the sweep follows it;
 * when the background task has to wait for a core (the server pinned to one, a worker on each, a
 * busy machine), the chunks stay counted, V8 reaches its limit and marks the whole heap. Seen
 * (2026-12-05, AMD EPYC, test/runtime/response-scavenge.test.ts with two busy loops beside it):
 * 7-8 full collections for four 32 MiB files in two of three runs; with the flag none over one in
 * four of four, but 3-4 in one run of five later (V8's old-space marking, which a crowded machine
 * still brings: the test now checks the scavenges asked for, not the full collections). On the
 * rig (Outpost pinned to one core, its helper threads with it, alternating, --trace-gc): a 32 MiB
 * file over HTTP/1.1 from 4 connections 36-65 full collections per 400 responses against 69-137,
 * 31-38 ms of CPU each against 34-46; 1 MiB uploads over HTTP/2 2-6 per 1,500 against 5-14
 * (1,773-2,173 µs against 1,867-2,360), over HTTP/1.1 1-5 against 8-15; 1 MiB
 * pass-through over HTTP/2 27-54 per 2,000 against 41-52 (chunks queued on a stream survive the
 * scavenge: see docs/performance.md); Brotli hits, pass-through and misses the same within the
 * host's noise (hits 23.7-43.2 µs against 29.5-41.8; misses 473-617 against 460-555).
 *
 * Not used: --min-semi-space-size=16 (a fixed young generation), in the serving flags for one
 * bench run on 2026-12-01. memory.trim's collection at rest shrinks the young generation to 1 MB,
 * and a load where little survives grows it back slowly: a kept file over HTTP/1.1 (wrk, 16
 * connections, 4 s runs) had 47 young collections per run before 30 s of quiet and 176 after
 * (3.3 MB allocated between two, against 12.8), 31 → 40, then 36 µs of CPU per response (memory.trim
 * off: 31 → 33, 32); the floor kept 12.8 MB after the quiet. But over HTTP/2 the next burst still
 * cost 17 → 26 µs with it (the cost there is the full collections that come sooner after the one at
 * rest: see docs/performance.md, A full collection at rest), it adds 24 MiB of RSS at start, and
 * the soak (mixed load) served fewer requests in each adjacent pair of 60 s runs: 7,117 and 5,990
 * req/s against 8,239 and 7,778 without (RSS 270-332 against 280-282 MiB; the host drifted that
 * hour).
 *
 * Not used: --initial-old-space-size=64, against what memory.trim's collection at rest costs the
 * next burst (docs/performance.md, A full collection at rest). Alternating pairs on 2026-12-01 (AMD
 * host, a small file over HTTP/2, two runs of 150,000 requests before 36 s of quiet and two after,
 * µs of CPU per response): without it 21, 22 → 24, 19 and 19, 20 → 27, 19; with it 18, 17 → 22, 22
 * and 18, 19 → 23, 22: the first run after the quiet hardly better, the second worse, and an earlier
 * run had 17-24 MiB more RSS through static-1mb + post-1mb.
 *
 * Not used: --minor-ms (young collections by mark-sweep instead of copying; 13.6 has it, off by
 * default). The 60 s soak served 12 % more requests (378k against 338k) at 471 MiB of RSS against
 * 288 (455 with --minor-ms-max-new-space-capacity-mb=16): the old generation grew to 240 MB.
 *
 * Not used: --single-threaded-gc (no parallel scavenging, concurrent marking or sweeping threads:
 * with the server pinned to one core they only take turns with it). Alternating fresh processes on
 * the rig, 2026-12-04, µs of CPU per response (with / without): misses over HTTP/2 374, 361 / 422,
 * 338; pass-through 2 x 8 46.5, 46.0, 39.7, 38.8 / 52.8, 50.3, 40.3, 39.7; with 1,000 in flight
 * 72, 51 / 70, 65; Brotli hits 18.4, 16.3 / 17.4, 17.1: within the host's drift that hour.
 *
 * Not used: earlier tier-up (--invocation-count-for-turbofan=1000
 * --minimum-invocations-after-ic-update=100). From a fresh start, pass-through over HTTP/2 in
 * windows of 10,000 requests: 158, 79-86, then 67-75 µs of CPU per response, against 151, 94-158,
 * then 66-73 with V8's thresholds: the second window sooner warm, the third onwards the same. Nor
 * is Node's isolate in V8's efficiency mode (which delays TurboFan to 15,000 calls): forcing it
 * (--efficiency-mode) left pass-through at 108-130 µs once warm against 70-76.
 *
 * Not used: --use-largepages=silent (Node copies its own code, 40 MiB, onto 2 MiB pages; with
 * transparent huge pages on `madvise` here it took, /proc/PID/smaps_rollup: AnonHugePages 40,960 kB).
 * Measured on 2026-12-06 (AMD EPYC VM, no PMU to count TLB misses): two Outposts pinned to the same
 * core, one with the flag, alternating h2load loads of 20,000-60,000 requests, 12-16 pairs per
 * scenario, CPU per response from /proc. A first pair of processes said 6-7 % less with it (pass-
 * through over HTTP/1.1 85 against 91 µs, Gzip hits 40.5 against 43.3, a small file over HTTP/2
 * 19.8 against 21.2; Brotli hits over HTTP/2 the same); a second pair with the ports swapped said
 * the opposite (pass-through 93 against 86 over HTTP/1.1, 88 against 81 over HTTP/2; Brotli hits
 * 27.5 against 27.7): the process, not the flag. Its cost is certain: RSS 184.6 against 155.6 MiB
 * after the same loads, PSS 165.8 against 121.1 (the code is no longer the binary's pages that every
 * Node process on the machine shares, but a private copy in each worker).
 *
 * Not used as a flag: --heap-growing-percent (memory.limit sets it at runtime, near the limit
 * only: src/runtime/heap-budget.ts). =50: V8 lets its old generation grow to up to 4x what survived
 * the last full collection before the next one (a factor it picks from how fast it collects), and
 * keeps the pages it frees resident for reuse: the soak's heap is ~45 MB live and grows to
 * 95-120 MiB between collections, most of the gap between its RSS (253 MiB) and the 201 wanted.
 * A fixed factor of 1.5 meets the soak's target (189-198 MiB) but made 3.8x as many full
 * collections on 20,000 misses (49 against 13) and cost 33 % more CPU per miss (1,704 against
 * 1,281-1,288 µs on a slow host). The memory goes back when the load stops instead (memory.trim).
 * Measured again on 2026-12-02 with the young generation at 16 (the soak now prints CPU per
 * request and V8's collections; 60 s runs): =100 (a fixed factor of 2) held the soak at 231 and
 * 242 MiB against 270, 278 and 291 without, 9 full collections in the minute against 4 and the
 * same CPU per request there (131 against 135 µs), but the quick bench's misses, whose cache keeps
 * growing, cost 12-15 % more CPU (h1 / h2 µs per response, alternating: 554 / 592 and 570 / 493
 * against 483 / 539 and 463 / 446). --max-old-space-size=2047 (V8's largest factor then 2.0
 * instead of 4) did the same to the soak (227, 232 MiB) but caps the heap: a big cache of small
 * objects would end in an out-of-memory crash instead of a bigger heap.
 *
 * Not used: --external-memory-accounted-in-global-limit. V8 (13.6, Node 24) counts the external
 * memory allocated since the last full collection (Buffers' backing stores) against the old
 * generation's limit, whose headroom is only ~12 MB while the heap is small (an empty cache). 1 MiB
 * uploads at ~400/s allocate ~24 MB of Buffers between two young collections, which free them; a
 * full collection that happens at the low point of that sawtooth leaves the next peak over the
 * limit, so the next one comes at once, and so on: a storm of full collections every 30-90 ms
 * (--trace-gc, --trace-incremental-marking: "Start (allocation limit)" with 12 MB of headroom), in
 * 5 of 6 runs of 6,000 uploads (35-144 full collections against 1-2), costing 30-60 % more CPU per
 * upload while it lasts (2,400-2,900 → 3,600-4,500 µs over HTTP/2). The flag moves external memory
 * to V8's global limit and ended every storm (one full collection in 6,000 uploads, 3 runs of 3),
 * but the cache's bodies are external memory too: 30,000 misses then held 1,071-1,132 MiB RSS
 * against 804-814 without it. Neither --max-semi-space-size=2, 8 nor a fixed young generation
 * stopped the storms; --initial-old-space-size=64 made them rarer (MCs 3-10 per 10 s of uploads
 * against 29-35) at 45 MB more RSS. What ends them is collecting the dead chunks before they pile
 * up: a young collection every 8 MiB of bodies, requests' and responses' (src/runtime/body-scavenge.ts).
 */
export const SERVING_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--no-allocation-site-pretenuring', '--expose-gc', '--no-concurrent-array-buffer-sweeping'];

/** A flag's name, so `--foo=1`, `--foo`, `--no-foo` and `--foo_bar` / `--foo-bar` count as one (V8 reads them alike). */
const flagName = (flag: string) => flag.split('=')[0].replace(/^--no-/, '--').replaceAll('_', '-');

/** `flags` plus the serving flags it does not already set. */
export function withServingFlags(flags: readonly string[]): string[] {
  const missing = SERVING_FLAGS.filter((flag) => !flags.some((given) => flagName(given) === flagName(flag)));
  return [...flags, ...missing];
}

/**
 * The runtime flags a server started as `outpost [start] ...` (bin/outpost.js) should be started
 * again with: the ones it was given plus the serving flags it lacks, or null when it lacks none or
 * is not a server (`--help` runs as it is). Flags given in NODE_OPTIONS count as given: the command
 * line would win over the operator's choice there.
 *
 * `check` runs with them too: V8's flags are part of the compile cache's key
 * (src/runtime/compile-cache.ts), so a check run as the server runs leaves the cache the next
 * start reads, and a single-process start after a deploy (`workers: 1`) then loads no TypeScript
 * stripper: 94.8 MiB once listening against 114.8 after a change (2026-12-05).
 */
export function servingLaunch(args: readonly string[], execArgv: readonly string[], nodeOptions = ''): string[] | null {
  if (args.includes('-h') || args.includes('--help')) return null;
  const given = [...nodeOptions.split(/\s+/).filter((flag) => flag.startsWith('--')), ...execArgv];
  const missing = withServingFlags(given).slice(given.length);
  return missing.length === 0 ? null : [...execArgv, ...missing];
}
