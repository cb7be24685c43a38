/**
 * Encoded static files kept in memory: an LRU bounded by bytes, keyed by file path, ETag and
 * coding, so each file is compressed once per coding even when it has no precompressed sibling.
 * Filled by the compression stage through the `put` of the Variants a static reply offers; an
 * entry whose file changed is never asked for again (its ETag is in the key) and ages out.
 */
export interface EncodedStore {
  get(key: string): Buffer | undefined;
  /** Keeps `body` under `key` (replacing what was there), evicting the least recently used. */
  set(key: string, body: Buffer): void;
  /** Files larger than this are not offered for keeping: one file must not flush the rest. */
  readonly maxEntrySize: number;
  /** Bytes kept. */
  readonly size: number;
}

export function createEncodedStore(maxBytes: number): EncodedStore {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new TypeError(`compression.staticMemory: expected a size ≥ 0, got ${maxBytes}`);
  const entries = new Map<string, Buffer>();
  let size = 0;
  const maxEntrySize = Math.floor(maxBytes / 8);

  return {
    get(key) {
      const body = entries.get(key);
      if (body === undefined) return undefined;
      entries.delete(key); // re-insert: Map order is recency
      entries.set(key, body);
      return body;
    },
    set(key, body) {
      if (body.length > maxEntrySize) return;
      const old = entries.get(key);
      if (old !== undefined) {
        size -= old.length;
        entries.delete(key);
      }
      entries.set(key, body);
      size += body.length;
      for (const [oldest, kept] of entries) {
        if (size <= maxBytes) break;
        entries.delete(oldest);
        size -= kept.length;
      }
    },
    maxEntrySize,
    get size() { return size; },
  };
}
