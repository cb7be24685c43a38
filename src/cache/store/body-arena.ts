import { ownBytes } from '../../buffers.ts';
import { allocateFromHeap, type AllocateSlab } from './slab-memory.ts';

/**
 * Where the memory store keeps its bodies: copied one after another into slabs of 1 MiB, not each
 * in an allocation of its own.
 *
 * A full cache that keeps replacing bodies of tens of KB, each malloc'd between the short-lived
 * buffers of the requests that brought it (socket reads, zlib output, header blocks), leaves
 * glibc's heap full of holes: after 80,000 misses of a 30 KB page into a 512 MB cache, 93-139 MB
 * free in its arenas, resident, besides 520-610 MB in use, and `malloc_trim` can give back only
 * whole pages between live chunks. Bodies laid down in slabs leave the malloc heap to the
 * short-lived buffers, and a slab goes back as a whole when the bodies in it are gone: records
 * leave a cache mostly in the order they came (evicted oldest first, replaced when revalidated),
 * so slabs empty mostly in order, as in a log-structured store. Measured (rig, 120,000 misses
 * into 512 MB, fresh process each, 2026-12-02): RSS under the load 702-758 MiB against 773-809,
 * glibc's free chunks 32-81 MB against 93-129; CPU per miss within the runs' noise.
 *
 * A slab whose bodies are mostly gone (less than half of it still held) is emptied by copying
 * what is left into the open slab (`onSparse`): the store moves those records, so no slab is
 * held for a few stragglers. A slab's bytes are never written over: a moved body is a new copy,
 * and the old slab is freed by V8 once nothing (a response being written, a kept reply) still
 * views it (a slab mapped from the system goes back to it then: slab-memory.ts).
 *
 * Bodies larger than an eighth of a slab keep an allocation of their own (`ownBytes`), as before.
 */

/** A record as the arena sees it: its key and its body, and the slab the body is in. */
export interface Held {
  readonly key: string;
  body: Buffer;
  slab: Slab | undefined;
}

export interface Slab {
  /** The slab's memory; bodies are views into it. */
  readonly bytes: Buffer;
  /** Bytes written so far (the next body goes here). */
  filled: number;
  /** Bytes of the bodies the store still holds in it. */
  live: number;
  /** The records whose bodies are in it (for moving them out). */
  readonly members: Set<Held>;
}

export interface BodyArena {
  /**
   * Lays `held.body` down where the store will hold it: copied into the open slab, or left where
   * it is when it already lies in a slab still held (a refreshed record keeping its bytes). Sets
   * `held.body` and `held.slab`.
   */
  keep(held: Held): void;
  /**
   * The record `from` becomes `to` (a new object for the same key), its body copied into the open
   * slab: out of a slab being emptied, or to the young end with the record (a second chance).
   */
  move(from: Held, to: Held): void;
  /** Whether the body is where `move` would put it (the open slab), or kept outside the slabs. */
  isYoung(held: Held): boolean;
  /**
   * The record is gone from the store. `byHand`: taken by the store's eviction hand, which walks
   * the records in the order their bodies were laid down, so the hand itself is emptying the slab;
   * emptying it now would copy what the hand is about to evict, out of order (measured: 1.5x the
   * slab bytes held with a full cache of misses, against 1.01x).
   */
  release(held: Held, byHand?: boolean): void;
  /** Drops every slab (the store was cleared). */
  clear(): void;
  /** Slabs held, their bytes, and the bytes of bodies in them. */
  usage(): { count: number; bytes: number; live: number };
}

/**
 * Slab size for a store of `maxSize` bytes: 1 MiB, less for a small store (a sixteenth of it, at
 * least 64 KiB). The open slab and the one being emptied are the waste: 4 MiB slabs held 7 MB
 * more than the bodies in the memory soak's 25 MB cache, 1 MiB ones none measurable, and a full
 * 512 MB cache came to the same RSS with either.
 */
