import { loadMallocHelper, type MallocHelper } from '../../runtime/malloc-trim.ts';

/**
 * Where the memory store's slabs come from (body-arena.ts): memory mapped from the system by the
 * native helper when it is built and the process runs on glibc's malloc (native/malloc-trim.c,
 * mapSlab: why), else `Buffer.allocUnsafeSlow`. A mapped slab goes back to the system as soon as
 * V8 collects its last view, or is kept as a spare for the next slab (`keepSpareSlabsFor`); one from
 * malloc leaves a 1 MiB hole in glibc's heap. jemalloc gives its free pages back itself, so there
 * the slabs stay jemalloc's.
 */
export type AllocateSlab = (size: number) => Buffer;

export const allocateFromHeap: AllocateSlab = (size) => Buffer.allocUnsafeSlow(size);

/**
 * The helper's mapped slabs when it has them and they work here (a helper built before it did has
 * no mapSlab; a runtime that takes no external buffers refuses them): tried once.
 */
export function slabAllocatorOf(helper: MallocHelper | null): AllocateSlab {
  if (helper === null || typeof helper.mapSlab !== 'function') return allocateFromHeap;
  try {
    if (!Buffer.isBuffer(helper.mapSlab(4096))) return allocateFromHeap;
  } catch {
    return allocateFromHeap;
  }
  return (size) => helper.mapSlab(size);
}

let chosen: AllocateSlab | undefined;
/** When a store last took a slab (performance.now()). */
let lastTaken = -Infinity;

/** The process's slab allocator, chosen once. */
export function allocateSlab(size: number): Buffer {
  chosen ??= slabAllocatorOf(loadMallocHelper().helper);
  lastTaken = performance.now();
  return chosen(size);
}

/** The most kept as spares: the bench's 512 MB cache refills them between V8's full collections (32-64 MiB measured alike). */
const MAX_SPARE_BYTES = 64 * 1024 * 1024;

/**
 * Spares no store took a slab from for this long go back to the system. They are for a cache
 * filling under misses, which takes a slab every few dozen misses and gets V8's collected ones back
 * every few seconds; a cache that took none for 10 s is not filling at a rate where a fresh mapping
 * costs anything (~0.3 ms per slab), and its spares would sit resident through whatever load came
 * next (the bench's pass-through and upload rows: 43 MiB, rig).
 */
export const SPARE_IDLE_MS = 10_000;

/**
 * Spare bytes for a memory store of `maxSize` bytes: an eighth of it, at most 64 MiB. A full cache
 * under misses lets go of a slab for each one it fills, but V8 collects them only at its full
 * collections, in batches; kept as spares, they are the next slabs, whose pages are already
 * faulted in (native/malloc-trim.c: a fifth less CPU per miss on the bench's VM).
 */
export const spareBytesFor = (maxSize: number): number => Math.min(MAX_SPARE_BYTES, Math.floor(maxSize / 8));

let spareLimit = 0;
/** The helper keeping them, once a store asked for spares. */
let spareKeeper: MallocHelper | null = null;

/**
 * Lets the mapped slabs of `slabSize` bytes that V8 collects be kept for reuse, up to
 * `spareBytesFor(maxSize)`: the process's stores share them, so the limit is the largest any store
 * asked for (and its slab size). Nothing when slabs come from the heap or the helper predates
 * spares. Returns the limit now.
 */
export function keepSpareSlabsFor(maxSize: number, slabSize: number): number {
  const bytes = spareBytesFor(maxSize);
  if (bytes <= spareLimit) return spareLimit;
  const { helper } = loadMallocHelper();
  chosen ??= slabAllocatorOf(helper);
  if (chosen === allocateFromHeap || typeof helper?.keepSpareSlabs !== 'function') return spareLimit;
  helper.keepSpareSlabs(bytes, slabSize);
  if (spareKeeper === null) setInterval(releaseIdleSpares, SPARE_IDLE_MS).unref();
  spareKeeper = helper;
  return (spareLimit = bytes);
}

/**
 * Gives the spares back when no slab was taken for SPARE_IDLE_MS before `now` (the helper then
 * keeps none until the next slab is mapped); returns the bytes unmapped. Runs on a timer once a
 * store keeps spares.
 */
export function releaseIdleSpares(now = performance.now()): number {
  if (spareKeeper === null || now - lastTaken < SPARE_IDLE_MS) return 0;
  return spareKeeper.releaseSpareSlabs?.() ?? 0;
}

/** Bytes of spare slabs the process keeps mapped now (0 without spares). */
export function spareSlabBytes(): number {
  return spareKeeper?.spareBytes?.() ?? 0;
}
