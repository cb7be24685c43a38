import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { allocatorOf, type Allocator } from './allocator.ts';
import { loadAddon } from './native-addon.ts';
import { loadPressureHelper, pagedHeapBytes, v8Collector } from './v8-pool.ts';

/**
 * Gives glibc's free heap pages back to the system (`memory.trim`).
 *
 * A cache that keeps replacing bodies leaves glibc's heap full of free chunks between live ones,
 * and glibc returns pages only from the top of its heap: after a miss load RSS stays 80-200 MiB
 * above what is in use (docs/performance.md: Giving memory back). `malloc_trim(0)` also releases
 * the whole pages inside the free chunks; Node does not expose it, so a small Node-API helper does
 * (native/, built at install). A trim walks the whole heap holding glibc's lock: 2-15 ms on a
 * 600 MB heap (measured on the bench host), and under a load that keeps allocating the pages are
 * taken again within seconds. So it runs when the work stops (the event loop quiet for 30 s after
 * being busy), which is when the memory is no longer needed, and under steady load at most once a
 * minute, when a lot is free: the way jemalloc's decay returns pages, at a coarser grain.
 *
 * When the work stops V8 has no reason to collect, so the bodies the cache let go since its last
 * full collection (evicted, replaced: tens of MB under a miss load) would stay allocated: after two
 * quiet minutes a check asks for a full collection (where the process runs with --expose-gc, one
 * of the serving flags), and the next one trims again. Not sooner: that collection leaves V8's
 * limits low, and the next burst pays (small files over HTTP/2 right after it: 26-35 µs of CPU
 * per response for 300,000 responses against 18-23 before it; after the trim alone at 30 s,
 * 18-27 against 20-26; rig, 2026-12-02): a pause of a minute is still traffic. The collection
 * is V8's memory-reducing kind,
 * which also gives back the pages V8 itself keeps pooled after collecting (v8Collector). Java's G1
 * does the same when idle (JEP 346, periodic collections that give memory back). Measured after
 * 40,000 misses (512 MB cache, bench host): RSS 827 MiB untouched, 726-742 with the trim alone,
 * 663-680 with the collection first.
 */

export interface MallocInfo {
  /** Bytes glibc's arenas hold (in use or free), and of those, in use and free; mmapped blocks apart. */
  readonly heap: number;
  readonly inUse: number;
  readonly free: number;
  readonly mmapped: number;
}

/** The native helper (native/malloc-trim.c). */
export interface MallocHelper {
  /** malloc_trim(0): whether any memory went back to the system. */
  trim(): boolean;
  /** mallinfo2(): walks glibc's free lists (up to ~2 ms on a fragmented 600 MB heap). */
  info(): MallocInfo;
  /** A Buffer of `length` bytes mapped from the system, unmapped when V8 collects it (the cache's slabs: src/cache/store/slab-memory.ts). */
  mapSlab(length: number): Buffer;
  /** Bytes mapped by mapSlab and not yet unmapped (spares included). */
  mappedBytes(): number;
  /**
   * Up to how many bytes of collected slabs of `length` bytes to keep mapped for the next mapSlab
   * of that length (spares), instead of unmapping them; returns the bytes unmapped now (spares over
   * the limit or of another length). Absent from a helper built before spares.
   */
  keepSpareSlabs?(bytes: number, length: number): number;
  /** Unmaps every spare now, and keeps none until the next mapSlab (the limit stays); returns the bytes unmapped. */
  releaseSpareSlabs?(): number;
  /** Bytes of spares kept mapped. */
  spareBytes?(): number;
}

export const HELPER_PATH = fileURLToPath(new URL('../../native/build/malloc-trim.node', import.meta.url));

/** The helper, or why there is none: trimming is for glibc's malloc, and needs the build. */
export function loadMallocHelper(path = HELPER_PATH, allocator: Allocator = allocatorOf()): { helper: MallocHelper; why?: undefined } | { helper: null; why: string } {
  if (allocator === 'jemalloc') return { helper: null, why: 'jemalloc returns free pages itself' };
  const { addon: helper, why } = loadAddon<MallocHelper>(path, 'a C compiler, glibc 2.33+');
  if (helper === null) return { helper, why };
  if (typeof helper.trim !== 'function' || typeof helper.info !== 'function') return { helper: null, why: `${path} is not Outpost's helper` };
  return { helper };
}

