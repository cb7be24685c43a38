import v8 from 'node:v8';

/**
 * Keeps the process near or under `memory.limit` by letting V8's heap grow less as the limit
 * nears: a soft limit, the way Go's GOMEMLIMIT works, not a cap (nothing is refused or evicted).
 *
 * After each full collection V8 lets its old generation grow to a multiple of what survived
 * before it collects again: a factor from its collection speed against the allocation rate, up to
 * 4 on a machine with memory, and under load it is the most. With ~40 MB live that is ~160 MB of
 * heap, and the pages a collection frees stay resident in V8's page pool until a
 * memory-reducing collection. Beside a full 512 MB cache that is what overshoots: after 20,000
 * misses, 100,000 pass-through requests with 1,000 in flight on each protocol and 3,000 1 MiB
 * uploads, 834-861 MiB RSS of which V8's pages 193-197 MiB (rig, 2026-12-03, three runs).
 *
 * Five times a second (CHECK_MS) this looks at what is not V8's heap (RSS less V8's committed
 * heap: the cache's slabs, Node's binary, glibc's heap, V8's pooled pages): the limit less that
 * and less the young generation is the room V8's old generation has, and the factor is that room
 * over its live size (the least it used over the last LIVE_WINDOW checks, 10 s), between
 * MIN_FACTOR (and MIN_GROWTH bytes) and 4 (from 4 up, V8's own choice, which is at most 4; but see
 * filling, below). V8 reads it when a full collection ends
 * (--heap-growing-percent, which V8 13.6 reads at each of them; set at runtime through
 * v8.setFlagsFromString). Far from the limit
 * nothing changes; near it V8 collects sooner, which costs CPU where much survives the young
 * generation. The same replay with the "auto" limit (736 MiB): 731-754 MiB, 68 full collections
 * against 28, and CPU per response +0-10 % but with 1,000 in flight over HTTP/2, +15-20 % (the
 * factor at its floor, a full collection every ~370 ms: there nearly every request waits long
 * enough to be promoted, ~7 KB each). A floor of 2 instead: 753-762 MiB, +5-9 % on misses and
 * on that crowd.
 *
 * While the memory cache fills, far from the limit, V8 gets its largest factor instead of its own
 * choice (FILLING_BYTES a second). V8 counts the external memory allocated since its last full
 * collection against its old generation's limit, and the cache's bodies are external memory (its
 * slabs) that no collection can free: with its own factor, under 4 while the heap is small and
 * busy, V8 marked the whole heap every 10-25 MB of new cache, for a few MB of garbage each time.
 */

/** V8's largest growth factor (heap-controller.cc: kHighFactor). */
const MAX_FACTOR = 4;
/**
 * The least it is given: a full collection per half of the live heap allocated into the old
 * generation. Less would collect on every few MB promoted (1,000 requests in flight promote
 * ~6 KB each: 13,000 a second would be ~80 MB/s), a cost with no bound.
 */
export const MIN_FACTOR = 1.5;

const MiB = 1024 * 1024;
/**
 * And the least growth in bytes, whatever the live size: three semi-spaces' worth of promotion
 * (--max-semi-space-size=16, node-flags.ts). V8 starts marking as soon as the old
 * generation has less room left than the young generation could promote, so a small live heap
 * held at MIN_FACTOR is marked again the moment a collection ends. Seen (rig, 2026-12-04, a full
 * 512 MB cache taking 30 KB misses at ~2,300 a second, 34 MB live, the budget at 50 %): a full
 * collection every ~120 ms and no young one between, 408-420 µs of CPU per miss; with 100 %, 7-8
 * full collections per 5,000 misses and 342-396 µs; with 150 %, 4-5 and 300-310 µs, as with V8's
 * own choice; V8's committed heap 71-73 MB in each, RSS 708, 724 and 732 MiB (limit 736). The
 * commit before and this one the same hour: 422-496 µs, RSS 758-760 against 296-326 µs (140 %),
 * 743-747: RSS moves by ~20 MiB from one process to the next, the CPU does not.
 */
