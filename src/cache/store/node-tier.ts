import type { CacheRecord, CacheStore, StoreUsage } from './contract.ts';
import { createMemoryStore } from './memory.ts';
import { NEAR_TTL_MS } from './tiered.ts';
import { primaryChannel, type Peer, type PrimaryChannel, type Service, type WorkerChannel } from '../../runtime/primary-channel.ts';

/**
 * One memory cache for the node's workers. With `workers: N` and the memory store, the cluster
 * primary holds the cache (the node tier) and each worker keeps a near copy of what it served
 * (tiered.ts): a response one worker stored is a hit in every worker, and an invalidation (a POST,
 * a purge, a newer response) in one reaches all of them, as a cache shared by nginx's or Varnish's
 * workers would behave. Without it each worker was a cache of its own: a client whose next request
 * came over another connection found nothing, and a POST to a URL left the other worker serving
 * what it had stored (RFC 9111 §4.4).
 *
 * The tier is a service of the primary (runtime/primary-channel.ts). The primary tells a worker to
 * drop its near copy of a key when another worker stores or deletes it, and only a worker that may
 * hold one: one that stored the key or read it from the tier within the near copies' lifetime
 * (NEAR_TTL_MS). A miss for a new URL then costs its worker one round trip (the lookup that finds
 * nothing) and one message (the write), and the other workers nothing. A primary that does not
 * answer in time is a miss, as a Redis tier that is down is; one that reads more slowly than a
 * worker writes (32 MiB unwritten) gets no more writes from it until it catches up: those
 * responses are not stored (counted as store errors) rather than queued without bound.
 */

/** The service's name on the primary channel. */
const SERVICE = 'cache';

/** Bytes that crossed the channel: a Uint8Array view, or a Buffer, as the serializer hands it. */
const asBuffer = (bytes: unknown): Buffer => {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError('node tier: a record body is not bytes');
};

export interface NodeTier extends Service {
  /** What the tier holds (stats), once a worker has opened it. */
  usage(): StoreUsage | undefined;
  close(): Promise<void>;
}

/**
 * The primary's side. The store is made when the first worker opens the tier, with the size its
 * config gives, and made anew (empty) when a worker opens it with another `cache` section (a
 * reload that changes it starts an empty cache, as with one worker).
 */
export function createNodeTier(options: { now?: () => number } = {}): NodeTier {
  const now = options.now ?? Date.now;
  let store: CacheStore | undefined;
  let opened = '';
  /**
   * Who may hold a near copy of a key, and until when (a near copy lives NEAR_TTL_MS at most from
   * the write or read that made it). Entries past their time are swept once a minute.
   */
  const holders = new Map<string, { peers: Set<Peer>; until: number }>();
  const hold = (key: string, peer: Peer, alone: boolean) => {
    const entry = holders.get(key);
    const until = now() + NEAR_TTL_MS;
    if (entry === undefined || alone) holders.set(key, { peers: new Set([peer]), until });
    else { entry.peers.add(peer); entry.until = until; }
  };
  /** Tells the other workers that may hold `keys` near to drop them. */
  const dropElsewhere = (keys: readonly string[], from: Peer, channel: PrimaryChannel) => {
    const told = new Map<Peer, string[]>();
    const at = now();
    for (const key of keys) {
      const entry = holders.get(key);
      if (entry === undefined || entry.until < at) continue;
      for (const peer of entry.peers) if (peer !== from) told.set(peer, [...(told.get(peer) ?? []), key]);
    }
    for (const [peer, named] of told) channel.notify(peer, SERVICE, named);
  };
  const sweep = setInterval(() => {
    const at = now();
    for (const [key, entry] of holders) if (entry.until < at) holders.delete(key);
  }, NEAR_TTL_MS);
  sweep.unref();

  const open = async (maxSize: number, section: string) => {
    if (store !== undefined && opened === section) return;
    await store?.close();
    holders.clear();
    store = createMemoryStore({ maxSize, now: options.now });
    opened = section;
  };

  return {
    async handle(from, op, args, channel) {
      if (op === 'open') return open(Number(args[0]), String(args[1]));
      if (store === undefined) throw new Error('node tier: not opened');
      switch (op) {
        case 'get': {
          const key = String(args[0]);
          const record = await store.get(key);
          if (record === undefined) return undefined;
          hold(key, from, false); // the tiered store keeps what it read near
          return { meta: record.meta, body: record.body };
        }
        case 'set': {
          const key = String(args[0]);
          const record = args[1] as { meta: unknown; body: unknown };
          dropElsewhere([key], from, channel);
          hold(key, from, true);
          return store.set(key, { meta: record.meta, body: asBuffer(record.body) }, Number(args[2]));
        }
        case 'delete': {
          const keys = (args[0] as unknown[]).map(String);
          dropElsewhere(keys, from, channel);
          for (const key of keys) holders.delete(key);
          return store.delete(keys);
        }
        case 'addToSet': return store.addToSet(String(args[0]), String(args[1]), Number(args[2]));
        case 'members': return store.members(String(args[0]));
        case 'clear': {
          for (const peer of channel.peers()) if (peer !== from) channel.notify(peer, SERVICE, '*');
          holders.clear();
          return store.clear();
        }
      }
      throw new Error(`node tier: unknown operation ${op}`);
    },
    detach(peer) {
      for (const entry of holders.values()) entry.peers.delete(peer);
    },
    usage: () => store?.usage?.(),
    async close() {
      clearInterval(sweep);
      holders.clear();
      await store?.close();
      store = undefined;
    },
  };
}

