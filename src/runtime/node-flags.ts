/**
 * Runtime flags a serving process should start with. They cannot be set from inside a running
 * process (V8 sizes its heap at start), so they go where Outpost is launched: the cluster primary
 * gives them to its workers, `npm start` passes them, and so does the benchmark.
 *
 * --max-semi-space-size=4 (MB; V8's default grows it to 16 or 32): a young generation that fits in
 * cache. Measured on the benchmark (2026-11-30, one core): POST 1 MiB 3,021 → 1,018 µs of CPU per
 * response over HTTP/1.1 and 3,901 → 1,634 over HTTP/2, pass-through p99 15 → 5 ms, cache hits a
 * few percent less CPU, misses 2-4 % more; RSS after the run 1,148 → 984 MiB.
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
 * MiB against 726-742 with the trim alone). Nothing else calls gc().
 *
 * Not used: --heap-growing-percent=50. V8 lets its old generation grow to up to 4x what survived
 * the last full collection before the next one (a factor it picks from how fast it collects), and
 * keeps the pages it frees resident for reuse: the soak's heap is ~45 MB live and grows to
 * 95-120 MiB between collections, most of the gap between its RSS (253 MiB) and the 201 wanted.
 * A fixed factor of 1.5 meets the soak's target (189-198 MiB) but made 3.8x as many full
 * collections on 20,000 misses (49 against 13) and cost 33 % more CPU per miss (1,704 against
 * 1,281-1,288 µs on a slow host). The memory goes back when the load stops instead (memory.trim).
 */
export const SERVING_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--no-allocation-site-pretenuring', '--expose-gc'];

/** A flag's name, so `--foo=1`, `--foo`, `--no-foo` and `--foo_bar` / `--foo-bar` count as one (V8 reads them alike). */
const flagName = (flag: string) => flag.split('=')[0].replace(/^--no-/, '--').replaceAll('_', '-');

/** `flags` plus the serving flags it does not already set. */
export function withServingFlags(flags: readonly string[]): string[] {
  const missing = SERVING_FLAGS.filter((flag) => !flags.some((given) => flagName(given) === flagName(flag)));
  return [...flags, ...missing];
}