export const MIN_GROWTH = 48 * MiB;
/**
 * What "auto" adds to the bytes this process's memory cache may hold: Node's binary (~55 MiB
 * resident), V8's young generation (32 at --max-semi-space-size=16), a live heap of 40-60, glibc's
 * heap (~30), and ~60 for V8's heap to grow in between two full collections.
 */
export const AUTO_HEADROOM = 224 * MiB;

/** memory.limit in bytes for a process whose memory cache holds up to `cacheBytes`, or null when off. */
export function memoryLimitOf(limit: 'auto' | 'off' | number, cacheBytes: number): number | null {
  if (limit === 'off') return null;
  return limit === 'auto' ? cacheBytes + AUTO_HEADROOM : limit;
}

export interface HeapReading {
  /** Resident set size of the process. */
  readonly rss: number;
  /** V8's committed heap, all spaces. */
  readonly committed: number;
  /** Of it, the young generation's (new space and its large objects): fixed by --max-semi-space-size, not by the factor. */
  readonly youngCommitted: number;
  /** The old generation in use (its live objects and the garbage not yet collected). */
  readonly oldUsed: number;
}

/**
 * The growth percent for V8 (--heap-growing-percent) under `limit` bytes of RSS, with `oldLive`
 * the old generation's live bytes (the least in use lately: what the last full collection left):
 * with room for MAX_FACTOR times it or more, 0 for V8's own choice, or FILLING_PERCENT while the
 * memory cache fills (`filling`); else (factor - 1) x 100 in steps of 10, never under MIN_FACTOR
 * nor under MIN_GROWTH bytes.
 */
export function growthPercentFor(limit: number, reading: HeapReading, oldLive: number, filling = false): number {
  const outside = Math.max(0, reading.rss - reading.committed);
  const room = limit - outside - reading.youngCommitted;
  const factor = oldLive > 0 ? room / oldLive : MAX_FACTOR;
  if (factor >= MAX_FACTOR) return filling ? FILLING_PERCENT : 0;
  const tenths = Math.max(Math.floor((factor - 1) * 10), Math.round((MIN_FACTOR - 1) * 10), Math.ceil(MIN_GROWTH / oldLive * 10));
  return 1 + tenths / 10 >= MAX_FACTOR ? 0 : tenths * 10;
}

/** How often the budget looks: a cache that starts to fill is seen before V8 has marked its heap many times. */
export const CHECK_MS = 200;

/**
 * The memory cache's growth over the last second (FILL_WINDOW checks) from which it counts as
 * filling: V8 marking its heap a few times a second for it. Measured (2026-12-05, rig: a fresh
 * process, 8,000 misses of the 30 KB page into the bench's 512 MB cache over HTTP/2, ~75 MB of
 * bodies a second, four alternating pairs): V8's own factor made 11-17 full collections and
 * 495-541 µs of CPU per miss, factor 4 (--heap-growing-percent=300) made 5 and 467-485 µs; this
 * budget, which sees the fill ~0.5 s in, 8-10 and 505-508 µs against 23-28 and 575-580. Not
 * less: V8 reads the factor when a full collection ends and keeps it until the next, so a short
 * fill seen as filling leaves the heap free to grow to 4x its live size for one cycle. At 32 MB
 * the memory soak's whole cache (~25 MB, taken in its first 2 s) never counts; with 8 MB a
 * second it did (a 60 s soak at 209 MiB against 198 before, inside the 182-207 such runs read
 * when it cannot count).
 */
export const FILLING_BYTES = 32 * MiB;

/** Checks over which the cache's growth is measured: a second of them. */
const FILL_WINDOW = 1000 / CHECK_MS;

/** What V8 is told while the cache fills far from the limit: its largest factor, 4. */
export const FILLING_PERCENT = (MAX_FACTOR - 1) * 100;

/** Checks whose least old-generation use stands for the live heap: 10 s of them. */
const LIVE_WINDOW = 10_000 / CHECK_MS;

