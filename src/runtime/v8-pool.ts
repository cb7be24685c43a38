import { fileURLToPath } from 'node:url';
import { getHeapSpaceStatistics } from 'node:v8';
import { loadAddon } from './native-addon.ts';

/**
 * V8's page pool: the pages a regular full collection frees stay resident for V8's next
 * allocations, and only a memory-reducing collection gives them back. What memory.trim uses to
 * see the pool (pagedHeapBytes) and to empty it: V8's memory-pressure signal (native/heap-pressure.cc)
 * under load, a last-resort collection at rest (v8Collector). malloc-trim.ts decides when.
 */

export const PRESSURE_HELPER_PATH = fileURLToPath(new URL('../../native/build/heap-pressure.node', import.meta.url));

/** The helper that gives V8's memory-pressure signal (native/heap-pressure.cc). */
export interface PressureHelper {
  /** A memory-reducing full collection, started now and done in steps: V8's pooled pages go back when it ends. */
  moderate(): void;
  /** The largest size of V8's pooling spaces (pagedHeapBytes) at a full collection's start since the last call, 0 for none; absent from a helper built before it. */
  pagedPeak?(): number;
}

/** V8's memory-pressure signal, or why there is none (not built, or not Outpost's helper). */
export function loadPressureHelper(path = PRESSURE_HELPER_PATH): { helper: PressureHelper; why?: undefined } | { helper: null; why: string } {
  const { addon: helper, why } = loadAddon<PressureHelper>(path, 'a C++ compiler');
  if (helper === null) return { helper, why };
  return typeof helper.moderate === 'function' ? { helper } : { helper: null, why: `${path} is not Outpost's helper` };
}

type ExposedGc = (options: { type: 'major'; execution: 'async'; flavor: 'last-resort' }) => Promise<void>;

/**
 * V8's memory-reducing full collection, started as a task, when the process runs with --expose-gc.
 * A regular collection frees V8's pages into its page pool, which keeps them resident for the
 * next allocations ("pooled: N MB" in --trace-gc): a heap that grew to 200 MB under load and
 * was collected down to 6 stays at ~220 MiB RSS. Only a memory-reducing collection (V8's memory
 * reducer, memory pressure, or this "last resort" flavor: full collections until nothing more
 * is freed) releases the pool. Measured: 247 -> 58 MiB. It pauses the loop for a few full
 * collections (two of a 57 MB heap after 40,000 misses: 0.5 s on a slow host, against 0.18 s for
 * one regular collection), which is why it waits for quiet.
 */
export function v8Collector(): (() => Promise<void>) | null {
  const gc = (globalThis as { gc?: ExposedGc }).gc;
  return typeof gc === 'function' ? () => gc({ type: 'major', execution: 'async', flavor: 'last-resort' }) : null;
}

/**
 * The bytes V8's heap commits in the spaces whose freed pages it pools: all but the large-object
 * spaces, which give their pages back as they free them. V8 does not say how much it keeps pooled
 * (--trace-gc prints it), but a pooled page is one these spaces committed and let go, and they
 * take pooled pages before new ones: so the most they committed since the pool was last emptied,
 * less what they commit now, is what the pool holds (within what they grew between two looks).
 */
export function pagedHeapBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) if (!space.space_name.endsWith('large_object_space')) bytes += space.space_size;
  return bytes;
}