export function slabSizeFor(maxSize: number): number {
  return Math.min(1 << 20, Math.max(64 << 10, 2 ** Math.floor(Math.log2(Math.max(1, maxSize / 16)))));
}

/**
 * @param onSparse called with a slab no longer open that holds less than half of what was
 *   written into it: the store moves each of its records out (`move`).
 * @param allocate where a new slab's memory comes from (slab-memory.ts; the heap by default).
 */
export function createBodyArena(options: { slabSize: number; onSparse: (slab: Slab) => void; allocate?: AllocateSlab }): BodyArena {
  const { slabSize, onSparse, allocate = allocateFromHeap } = options;
  const largest = slabSize >> 3;
  /** Every slab that holds a body, by its memory (a body is recognised as already in one). */
  const slabs = new Map<ArrayBufferLike, Slab>();
  let open: Slab | undefined;
  /** The slab being emptied (one at a time). */
  let emptying: Slab | undefined;
  /** Slabs that turned sparse while another was being emptied. */
  const waiting = new Set<Slab>();

  /** `held` is in `slab` with `body`, a view into it. */
  const join = (held: Held, body: Buffer, slab: Slab) => {
    held.body = body;
    held.slab = slab;
    slab.live += body.length;
    slab.members.add(held);
  };

  /** `held` gets a copy of `body` in the open slab (a new one when it is full). */
  const copyIntoOpen = (held: Held, body: Buffer) => {
    const length = body.length;
    if (open === undefined || open.filled + length > slabSize) {
      const full = open;
      open = { bytes: allocate(slabSize), filled: 0, live: 0, members: new Set() };
      slabs.set(open.bytes.buffer, open);
      // The slab just filled may be mostly gone already (records replaced while it filled).
      if (full !== undefined) settle(full);
    }
    const start = open.filled;
    body.copy(open.bytes, start);
    open.filled = start + length;
    join(held, open.bytes.subarray(start, start + length), open);
  };

  /**
   * An empty slab is let go; a sparse one is emptied, one at a time: one that turns sparse while
   * another is being emptied (the slab the moves filled) waits its turn.
   */
  function settle(slab: Slab, compact = true): void {
    if (slab === open) return;
    if (slab.members.size === 0) {
      slabs.delete(slab.bytes.buffer);
      return;
    }
    if (!compact || slab.live * 2 >= slab.filled) return;
    if (emptying !== undefined) {
      waiting.add(slab);
      return;
    }
    emptying = slab;
    try {
      onSparse(slab);
    } finally {
      emptying = undefined;
    }
    if (slab.members.size === 0) slabs.delete(slab.bytes.buffer);
    for (const next of waiting) {
      waiting.delete(next);
      if (slabs.has(next.bytes.buffer)) settle(next);
    }
  }

  const arena: BodyArena = {
    keep(held) {
      const length = held.body.length;
      if (length === 0 || length > largest) {
        held.body = ownBytes(held.body);
        held.slab = undefined;
        return;
      }
      const holder = slabs.get(held.body.buffer);
      if (holder !== undefined) join(held, held.body, holder);
      else copyIntoOpen(held, held.body);
    },
    move(from, to) {
      if (arena.isYoung(from)) {
        to.body = from.body;
        to.slab = from.slab;
        if (from.slab !== undefined && from.slab.members.delete(from)) from.slab.members.add(to);
        return;
      }
      copyIntoOpen(to, from.body);
      // A move is the hand's (a second chance) or part of emptying a slab: neither empties another.
      arena.release(from, true);
    },
    isYoung: (held) => held.slab === undefined || held.slab === open,
    release(held, byHand = false) {
      const slab = held.slab;
      if (slab === undefined || !slab.members.delete(held)) return;
      slab.live -= held.body.length;
      settle(slab, !byHand);
    },
    clear() {
      slabs.clear();
      waiting.clear();
      open = undefined;
    },
    usage() {
      let live = 0;
      for (const slab of slabs.values()) live += slab.live;
      return { count: slabs.size, bytes: slabs.size * slabSize, live };
    },
  };
  return arena;
}