/**
 * A worker's view of the node tier: a far store with publish/subscribe, for the tiered store. Its
 * announcements need not travel (the primary sees every write and delete and tells whom it
 * concerns), and the primary's drops reach its subscribers as the tiered store's own messages.
 */
export interface NodeTierStore extends CacheStore {
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
}

/**
 * The worker's side, over this process's channel to its primary (tests hand in another). `section`:
 * the config's `cache` section as text; opening with another one empties the tier.
 */
export function createNodeTierStore(options: { maxSize: number; section?: string; channel?: WorkerChannel }): NodeTierStore {
  const channel = options.channel ?? primaryChannel();
  const listeners = new Set<(message: string) => void>();
  const stopNotices = channel.onNotice(SERVICE, (keys) => {
    const text = JSON.stringify({ from: 'node tier', keys });
    for (const listener of listeners) listener(text);
  });
  const call = <T>(op: string, ...args: unknown[]) => channel.call<T>(SERVICE, op, ...args);
  const opened = call<void>('open', options.maxSize, options.section ?? String(options.maxSize));
  opened.catch(() => {}); // an operation that follows fails on its own

  return {
    name: 'node',
    async get<M>(key: string): Promise<CacheRecord<M> | undefined> {
      await opened;
      const record = await call<{ meta: M; body: unknown } | undefined>('get', key);
      return record === undefined ? undefined : { meta: record.meta, body: asBuffer(record.body) };
    },
    async set(key, record, ttlMs) {
      await opened;
      // A store may be skipped, and a primary falling behind must not queue bodies without bound.
      if (channel.backedUp) throw new Error('node tier: the primary is behind (its channel is backed up): not stored');
      channel.tell(SERVICE, 'set', key, { meta: record.meta, body: record.body }, ttlMs);
    },
    async delete(keys) { await opened; return call<number>('delete', [...keys]); },
    async discard(keys) { await opened; channel.tell(SERVICE, 'delete', [...keys]); },
    async addToSet(set, member, ttlMs) { await opened; channel.tell(SERVICE, 'addToSet', set, member, ttlMs); },
    async members(set) { await opened; return call<string[]>('members', set); },
    async clear() { await opened; return call<number>('clear'); },
    async publish() {},
    async subscribe(_channel, onMessage) {
      listeners.add(onMessage);
      return async () => { listeners.delete(onMessage); };
    },
    async close() {
      stopNotices();
      listeners.clear();
    },
  };
}
