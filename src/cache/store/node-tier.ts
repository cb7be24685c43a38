import type { Worker } from 'node:cluster';
import type { CacheRecord, CacheStore, StoreUsage } from './contract.ts';
import { createMemoryStore } from './memory.ts';
import { NEAR_TTL_MS } from './tiered.ts';

/**
 * One memory cache for the node's workers. With `workers: N` and the memory store, the cluster
 * primary holds the cache (the node tier) and each worker keeps a near copy of what it served
 * (tiered.ts): a response one worker stored is a hit in every worker, and an invalidation (a POST,
 * a purge, a newer response) in one reaches all of them, as a cache shared by nginx's or Varnish's
 * workers would behave. Without it each worker was a cache of its own: a client whose next request
 * came over another connection found nothing, and a POST to a URL left the other worker serving
 * what it had stored (RFC 9111 §4.4).
 *
 * The tier speaks over the cluster IPC channel (advanced serialization: bodies travel as bytes).
 * The primary tells a worker to drop its near copy of a key when another worker stores or deletes
 * it, and only a worker that may hold one: one that stored the key or read it from the tier within
 * the near copies' lifetime (NEAR_TTL_MS). A miss for a new URL then costs its worker two round
 * trips (the read that finds nothing, the write) and the other workers nothing. A primary that
 * does not answer in time is a miss, as a Redis tier that is down is.
 */

/** The environment variable that tells a worker its primary keeps the node tier (set at fork). */
export const NODE_TIER = 'OUTPOST_NODE_TIER';

type Op = 'open' | 'get' | 'set' | 'delete' | 'addToSet' | 'members' | 'clear';
interface TierRequest { readonly outpost: 'tier'; readonly id: number; readonly op: Op; readonly args: readonly unknown[] }
interface TierAnswer { readonly outpost: 'tier-answer'; readonly id: number; readonly ok: boolean; readonly value?: unknown; readonly error?: string }
/** Drop these near copies (`*`: all of them). */
interface TierDrop { readonly outpost: 'tier-drop'; readonly keys: readonly string[] | '*' }
type TierMessage = TierRequest | TierAnswer | TierDrop;
/** The messages one side sent in one turn of its event loop, in order. */
interface TierBatch { readonly outpost: 'tier-batch'; readonly items: readonly TierMessage[] }

const isTier = <T extends { outpost: string }>(message: unknown, kind: T['outpost']): message is T =>
  message !== null && typeof message === 'object' && (message as { outpost?: unknown }).outpost === kind;

/** Bytes that crossed the channel: a Uint8Array view, or a Buffer, as the serializer hands it. */
const asBuffer = (bytes: unknown): Buffer => {
  if (Buffer.isBuffer(bytes)) return bytes;
  if (bytes instanceof Uint8Array) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError('node tier: a record body is not bytes');
};

/** What the tier needs of a worker: a cluster Worker, or any IPC end that looks like one. */
export type TierPeer = Pick<Worker, 'send' | 'on' | 'once' | 'isConnected'>;

/**
 * A sender that gathers what is sent in one turn of the event loop into one message: under load a
 * write and a read on each side for several operations instead of one each (the order is kept).
 * A channel that is gone drops the batch: answers are then waited for until their timeout.
 */
function batching(send: (message: TierMessage | TierBatch) => void): (message: TierMessage) => void {
  let queue: TierMessage[] = [];
  const flush = () => {
    const items = queue;
    queue = [];
    try {
      send(items.length === 1 ? items[0]! : { outpost: 'tier-batch', items });
    } catch {
      // the channel closed (the process is ending)
    }
  };
  return (message) => { if (queue.push(message) === 1) setImmediate(flush); };
}

/** Each message of `message`, a batch or a single one. */
const eachOf = (message: unknown, handle: (item: unknown) => void) => {
  if (isTier<TierBatch>(message, 'tier-batch') && Array.isArray(message.items)) for (const item of message.items) handle(item);
  else handle(message);
};

export interface NodeTier {
  /** Answers this worker's requests and passes its announcements on to the others. */
  attach(worker: TierPeer): void;
  /** What the tier holds (stats), when it has been opened. */
  usage(): StoreUsage | undefined;
  close(): Promise<void>;
}

/**
 * The primary's side. The store is made when the first worker opens the tier, with the size that
 * worker's config gives, and made anew (empty) when a reload changes that size.
 */