const MiB = 1024 * 1024;

export interface TrimPolicy {
  /** How often the event loop's utilization is looked at. */
  readonly checkEveryMs: number;
  /** Busy less than this share of the last check period: quiet. */
  readonly quietUtilization: number;
  /**
   * Quiet checks in a row before the memory is given back: a lull between bursts is not the end of
   * the work, and the first burst after a trim pays for it (bench, 1 MiB uploads over HTTP/2 right
   * after a trim: 3,297 µs of CPU per response against 1,648 without; after one quiet second
   * 10-20 % more over the whole bench, after five still 2x on that row whenever the bench left
   * Outpost idle between its runs). Half a minute: a lull that long is a pause in the traffic.
   */
  readonly quietChecks: number;
  /** Quiet checks in a row before the full collection that lets go of the cache's replaced bodies (see above): more than quietChecks. */
  readonly collectChecks: number;
  /** When quiet after work, trim if at least this much is free. */
  readonly quietFreeBytes: number;
  /** Under load, trim at most this often... */
  readonly busyEveryMs: number;
  /**
   * ...and only when at least this much is free. 16 MiB: the 5-minute soak (bench/soak.ts: ~8,500
   * requests/s, 25 MiB cached) holds 25-28 MiB free in glibc's arenas, which the 64 MiB of before
   * never trimmed; trimmed once a minute its RSS fell by 4-16 MiB at each trim and grew back
   * 3-5 MiB in the minute after: 192.7-197.9 MiB in its second half against 217.3-217.8 with V8's
   * heap the same size (65-68 MiB committed), 2026-12-04; a second run 183-197 until V8's heap
   * grew (docs/performance.md: Trimming under load from 16 MiB free). A trim walks the whole
   * heap (2-15 ms on a 600 MB one, above); the soak's is ~40 MB, the bench's after 40,000 misses
   * ~70 MB (the slabs are mapped apart).
   */
  readonly busyFreeBytes: number;
  /**
   * Under load near `memory.limit` (the heap budget holds V8 back: heap-budget.ts), trim this often
   * instead of busyEveryMs. There what glibc holds free is taken from V8's room, and the minute
   * between trims left it there: a full 512 MB cache after 100,000 pass-through requests with
   * 1,000 in flight held 49 MiB free in glibc's heap, 27 MiB of it resident, RSS 765 MiB against
   * the limit of 736 (rig, 2026-12-06); a trim took 17 ms.
   */
  readonly busyTightEveryMs: number;
  /**
   * Under load, ask V8 for a memory-reducing collection this often (`memory.pressure`,
   * native/heap-pressure.cc), or never (null, the default). A regular full collection keeps the
   * pages it frees resident in V8's page pool, so without it RSS follows the highest the old
   * generation reached since the load began. Measured on the 5-minute soak (bench/soak.ts,
   * 2026-12-05, one run each, second half): without it RSS 203-209 MiB, V8's heap 66-86 MiB
   * committed; every 20 s 163-166 MiB right after each signal and 185-200 between (217.0 once, at
   * a peak of the old generation just before one); every 10 s 140-147 and 166-169 (169.2 at most
   * against the target of 198.9), V8's heap 32-35 and 63-66 MiB; CPU per request the same in the
   * three (52-53 µs), full collections in the 5 minutes 59, 75 and 120. But not free: a reducing
   * collection also shrinks the young generation to its least, and the quick bench every 10 s
   * (its cache full after the misses) spent 15-40 % more CPU per pass-through response (pass over
   * HTTP/1.1 44 → 55 µs, with 1,000 in flight over HTTP/2 70 → 99), 2-4 µs more per hit, while
   * its RSS after all runs was 648.7 MiB against 738.7. So it is the operator's choice.
   */
  readonly busyPressureEveryMs: number | null;
  /**
   * Busy or quiet, ask V8 for a memory-reducing collection as soon as the pages it keeps pooled
   * reach this many bytes (estimated: pagedHeapBytes, poolToGiveBack), or never (null). Where
   * busyPressureEveryMs signals on a clock and pays for it whether or not anything is pooled, this
   * signals once per drop of the heap: a load that made V8's heap grow (1,000 requests in flight
   * took it from 68 to 181 MB committed) and then fell (to 91: 90 MB pooled) otherwise leaves those
   * pages resident until the load stops (quick bench with --trace-gc, 2026-12-05: 90 MB pooled from
   * the pass-through rows to the quiet collection two minutes after the last run). A steady load pools
   * little (the soak: 0-8 MB at its full collections, up to 16 as estimated here), so it is never
   * signalled, and pays nothing.
   */
  readonly pooledPressureBytes: number | null;
  /**
   * With pooledPressureBytes on, a smaller pool that stays (at least stalePoolBytes at every check
   * for stalePoolMs) is signalled too: a load that reuses its pool takes pages back from it within
   * seconds, one whose heap settled lower never does. The 5-minute soak (2026-12-06, bench/soak.ts)
   * kept 16.5-17.5 MiB pooled from 115 s to its end, which held its RSS at 204-206 MiB against the
   * target of 198.9; a minute is six times the gap `memory.pressure: 10s` leaves, whose cost the
   * soak did not show (52-53 µs per request with and without it).
   */
  readonly stalePoolBytes: number;
  readonly stalePoolMs: number;
  /** After a pooled signal, at least this long before the next: the reducing collection ends, and the heap's peak is tracked again from what it left. */
  readonly pooledPressureGapMs: number;
}

