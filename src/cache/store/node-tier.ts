import type { CacheRecord, CacheStore, StoreUsage } from './contract.ts';
import { createMemoryStore } from './memory.ts';
import { createReadGuard } from './overtaken.ts';
import { primaryChannel, type Peer, type PrimaryChannel, type Service, type WorkerChannel } from '../../runtime/primary-channel.ts';

/**
 * One memory cache for the node's workers. With `workers: N` and the memory store, each worker
 * keeps the responses it stored or served in its own memory, and the cluster primary keeps a
 * directory of who holds what: a worker that does not hold a response asks the primary, which
 * fetches it from a worker that does (and notes the asker as holding it too). A response one
 * worker stored is then a hit in every worker, and an invalidation (a POST, a purge, a newer
 * response) in one makes every other holder drop its copy, as a cache shared by nginx's or
 * Varnish's workers behaves. Without it each worker was a cache of its own: a client whose next
 * request came over another connection found nothing, and a POST to a URL left the other worker
 * serving what it had stored (RFC 9111 §4.4).
 *
 * Bodies cross between processes only when another worker asks for one (once per worker that
 * serves it), never on a miss: a miss costs its worker one round trip to the primary (the
 * lookup that finds nobody holding it) and one small message (now I hold it). An earlier cut kept
 * every body in the primary too: each miss carried its bodies over, and a 30 KB page cost
 * 750-950 µs of CPU per miss against 375-480 with a cache per worker. The primary also keeps the
 * purge indexes (the URL and tag sets). It is a service of the primary
 * (runtime/primary-channel.ts); a primary that does not answer in time is a miss, as a Redis
 * tier that is down is.
 */

/** The service's name on the primary channel. */
const SERVICE = 'cache';
/** How long the primary waits for a worker to hand over a response another asked for. */
const GIVE_TIMEOUT_MS = 1000;
/** Keys the directory tracks at most; past it the oldest are let go (their holders told to drop them). */
const MAX_KEYS = 1_000_000;

/** Bytes that crossed the channel: a Uint8Array view, or a Buffer, as the serializer hands it. */
const asBuffer = (bytes: unknown): Buffer => {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError('node tier: a record body is not bytes');
};

/**
 * The workers that hold a key: the one that stored it (most keys), or a Set once another worker
 * copied it. A Set for every key cost the primary ~230 B of heap a key (200,000 keys of a typical
 * URL's length: 409 B a key with a Set, 181 with the worker itself), and objects for its
 * collector to trace.
 */
type Holding = Peer | Set<Peer>;

const peersOf = (holding: Holding): Iterable<Peer> => (holding instanceof Set ? holding : [holding]);

function withPeer(holding: Holding, peer: Peer): Holding {
  if (holding === peer) return holding;
  if (holding instanceof Set) return holding.add(peer);
  return new Set([holding, peer]);
}

/** The holding without `peer`; undefined when nobody is left. */
function withoutPeer(holding: Holding, peer: Peer): Holding | undefined {
  if (!(holding instanceof Set)) return holding === peer ? undefined : holding;
  holding.delete(peer);
  if (holding.size > 1) return holding;
  return holding.size === 1 ? holding.values().next().value : undefined;
}

/** What the primary's directory holds, for /stats. */
export interface NodeTierUsage {
  /** Keys some worker holds. */
  readonly keys: number;
  /** The purge indexes' store. */
  readonly sets: StoreUsage | undefined;
}

export interface NodeTier extends Service {
  usage(): NodeTierUsage | undefined;
  close(): Promise<void>;
}

/**
 * The primary's side. The directory and the indexes are made when the first worker opens the
 * tier, and made anew (empty, every holder told to drop everything) when a worker opens it with
 * another `cache` section: a reload that changes it starts an empty cache, as with one worker.
 */