export function createNodeTier(options: { now?: () => number; onError?: (error: unknown) => void } = {}): NodeTier {
  const now = options.now ?? Date.now;
  const onError = options.onError ?? ((error: unknown) => console.error(`outpost: node tier: ${error instanceof Error ? error.message : String(error)}`));
  let store: CacheStore | undefined;
  let size = 0;
  /** The workers attached, each with its batching sender. */
  const attached = new Map<TierPeer, (message: TierMessage) => void>();
  /**
   * Who may hold a near copy of a key, and until when (a near copy lives NEAR_TTL_MS at most from
   * the write or read that made it). Entries past their time are swept once a minute.
   */
  const holders = new Map<string, { peers: Set<TierPeer>; until: number }>();
  const hold = (key: string, peer: TierPeer, alone: boolean) => {
    const entry = holders.get(key);
    const until = now() + NEAR_TTL_MS;
    if (entry === undefined || alone) holders.set(key, { peers: new Set([peer]), until });
    else { entry.peers.add(peer); entry.until = until; }
  };
  /** Tells the other workers that may hold `keys` near to drop them. */
  const dropElsewhere = (keys: readonly string[], from: TierPeer) => {
    const told = new Map<TierPeer, string[]>();
    const at = now();
    for (const key of keys) {
      const entry = holders.get(key);
      if (entry === undefined || entry.until < at) continue;
      for (const peer of entry.peers) if (peer !== from) told.set(peer, [...(told.get(peer) ?? []), key]);
    }
    for (const [peer, named] of told) attached.get(peer)?.({ outpost: 'tier-drop', keys: named });
  };
  const sweep = setInterval(() => {
    const at = now();
    for (const [key, entry] of holders) if (entry.until < at) holders.delete(key);
  }, NEAR_TTL_MS);
  sweep.unref();

  const open = async (maxSize: number) => {
    if (store !== undefined && size === maxSize) return;
    await store?.close();
    store = createMemoryStore({ maxSize, now: options.now });
    size = maxSize;
  };
  const run = async (from: TierPeer, op: Op, args: readonly unknown[]): Promise<unknown> => {
    if (op === 'open') return open(Number(args[0]));
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
        dropElsewhere([key], from);
        hold(key, from, true);
        return store.set(key, { meta: record.meta, body: asBuffer(record.body) }, Number(args[2]));
      }
      case 'delete': {
        const keys = (args[0] as unknown[]).map(String);
        dropElsewhere(keys, from);
        for (const key of keys) holders.delete(key);
        return store.delete(keys);
      }
      case 'addToSet': return store.addToSet(String(args[0]), String(args[1]), Number(args[2]));
      case 'members': return store.members(String(args[0]));
      case 'clear': {
        for (const [peer, sendTo] of attached) if (peer !== from) sendTo({ outpost: 'tier-drop', keys: '*' });
        holders.clear();
        return store.clear();
      }
    }
    throw new Error(`node tier: unknown operation ${String(op)}`);
  };

  return {
    attach(worker) {
      const sendTo = batching((message) => { if (worker.isConnected()) worker.send(message); });
      attached.set(worker, sendTo);
      worker.once('exit', () => attached.delete(worker));
      const answer = (message: unknown) => {
        if (!isTier<TierRequest>(message, 'tier')) return;
        const done = run(worker, message.op, Array.isArray(message.args) ? message.args : []);
        // id 0: a write nobody waits for (the channel keeps its order, so reads see it).
        if (message.id === 0) { done.catch(onError); return; }
        done.then(
          (value) => sendTo({ outpost: 'tier-answer', id: message.id, ok: true, value }),
          (error: unknown) => sendTo({ outpost: 'tier-answer', id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
        );
      };
      worker.on('message', (message: unknown) => eachOf(message, answer));
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
 * The worker's side: every operation is one message to the primary and its answer. `send` and
 * `messages` are the process's IPC channel (tests hand in their own ends).
 */
export function createNodeTierStore(options: {
  maxSize: number;
  timeoutMs?: number;
  send?: (message: TierMessage | TierBatch) => void;
  messages?: NodeJS.EventEmitter;
}): NodeTierStore {
  const send = batching(options.send ?? ((message) => { process.send?.(message); }));
  const messages: NodeJS.EventEmitter = options.messages ?? process;
  const timeoutMs = options.timeoutMs ?? 2000;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; op: Op; deadline: number }>();
  // One timer for every call waiting (a call's own timer would cost a set and a clear per operation).
  const expiry = setInterval(() => {
    const now = performance.now();
    for (const [id, waiting] of pending) {
      if (waiting.deadline > now) continue;
      pending.delete(id);
      waiting.reject(new Error(`node tier: the primary did not answer ${waiting.op} within ${timeoutMs} ms`));
    }
  }, Math.max(10, timeoutMs / 4));
  expiry.unref();
  const listeners = new Map<string, Set<(message: string) => void>>();
  let nextId = 1;

  const onItem = (message: unknown) => {
    if (isTier<TierAnswer>(message, 'tier-answer')) {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return;
      pending.delete(message.id);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(new Error(message.error ?? 'node tier: the primary refused'));
    } else if (isTier<TierDrop>(message, 'tier-drop')) {
      const text = JSON.stringify({ from: 'node tier', keys: message.keys });
      for (const channelListeners of listeners.values()) for (const listener of channelListeners) listener(text);
    }
  };
  const onMessage = (message: unknown) => eachOf(message, onItem);
  messages.on('message', onMessage);

  const call = <T>(op: Op, ...args: unknown[]): Promise<T> => new Promise<T>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject, op, deadline: performance.now() + timeoutMs });
    send({ outpost: 'tier', id, op, args });
  });
  /** A write that needs no answer: one message instead of two (the primary applies them in order). */
  const tell = (op: Op, ...args: unknown[]): void => send({ outpost: 'tier', id: 0, op, args });
  const opened = call<void>('open', options.maxSize);
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
      tell('set', key, { meta: record.meta, body: record.body }, ttlMs);
    },
    async delete(keys) { await opened; return call<number>('delete', [...keys]); },
    async discard(keys) { await opened; tell('delete', [...keys]); },
    async addToSet(set, member, ttlMs) { await opened; tell('addToSet', set, member, ttlMs); },
    async members(set) { await opened; return call<string[]>('members', set); },
    async clear() { await opened; return call<number>('clear'); },
    async publish() {},
    async subscribe(channel, onMessage) {
      let channelListeners = listeners.get(channel);
      if (channelListeners === undefined) listeners.set(channel, channelListeners = new Set());
      channelListeners.add(onMessage);
      return async () => { channelListeners.delete(onMessage); };
    },
    async close() {
      messages.off('message', onMessage);
      clearInterval(expiry);
      for (const [id, waiting] of pending) {
        waiting.reject(new Error('node tier: closed'));
        pending.delete(id);
      }
    },
  };
}