export const TRIM_POLICY: TrimPolicy = {
  checkEveryMs: 1000,
  quietUtilization: 0.1,
  quietChecks: 30,
  collectChecks: 120,
  quietFreeBytes: 8 * MiB,
  busyEveryMs: 60_000,
  busyFreeBytes: 16 * MiB,
  busyTightEveryMs: 10_000,
  busyPressureEveryMs: null,
  pooledPressureBytes: 32 * MiB,
  stalePoolBytes: 8 * MiB,
  stalePoolMs: 60_000,
  pooledPressureGapMs: 10_000,
};

export interface TrimStats {
  readonly trims: number;
  readonly seconds: number;
  /** V8 collections asked for when quiet, and their time until done (the process pauses for most of it). */
  readonly collections: number;
  readonly collectionSeconds: number;
  /** RSS before less RSS after, summed (what the trims and the spare slabs released when quiet gave back, as the system counts it). */
  readonly releasedBytes: number;
  /** Memory-reducing collections asked of V8 (busyPressureEveryMs, pooledPressureBytes). */
  readonly pressures: number;
  /** The bytes V8 keeps pooled as the last check estimated them (pooledPressureBytes; 0 when not tracked). */
  readonly pooledBytes: number;
}

export interface MallocTrimmer {
  /**
   * One check now (the timer calls it every `checkEveryMs`): returns why it trimmed, 'collect'
   * when it asked V8 for a full collection (the trim follows at the next quiet check), 'pressure'
   * when it asked V8 for a memory-reducing one (on the clock under load, or for a pool), or null.
   */
  check(): 'quiet' | 'busy' | 'collect' | 'pressure' | null;
  stats(): TrimStats;
  /** glibc's heap now (the helper's mallinfo2). */
  info(): MallocInfo;
  stop(): void;
}