export function createNodeTier(options: { now?: () => number; maxKeys?: number } = {}): NodeTier {
  const now = options.now ?? Date.now;
  const maxKeys = options.maxKeys ?? MAX_KEYS;
  /** Who holds each key, and until when it is kept (its ttl at the last write). In insertion order: oldest first. */
  const holders = new Map<string, { peers: Holding; until: number }>();
  let sets: CacheStore | undefined;
  let opened: string | undefined;

  const tell = (channel: PrimaryChannel, peer: Peer, keys: readonly string[] | '*') => channel.notify(peer, SERVICE, keys);
  /** Tells every holder of `keys` but `from` to drop them; answers how many keys had holders. */
  const dropElsewhere = (channel: PrimaryChannel, keys: readonly string[], from: Peer | undefined): number => {
    const told = new Map<Peer, string[]>();
    let held = 0;
    for (const key of keys) {
      const entry = holders.get(key);
      if (entry === undefined) continue;
      holders.delete(key);
      held++;
      for (const peer of peersOf(entry.peers)) if (peer !== from) told.set(peer, [...(told.get(peer) ?? []), key]);
    }
    for (const [peer, named] of told) tell(channel, peer, named);
    return held;
  };
  /** Keeps the directory within maxKeys: the oldest keys go, their holders told. */
  const bound = (channel: PrimaryChannel) => {
    if (holders.size <= maxKeys) return;
    const oldest: string[] = [];
    for (const key of holders.keys()) {
      if (holders.size - oldest.length <= maxKeys) break;
      oldest.push(key);
    }
    dropElsewhere(channel, oldest, undefined);
  };
  const sweep = setInterval(() => {
    const at = now();
    for (const [key, entry] of holders) if (entry.until < at) holders.delete(key);
  }, 60_000);
  sweep.unref();

  /** A holder's copy of `key`, asked of each holder in turn (one that no longer has it is struck off). */
  const fetchFrom = async (channel: PrimaryChannel, key: string, from: Peer): Promise<{ meta: unknown; body: unknown; ttlMs: number } | undefined> => {
    const entry = holders.get(key);
    if (entry === undefined || entry.until <= now()) return undefined;
    for (const peer of [...peersOf(entry.peers)]) {
      if (peer === from) continue;
      const record = await channel.ask<{ meta: unknown; body: unknown } | undefined>(peer, GIVE_TIMEOUT_MS, SERVICE, 'give', key).catch(() => undefined);
      if (holders.get(key) !== entry) return undefined; // written or dropped meanwhile: ask again
      if (record === undefined) {
        const left = withoutPeer(entry.peers, peer);
        if (left === undefined) holders.delete(key);
        else entry.peers = left;
        continue;
      }
      entry.peers = withPeer(entry.peers, from);
      return { meta: record.meta, body: record.body, ttlMs: entry.until - now() };
    }
    return undefined;
  };

  return {
    async handle(from, op, args, channel) {
      if (op === 'open') {
        const section = String(args[0]);
        const maxSize = Number(args[1]);
        if (opened === section) return undefined;
        if (opened !== undefined) for (const peer of channel.peers()) if (peer !== from) tell(channel, peer, '*');
        holders.clear();
        await sets?.close();
        sets = createMemoryStore({ maxSize: Number.isSafeInteger(maxSize) && maxSize > 0 ? maxSize : 64 * 1024 * 1024, now: options.now });
        opened = section;
        return undefined;
      }
      if (sets === undefined) throw new Error('node tier: not opened');
      switch (op) {
        case 'get': return fetchFrom(channel, String(args[0]), from);
        case 'have': {
          // A new response under the key: the other holders' copies are another one.
          const key = String(args[0]);
          dropElsewhere(channel, [key], from);
          holders.set(key, { peers: from, until: now() + Number(args[1]) });
          bound(channel);
          return undefined;
        }
        case 'delete': {
          const keys = (args[0] as unknown[]).map(String);
          return dropElsewhere(channel, keys, from) + await sets.delete(keys);
        }
        case 'addToSet': return sets.addToSet(String(args[0]), String(args[1]), Number(args[2]));
        case 'members': return sets.members(String(args[0]));
        case 'clear': {
          for (const peer of channel.peers()) if (peer !== from) tell(channel, peer, '*');
          const count = holders.size;
          holders.clear();
          await sets.clear();
          return count;
        }
      }
      throw new Error(`node tier: unknown operation ${op}`);
    },
    detach(peer) {
      for (const [key, entry] of holders) {
        const left = withoutPeer(entry.peers, peer);
        if (left === undefined) holders.delete(key);
        else entry.peers = left;
      }
    },
    usage: () => (opened === undefined ? undefined : { keys: holders.size, sets: sets?.usage?.() }),
    async close() {
      clearInterval(sweep);
      holders.clear();
      await sets?.close();
      sets = undefined;
      opened = undefined;
    },
  };
}