export interface HeapBudgetStats {
  /** The limit in bytes (0: off). */
  readonly limit: number;
  /** The growth percent given to V8 now (0: V8's own). */
  readonly percent: number;
  /** Seconds the checks found the process near the limit (a percent other than 0 and FILLING_PERCENT). */
  readonly tightSeconds: number;
}

export interface HeapBudget {
  /** One check now (the timer calls it every CHECK_MS): the percent given to V8. */
  check(): number;
  stats(): HeapBudgetStats;
  /** Whether the last check found the process near the limit (V8 held to less than its largest growth). */
  tight(): boolean;
  /** A new limit (a reload); null: off until a limit is given again (V8 has its own choice back). */
  setLimit(limit: number | null): void;
  /** Stops the checks and gives V8 its own choice back. */
  stop(): void;
}

export interface HeapBudgetOptions {
  readonly read?: () => HeapReading;
  /** Tells V8 the growth percent (0: its own). */
  readonly apply?: (percent: number) => void;
  /** Bytes the process's memory cache holds now (undefined: it has none): its growth says it fills. */
  readonly cacheHeld?: () => number | undefined;
  /** Start the check timer (tests call check() themselves). */
  readonly timer?: boolean;
}

const YOUNG = new Set(['new_space', 'new_large_object_space']);

export function readHeap(): HeapReading {
  let committed = 0;
  let youngCommitted = 0;
  let oldUsed = 0;
  for (const space of v8.getHeapSpaceStatistics()) {
    committed += space.space_size;
    if (YOUNG.has(space.space_name)) youngCommitted += space.space_size;
    else oldUsed += space.space_used_size;
  }
  return { rss: process.memoryUsage.rss(), committed, youngCommitted, oldUsed };
}

export function applyGrowthPercent(percent: number): void {
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
}

/**
 * Whether the process was started with its own --heap-growing-percent (the operator's choice,
 * which the budget leaves alone).
 */
export function growthSetByOperator(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return [...execArgv, ...nodeOptions.split(/\s+/)].some((arg) => /^--heap[-_]growing[-_]percent(=|$)/.test(arg));
}

export function startHeapBudget(initialLimit: number | null, options: HeapBudgetOptions = {}): HeapBudget {
  const read = options.read ?? readHeap;
  const apply = options.apply ?? applyGrowthPercent;
  const cacheHeld = options.cacheHeld ?? (() => undefined);
  // What the cache held at the last FILL_WINDOW checks and now (0 for none), oldest first.
  const held: number[] = [cacheHeld() ?? 0];
  let limit = initialLimit;
  let percent = 0;
  let tightChecks = 0;
  let tight = false;
  const tell = (next: number) => {
    if (next === percent) return;
    percent = next;
    apply(percent);
  };
  // The old generation's use over the last LIVE_WINDOW checks: its least is about what the last
  // full collection left alive (V8 tells no one when one ends; a check sees the drop).
  const recent: number[] = [];
  const check = (): number => {
    held.push(cacheHeld() ?? 0);
    if (held.length > FILL_WINDOW + 1) held.shift();
    if (limit === null) return percent;
    const reading = read();
    recent.push(reading.oldUsed);
    if (recent.length > LIVE_WINDOW) recent.shift();
    const filling = held[held.length - 1] - held[0] >= FILLING_BYTES;
    const next = growthPercentFor(limit, reading, Math.min(...recent), filling);
    tight = next !== 0 && next !== FILLING_PERCENT;
    if (tight) tightChecks++;
    tell(next);
    return percent;
  };
  const timer = options.timer === false ? undefined : setInterval(check, CHECK_MS);
  timer?.unref();
  return {
    check,
    stats: () => ({ limit: limit ?? 0, percent, tightSeconds: tightChecks * CHECK_MS / 1000 }),
    tight: () => tight,
    setLimit(next) {
      limit = next;
      if (limit === null) {
        tight = false;
        tell(0);
      }
    },
    stop() {
      clearInterval(timer);
      tell(0);
    },
  };
}