export interface TrimmerOptions {
  readonly policy?: TrimPolicy;
  /** Milliseconds, only compared with each other. */
  readonly now?: () => number;
  /** The event loop's busy share (0-1) since the previous call. */
  readonly utilization?: () => number;
  readonly rss?: () => number;
  /** Starts a full garbage collection (a promise: timed until it settles); by default V8's memory-reducing one when exposed (--expose-gc, v8Collector), else none. */
  readonly collect?: (() => void | Promise<void>) | null;
  /** Tells V8 memory is short (busyPressureEveryMs, pooledPressureBytes); by default the helper's when the policy asks for it (loadPressureHelper), else none. */
  readonly pressure?: (() => void) | null;
  /** The bytes V8's pooling spaces commit now (pagedHeapBytes). */
  readonly pagedBytes?: () => number;
  /** Their size at the start of the full collections since the last call, 0 for none (by default the pressure helper's pagedPeak, where it has one). */
  readonly pagedPeak?: () => number;
  /** Whether the process is near memory.limit now (busyTightEveryMs); by default never. */
  readonly tight?: () => boolean;
  /** Start the check timer (tests call check() themselves). */
  readonly timer?: boolean;
}

/** The event loop's utilization since the previous call (perf_hooks). */
export function loopUtilization(): () => number {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, last);
    last = now;
    return utilization;
  };
}

/** The pooledPressureBytes and busyPressureEveryMs of `memory.pressure`: "auto", a duration (ms) or off (null). */
export function pressurePolicy(pressure: 'auto' | number | null): Pick<TrimPolicy, 'busyPressureEveryMs' | 'pooledPressureBytes'> {
  if (pressure === null) return { busyPressureEveryMs: null, pooledPressureBytes: null };
  return { busyPressureEveryMs: pressure === 'auto' ? null : pressure, pooledPressureBytes: TRIM_POLICY.pooledPressureBytes };
}

/**
 * The trimmer `memory` asks for (memory.trim, memory.pressure), or none: trim off, or no helper
 * (the startup line says why). `tight`: whether the process is near memory.limit (its heap budget's).
 */
export function startConfiguredTrimmer(memory: { readonly trim: boolean; readonly pressure: 'auto' | number | null }, tight?: () => boolean): MallocTrimmer | undefined {
  const { helper } = memory.trim ? loadMallocHelper() : { helper: null };
  return helper === null ? undefined : startMallocTrimmer(helper, { policy: { ...TRIM_POLICY, ...pressurePolicy(memory.pressure) }, tight });
}

