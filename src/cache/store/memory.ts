import type { CacheRecord, CacheStore } from './contract.ts';
import { createBodyArena, slabSizeFor, type Held, type Slab } from './body-arena.ts';
import { allocateSlab, keepSpareSlabsFor, type AllocateSlab } from './slab-memory.ts';

/**
 * A record as held: its metadata and body with the store's bookkeeping, in one object (a slot
 * around the caller's record object was 40 B more per record, three records per URL with two
 * codings). `get` hands it out as the record: the same object while it is unchanged.
 */
interface Slot extends CacheRecord, Held {
  body: Buffer;
  size: number;
  expires: number;
  /** Read since it was stored or last given a second chance (CLOCK eviction). */
  referenced: boolean;
}

/**
 * What a record costs beyond its body: its metadata as JS objects (about twice its JSON length,
 * measured on stored policies) plus the Map slot and Buffer header. Computed once per set (a miss).
 */
const recordOverhead = (meta: unknown) => 2 * JSON.stringify(meta ?? null).length + 256;

/**
 * The in-process store: a Map in insertion order with CLOCK eviction (see evictFor), bounded by the bytes
 * of its bodies plus a flat allowance per record. Expired records are dropped when read or when
 * space is needed. Records are kept as objects, never serialized; their bodies are copied into
 * slabs (body-arena.ts), laid down in the order the eviction hand walks the records.
 */
