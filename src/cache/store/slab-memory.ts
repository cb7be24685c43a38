import { loadMallocHelper, type MallocHelper } from '../../runtime/malloc-trim.ts';

/**
 * Where the memory store's slabs come from (body-arena.ts): memory mapped from the system by the
 * native helper when it is built and the process runs on glibc's malloc (native/malloc-trim.c,
 * mapSlab: why), else `Buffer.allocUnsafeSlow`. A mapped slab goes back to the system as soon as
 * V8 collects its last view; one from malloc leaves a 1 MiB hole in glibc's heap. jemalloc gives
 * its free pages back itself, so there the slabs stay jemalloc's.
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

/** The process's slab allocator, chosen once. */
export function allocateSlab(size: number): Buffer {
  chosen ??= slabAllocatorOf(loadMallocHelper().helper);
  return chosen(size);
}