/**
 * A worker's side: its own memory store (what it holds) in front of the rest of the node. Reads
 * it does not hold ask the primary, which fetches from a holder; writes are kept here and
 * announced; the primary's drops reach this worker's copies. `section`: the config's `cache`
 * section as text (another one empties the tier). The channel is this process's to its primary
 * (tests hand in another).
 */
export function createNodeTierStore(options: { local: CacheStore; section: string; maxSize: number; channel?: WorkerChannel }): CacheStore {
  const { local } = options;
  const channel = options.channel ?? primaryChannel();
  const call = <T>(op: string, ...args: unknown[]) => channel.call<T>(SERVICE, op, ...args);
  // A read from another worker that a drop overtook is served once and not kept (overtaken.ts).
  const guard = createReadGuard();
  const stopNotices = channel.onNotice(SERVICE, (keys) => {
    if (keys === '*') {
      void local.clear();
      guard.dropped('*');
    } else if (Array.isArray(keys)) {
      const named = keys.map(String);
      void local.delete(named);
      guard.dropped(named);
    }
  });
  // Another worker asks for what this one holds (through the primary).
  const stopServing = channel.serve(SERVICE, (op, args) => {
    if (op !== 'give') throw new Error(`node tier: unknown request ${op}`);
    const key = String(args[0]);
    const record = local.peekNow?.(key) ?? local.getNow?.(key);
    return record === undefined ? undefined : { meta: record.meta, body: record.body };
  });
  const opened = call<void>('open', options.section, options.maxSize);
  opened.catch(() => {}); // an operation that follows fails on its own

  /** Another worker's copy, through the primary, kept here unless a drop overtook the read. */
  async function fetchElsewhere<M>(key: string): Promise<CacheRecord<M> | undefined> {
    await opened;
    const { value: got, overtaken: replaced } = await guard.read(key, () => call<{ meta: unknown; body: unknown; ttlMs: number } | undefined>('get', key));
    if (got === undefined) return undefined;
    const record: CacheRecord<M> = { meta: got.meta as M, body: asBuffer(got.body) };
    if (!replaced && got.ttlMs > 0) await local.set(key, record, got.ttlMs);
    return record;
  }


  return {
    name: 'node',
    usage: local.usage === undefined ? undefined : () => local.usage!(),
    getNow: local.getNow === undefined ? undefined : (key) => local.getNow!(key),
    peekNow: local.peekNow === undefined ? undefined : (key) => local.peekNow!(key),
    async get<M>(key: string): Promise<CacheRecord<M> | undefined> {
      const held = await local.get<M>(key);
      if (held !== undefined) return held;
      return guard.shared(key, () => fetchElsewhere<M>(key));
    },
    async set(key, record, ttlMs) {
      // A read from another worker under way holds what this write replaces: not kept, not shared from now.
      guard.dropped([key]);
      await local.set(key, record, ttlMs);
      await opened;
      channel.tell(SERVICE, 'have', key, ttlMs);
    },
    async delete(keys) {
      guard.dropped(keys);
      const here = await local.delete(keys);
      await opened;
      return Math.max(here, await call<number>('delete', [...keys]));
    },
    async discard(keys) {
      guard.dropped(keys);
      await local.delete(keys);
      await opened;
      channel.tell(SERVICE, 'delete', [...keys]);
    },
    async addToSet(set, member, ttlMs) { await opened; channel.tell(SERVICE, 'addToSet', set, member, ttlMs); },
    async members(set) { await opened; return call<string[]>('members', set); },
    async clear() {
      guard.dropped('*');
      const here = await local.clear();
      await opened;
      return Math.max(here, await call<number>('clear'));
    },
    async close() {
      stopNotices();
      stopServing();
      await local.close();
    },
  };
}
