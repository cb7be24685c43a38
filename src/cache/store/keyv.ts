import type Keyv from 'keyv';
import { decodeRecord, encodeRecord, type CacheStore } from './contract.ts';

export interface KeyvStoreOptions {
  /**
   * Created with `serialize: undefined, deserialize: undefined` (and no compression), so values
   * reach the adapter as they are: Keyv's default serializer would store a body as base64 inside
   * JSON text (a third larger, and decoded again on every hit). The store owns this instance:
   * it sets `throwOnErrors` and `namespace`, and close() disconnects it.
   */
  keyv: Keyv;
  /** Names the store in stats and logs (`sqlite`, ...). */
  name: string;
  /** The Keyv namespace for every key (default: the one `keyv` has, `keyv` unless set); clear() touches nothing else. */
  prefix?: string;
  onError?: (err: unknown) => void;
}

interface SetMeta {
  /** The members, in the order they were added. */
  set: string[];
  /** When the set expires (ms since the epoch): the latest a member asked for. */
  until: number;
  /** The length at which members whose records are gone are dropped (doubles with the live ones). */
  pruneAt: number;
}

/** A set is pruned first at 64 members, as the memory store does, then each time it has doubled. */
const PRUNE_FIRST = 64;

const isSetMeta = (meta: unknown): meta is SetMeta =>
  typeof meta === 'object' && meta !== null && Array.isArray((meta as SetMeta).set) && typeof (meta as SetMeta).until === 'number';

/**
 * Any Keyv storage adapter as a cache store: one Keyv value per record, the record framed into
 * one Buffer (encodeRecord: raw body bytes). The adapter must store the `{ value: Buffer, expires }`
 * Keyv gives it as it is — a Map, or `createSqliteAdapter` — since bytes never pass through a
 * string serializer here. Adapters that only store strings (most of `@keyv/*`) cannot do that.
 *
 * A set (a purge index) is a record of its own under the set's name, its members as JSON in the
 * metadata. Adding to a set reads and rewrites it, so adds to one set run one after another in
 * this process (two at once would lose a member); sets are written by one process per store.
 */
export function createKeyvStore(options: KeyvStoreOptions): CacheStore {
  const { keyv, name } = options;
  if (typeof keyv?.get !== 'function' || typeof keyv.set !== 'function') throw new TypeError(`keyv store: keyv must be a Keyv instance, got ${String(keyv)}`);
  if (keyv.serialize || keyv.deserialize || keyv.compression) {
    throw new TypeError('keyv store: create the Keyv with serialize: undefined, deserialize: undefined and no compression, so bodies stay bytes (its serializer stores them as base64 text)');
  }
  if (options.prefix !== undefined) keyv.namespace = options.prefix;
  if (!keyv.namespace || !keyv.useKeyPrefix) throw new TypeError(`keyv store: needs a namespace (prefix), so clear() drops only its own keys; got ${JSON.stringify(keyv.namespace)}`);
  // Failures reject, as the contract says (Keyv would otherwise answer a failed read as a miss, silently).
  keyv.throwOnErrors = true;
  const onError = options.onError ?? (() => {});
  keyv.on('error', onError);

  /** The tail of each set's queue of adds. */
  const adding = new Map<string, Promise<unknown>>();
  const oneAtATime = (set: string, work: () => Promise<void>): Promise<void> => {
    const run = (adding.get(set) ?? Promise.resolve()).then(work);
    const tail = run.catch(() => {});
    adding.set(set, tail);
    void tail.then(() => { if (adding.get(set) === tail) adding.delete(set); });
    return run;
  };

  const read = async <M>(key: string) => {
    const raw: unknown = await keyv.get(key);
    return raw instanceof Uint8Array ? decodeRecord<M>(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)) : undefined;
  };
  const write = async (key: string, meta: unknown, body: Buffer, ttlMs: number) => {
    // Keyv reads a ttl of 0 as "forever"; under a millisecond is the shortest we can ask for.
    if (!(await keyv.set(key, encodeRecord({ meta, body }), Math.max(1, Math.ceil(ttlMs))))) throw new Error(`keyv store (${name}): the adapter refused to store ${JSON.stringify(key)}`);
  };

  return {
    name,
    async get<M>(key: string) {
      return read<M>(key);
    },
    async set(key, record, ttlMs) {
      if (ttlMs <= 0) return;
      await write(key, record.meta, record.body, ttlMs);
    },
    async delete(keys) {
      let count = 0;
      for (const key of keys) if (await keyv.delete(key)) count++;
      return count;
    },
    addToSet(set, member, ttlMs) {
      return oneAtATime(set, async () => {
        const now = Date.now();
        const found = (await read<SetMeta>(set))?.meta;
        const entry: SetMeta = isSetMeta(found) && found.until > now ? found : { set: [], until: 0, pruneAt: PRUNE_FIRST };
        if (!entry.set.includes(member)) entry.set.push(member);
        if (entry.set.length >= entry.pruneAt) {
          // Members whose records are gone (expired, evicted, purged) go, so a set cannot outgrow its records.
          const live = await keyv.hasMany(entry.set);
          entry.set = entry.set.filter((m, i) => live[i] || m === member);
          entry.pruneAt = Math.max(PRUNE_FIRST, 2 * entry.set.length);
        }
        entry.until = Math.max(entry.until, now + ttlMs);
        await write(set, entry, Buffer.alloc(0), entry.until - now);
      });
    },
    async members(set) {
      const meta = (await read<SetMeta>(set))?.meta;
      return isSetMeta(meta) ? [...meta.set] : [];
    },
    async clear() {
      const store = keyv.store as unknown;
      if (store instanceof Map) {
        // Keyv's default store: Map.clear() would drop every namespace's keys.
        const prefix = `${keyv.namespace}:`;
        let count = 0;
        for (const key of store.keys()) if (typeof key === 'string' && key.startsWith(prefix) && store.delete(key)) count++;
        return count;
      }
      // Keyv adapters clear their own namespace. Keyv.clear() drops what they answer; an adapter
      // that counts (createSqliteAdapter) is asked directly, so purge-all can say how many it dropped.
      const dropped: unknown = await keyv.store.clear();
      return typeof dropped === 'number' ? dropped : 0;
    },
    async close() {
      keyv.off('error', onError);
      await keyv.disconnect();
    },
  };
}
