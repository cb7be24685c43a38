/**
 * What a cache store does, knowing nothing about HTTP: records of (JSON-able metadata, raw bytes)
 * with a time to live, and sets of keys (the indexes purge uses). Memory and Redis implement it and
 * pass one contract suite (test/cache/store-contract.ts).
 *
 * A store may fail (Redis down): callers treat a rejected promise as a miss and count it; they
 * never fail a response because of it.
 */
export interface CacheRecord<M = unknown> {
  readonly meta: M;
  readonly body: Buffer;
}

/** What a store holds, for metrics: bytes and records kept, records evicted to make room. */
export interface StoreUsage {
  readonly bytes: number;
  readonly entries: number;
  readonly evictions: number;
  /** The memory store's slabs (body-arena.ts): how many, their bytes, and of those, bytes of the bodies it holds. */
  readonly slabs?: { readonly count: number; readonly bytes: number; readonly live: number };
}

export interface CacheStore {
  readonly name: string;
  /** This process's share of the store, where it can tell (the memory store and the near tier). */
  usage?(): StoreUsage;
  get<M>(key: string): Promise<CacheRecord<M> | undefined>;
  /**
   * The record if this process holds it, without waiting (the memory store, a near tier), as `get`
   * would answer it: the same object while it is unchanged. Absent where a read must go out.
   */
  getNow?<M>(key: string): CacheRecord<M> | undefined;
  /**
   * As `getNow`, without counting as a use: the cache's own reads (is the response a new encoding
   * was made from still stored?) must not give a record nobody asked for again a second chance
   * at eviction, or a crawl of URLs seen once would hold its own as long as the pages that are hit.
   */
  peekNow?<M>(key: string): CacheRecord<M> | undefined;
  /** Nothing is kept beyond this process (the memory store alone): what `getNow` does not hold, `get` would not find. */
  readonly holdsAll?: boolean;
  /** ttlMs > 0; the store may evict earlier (LRU by bytes). */
  set(key: string, record: CacheRecord, ttlMs: number): Promise<void>;
  /** Deletes the keys; answers how many existed. */
  delete(keys: readonly string[]): Promise<number>;
  /**
   * Deletes the keys without counting them, where a store would otherwise wait for an answer it
   * has to ask for (the node tier: a message instead of a round trip). Absent: `delete`.
   */
  discard?(keys: readonly string[]): Promise<void>;
  /** Adds `member` to the set `set`, which lives at least ttlMs. */
  addToSet(set: string, member: string, ttlMs: number): Promise<void>;
  members(set: string): Promise<string[]>;
  /** Drops every record and set this store owns (never someone else's keys); answers how many records. */
  clear(): Promise<number>;
  close(): Promise<void>;
}

/** Records travel as one buffer: a 4-byte metadata length, the metadata as JSON, then the raw body. */
export function encodeRecord(record: CacheRecord): Buffer {
  const meta = Buffer.from(JSON.stringify(record.meta));
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(meta.length, 0);
  return Buffer.concat([head, meta, record.body]);
}

export function decodeRecord<M>(raw: Buffer): CacheRecord<M> | undefined {
  if (raw.length < 4) return undefined;
  const metaLength = raw.readUInt32BE(0);
  if (4 + metaLength > raw.length) return undefined;
  try {
    return { meta: JSON.parse(raw.toString('utf8', 4, 4 + metaLength)) as M, body: raw.subarray(4 + metaLength) };
  } catch {
    return undefined;
  }
}