export function startMallocTrimmer(helper: MallocHelper, options: TrimmerOptions = {}): MallocTrimmer {
  const policy = options.policy ?? TRIM_POLICY;
  const now = options.now ?? (() => performance.now());
  const utilization = options.utilization ?? loopUtilization();
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  const tight = options.tight ?? (() => false);
  const collect = options.collect !== undefined ? options.collect : v8Collector();
  const wantsPressure = policy.busyPressureEveryMs !== null || policy.pooledPressureBytes !== null;
  const pressureHelper = options.pressure === undefined && wantsPressure ? loadPressureHelper().helper : null;
  const pressure = options.pressure !== undefined ? options.pressure : pressureHelper === null ? null : () => pressureHelper.moderate();
  const pagedBytes = pressure === null || policy.pooledPressureBytes === null ? null : options.pagedBytes ?? pagedHeapBytes;
  const pagedPeak = options.pagedPeak ?? (typeof pressureHelper?.pagedPeak === 'function' ? () => pressureHelper.pagedPeak!() : () => 0);
  let trims = 0;
  let seconds = 0;
  let releasedBytes = 0;
  let collections = 0;
  let collectionSeconds = 0;
  let pressures = 0;
  let lastTrim = now();
  let lastPressure = now();
  // Work since the last trim: a quiet process that trimmed once has nothing more to give back.
  let workedSinceTrim = false;
  // Work since the last quiet collection: a quiet process that collected once has nothing more to free.
  let workedSinceCollection = false;
  // A full collection was asked for at the last check: the trim is due at this one if still quiet.
  let collected = false;
  let quietInARow = 0;
  // The most V8's pooling spaces committed since its pool was last emptied (pagedHeapBytes), and
  // until when it is not tracked: a reducing collection asked for is still under way.
  let pagedPeakSeen = 0;
  let untrackedUntil = -Infinity;
  let pooledBytes = 0;
  // Since when the pool has held at least stalePoolBytes at every check (null: it has not).
  let stalePoolSince: number | null = null;

  /** The pool is emptied (a reducing collection asked for): tracked again once it is done. */
  const poolEmptied = () => { untrackedUntil = now() + policy.pooledPressureGapMs; stalePoolSince = null; };

  /** V8's memory-pressure signal: a reducing collection, which empties the pool. */
  const signal = (): 'pressure' => {
    lastPressure = now();
    pressures++;
    poolEmptied();
    pressure!();
    return 'pressure';
  };

  /**
   * Whether V8's pool is to be given back: at least pooledPressureBytes, or at least stalePoolBytes
   * for stalePoolMs. Tracks the peak on the way: the spaces' size now, and at each full
   * collection's start since the last check (the helper's, which sees the peaks a look once a
   * second misses).
   */
  const poolToGiveBack = (): boolean => {
    if (pagedBytes === null) return false;
    const paged = pagedBytes();
    const atCollections = pagedPeak();
    if (now() < untrackedUntil) {
      pagedPeakSeen = paged; // the reducing collection's own start is not a peak to give back
      pooledBytes = 0;
      return false;
    }
    pagedPeakSeen = Math.max(pagedPeakSeen, atCollections, paged);
    pooledBytes = pagedPeakSeen - paged;
    if (pooledBytes < policy.stalePoolBytes) stalePoolSince = null;
    else stalePoolSince ??= now();
    return pooledBytes >= policy.pooledPressureBytes! || (stalePoolSince !== null && now() - stalePoolSince >= policy.stalePoolMs);
  };
  const check = (): 'quiet' | 'busy' | 'collect' | 'pressure' | null => {
    const pooled = poolToGiveBack();
    const busy = utilization() >= policy.quietUtilization;
    if (busy) {
      workedSinceTrim = true;
      workedSinceCollection = true;
      collected = false;
      quietInARow = 0;
      if (now() - lastTrim >= (tight() ? policy.busyTightEveryMs : policy.busyEveryMs)) return trim('busy');
      if (pooled) return signal();
      if (pressure === null || policy.busyPressureEveryMs === null || now() - lastPressure < policy.busyPressureEveryMs) return null;
      return signal();
    }
    quietInARow++;
    if (collected) return trim('quiet'); // what the collection freed
    if (quietInARow >= policy.collectChecks && workedSinceCollection && collect !== null) {
      workedSinceCollection = false;
      collected = true;
      collections++;
      poolEmptied();
      const started = now();
      const done = collect();
      if (done instanceof Promise) done.catch(() => {}).finally(() => { collectionSeconds += (now() - started) / 1000; });
      return 'collect';
    }
    if (pooled) return signal();
    return quietInARow >= policy.quietChecks && workedSinceTrim ? trim('quiet') : null;
  };

  const trim = (reason: 'quiet' | 'busy'): 'quiet' | 'busy' | null => {
    // Free chunks stay free (and counted) after their pages are released; the clock and the work
    // flag keep a trimmed heap from being trimmed again for nothing.
    lastTrim = now();
    workedSinceTrim = false;
    collected = false;
    // The work stopped: the cache's spare slabs (kept for the slabs it fills under load) go back too.
    const before = rss();
    const spares = reason === 'quiet' ? helper.releaseSpareSlabs?.() ?? 0 : 0;
    const worthTrimming = helper.info().free >= (reason === 'quiet' ? policy.quietFreeBytes : policy.busyFreeBytes);
    if (!worthTrimming && spares === 0) return null;
    if (worthTrimming) {
      const started = performance.now();
      helper.trim();
      seconds += (performance.now() - started) / 1000;
      trims++;
    }
    releasedBytes += Math.max(0, before - rss());
    return reason;
  };

  const timer = options.timer === false ? undefined : setInterval(check, policy.checkEveryMs);
  timer?.unref();
  return {
    check,
    stats: () => ({ trims, seconds, releasedBytes, collections, collectionSeconds, pressures, pooledBytes }),
    info: () => helper.info(),
    stop: () => clearInterval(timer),
  };
}
