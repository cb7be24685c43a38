/**
 * Encoded static files kept in memory: an LRU bounded by bytes, keyed by file path, ETag and
 * coding, so each file is compressed once per coding even when it has no precompressed sibling.
 * Filled by the compression stage through the `put` of the Variants a static reply offers; an
 * entry whose file changed is never asked for again (its ETag is in the key) and ages out. Each
 * body keeps the token the compression stage gave it (`br2`, then `br11` when the upgrade
 * replaces it), which names those bytes in the ETag.
 */
export interface KeptEncoding {
  readonly body: Buffer;
  readonly token: string;
}

export interface EncodedStore {
  get(key: string): KeptEncoding | undefined;
  /** Whether `kept` is still what is kept under `key` (see Reuse). */
  holds(key: string, kept: KeptEncoding): boolean;
  /** Keeps `body` and its `token` under `key` (replacing what was there), evicting the least recently used. */
  set(key: string, body: Buffer, token: string): void;
  /** Files larger than this are not offered for keeping: one file must not flush the rest. */
  readonly maxEntrySize: number;
  /** Bytes kept. */
  readonly size: number;
}

export function createEncodedStore(maxBytes: number): EncodedStore {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError(`compression.staticMemory: expected a size ≥ 0, got ${maxBytes}`);
  const entries = new Map<string, KeptEncoding>();
  let size = 0;
  const maxEntrySize = Math.floor(maxBytes / 8);

  return {
    get(key) {
      const kept = entries.get(key);
      if (kept === undefined) return undefined;
      entries.delete(key); // re-insert: Map order is recency
      entries.set(key, kept);
      return kept;
    },
    holds: (key, kept) => entries.get(key) === kept,
    set(key, body, token) {
      if (body.length > maxEntrySize) return;
      const old = entries.get(key);
      if (old !== undefined) {
        size -= old.body.length;
        entries.delete(key);
      }
      entries.set(key, { body, token });
      size += body.length;
      for (const [oldest, kept] of entries) {
        if (size <= maxBytes) break;
        entries.delete(oldest);
        size -= kept.body.length;
      }
    },
    maxEntrySize,
    get size() { return size; },
  };
}