export function createMemoryStore(options: { maxSize: number; now?: () => number; allocateSlab?: AllocateSlab }): CacheStore {
  const { maxSize } = options;
  const now = options.now ?? Date.now;
  if (!Number.isSafeInteger(maxSize) || maxSize <= 0) throw new TypeError(`memory store: maxSize must be a positive byte count, got ${maxSize}`);
  const slots = new Map<string, Slot>();
  const sets = new Map<string, { members: Set<string>; expires: number }>();
  let used = 0;
  let evictions = 0;

  const slotOf = (key: string, meta: unknown, body: Buffer, size: number, expires: number, referenced: boolean): Slot =>
    ({ key, meta, body, slab: undefined, size, expires, referenced });

  /**
   * The record under `slot.key` with its body copied into the open slab: a new object, so that
   * what was made from the old one (a kept reply) stops being valid and lets go of the old slab
   * (entries.ts `holderOf`, and a variant's `held`). Its place in the Map is the caller's to set.
   */
  const moved = (slot: Slot, referenced: boolean): Slot => {
    const renewed = slotOf(slot.key, slot.meta, slot.body, slot.size, slot.expires, referenced);
    arena.move(slot, renewed);
    return renewed;
  };
  /** The records whose bodies are left in a mostly emptied slab move out, keeping their place. */
  const moveOut = (slab: Slab) => {
    for (const held of [...slab.members]) {
      const slot = held as Slot;
      slots.set(slot.key, moved(slot, slot.referenced));
    }
  };
  const slabSize = slabSizeFor(maxSize);
  if (options.allocateSlab === undefined) keepSpareSlabsFor(maxSize, slabSize);
  const arena = createBodyArena({ slabSize, onSparse: moveOut, allocate: options.allocateSlab ?? allocateSlab });

  const remove = (key: string, byHand = false): boolean => {
    const slot = slots.get(key);
    if (!slot) return false;
    slots.delete(key);
    used -= slot.size;
    arena.release(slot, byHand);
    return true;
  };

  /**
   * Oldest first (Map order is insertion order), with a second chance (the CLOCK algorithm, an
   * approximation of LRU): a record read since it was stored or last passed over moves to the young
   * end instead of being evicted. A hit only sets a flag: no Map delete and insert per read.
   * One hand walks on from call to call: everything before it is gone or was moved behind it. (A
   * new iterator per eviction skipped the holes deleted keys leave at the front of the table every
   * time: 3% of the CPU of a miss when the cache is full.)
   */
  let hand: MapIterator<[string, Slot]> | undefined;
  const evictFor = (size: number) => {
    if (used + size <= maxSize) {
      // Nothing to evict: the hand is let go. A Map iterator keeps the table it walks alive, and
      // with it every table the Map has been rehashed into since, each holding the records it had
      // then: a hand left waiting while a cache with room re-stored its URLs (revalidated every few
      // seconds) kept every replaced record, body and all (bench/soak.ts: 10,000 records more in
      // two minutes). Under eviction the hand moves on each call and holds only the current table.
      hand = undefined;
      return;
    }
    hand ??= slots.entries();
    while (used + size > maxSize && slots.size > 0) {
      let next = hand.next();
      if (next.done) {
        hand = slots.entries();
        next = hand.next();
        if (next.done) return;
      }
      const [key, slot] = next.value;
      if (slot.referenced) {
        // Its body goes to the young end with it (into the open slab), so slabs keep emptying in
        // the order the hand walks (body-arena.ts).
        slots.delete(key);
        if (arena.isYoung(slot)) {
          slot.referenced = false;
          slots.set(key, slot);
        } else {
          slots.set(key, moved(slot, false));
        }
        continue;
      }
      remove(key, true);
      evictions++;
    }
  };

  /** Sets whose members are all gone (evicted, expired) are dropped, so indexes cannot outgrow the records. */
  const sweepSets = () => {
    for (const [name, entry] of sets) {
      if (entry.expires <= now() || ![...entry.members].some((m) => slots.has(m))) sets.delete(name);
    }
  };

  function peekNow(key: string): Slot | undefined {
    const slot = slots.get(key);
    if (!slot) return undefined;
    if (slot.expires <= now()) {
      remove(key);
      return undefined;
    }
    return slot;
  }
  function getNow(key: string): CacheRecord | undefined {
    const slot = peekNow(key);
    if (slot !== undefined) slot.referenced = true;
    return slot;
  }

  return {
    name: 'memory',
    usage: () => ({ bytes: used, entries: slots.size, evictions, slabs: arena.usage() }),
    async get<M>(key: string) {
      return getNow(key) as CacheRecord<M> | undefined;
    },
    getNow: <M>(key: string) => getNow(key) as CacheRecord<M> | undefined,
    peekNow: <M>(key: string) => peekNow(key) as CacheRecord<M> | undefined,
    holdsAll: true,
    async set(key, record, ttlMs) {
      remove(key);
      const size = record.body.length + recordOverhead(record.meta);
      if (size > maxSize || ttlMs <= 0) return;
      evictFor(size);
      // What is counted is what is held: the body is copied into the arena's slabs (or, when large,
      // into an allocation of its own when it is a view into a larger one).
      const slot = slotOf(key, record.meta, record.body, size, now() + ttlMs, false);
      arena.keep(slot);
      slots.set(key, slot);
      used += size;
    },
    async delete(keys) {
      let count = 0;
      for (const key of keys) if (remove(key)) count++;
      return count;
    },
    async addToSet(set, member, ttlMs) {
      const expires = now() + ttlMs;
      let entry = sets.get(set);
      if (!entry || entry.expires <= now()) sets.set(set, (entry = { members: new Set(), expires }));
      entry.members.add(member);
      if (sets.size > 2 * slots.size + 1024) sweepSets();
      entry.expires = Math.max(entry.expires, expires);
      // Members whose records are gone are dropped as the set is written, so sets stay bounded.
      if (entry.members.size > 64) for (const m of entry.members) if (!slots.has(m)) entry.members.delete(m);
    },
    async members(set) {
      const entry = sets.get(set);
      if (!entry || entry.expires <= now()) return [];
      return [...entry.members];
    },
    async clear() {
      const count = slots.size;
      slots.clear();
      sets.clear();
      arena.clear();
      hand = undefined;
      used = 0;
      return count;
    },
    async close() {},
  };
}
