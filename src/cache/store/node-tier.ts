import type { Worker } from 'node:cluster';
import type { CacheRecord, CacheStore, StoreUsage } from './contract.ts';
import { createMemoryStore } from './memory.ts';

/**
 * One memory cache for the node's workers. With `workers: N` and the memory store, the cluster
 * primary holds the cache (the node tier) and each worker keeps a near copy of what it served
 * (tiered.ts): a response one worker stored is a hit in every worker, and an invalidation (a POST,
 * a purge, a newer response) in one reaches all of them, as a cache shared by nginx's or Varnish's
 * workers would behave. Without it each worker was a cache of its own: a client whose next request
 * came over another connection found nothing, and a POST to a URL left the other worker serving
 * what it had stored (RFC 9111 §4.4).
 *
 * The tier speaks over the cluster IPC channel (advanced serialization: bodies travel as bytes);
 * the tiered store's invalidation announcements go through the primary to the other workers, in
 * the order they were sent. A primary that does not answer in time is a miss, as a Redis tier that
 * is down is.
 */

/** The environment variable that tells a worker its primary keeps the node tier (set at fork). */
export const NODE_TIER = 'OUTPOST_NODE_TIER';

type Op = 'open' | 'get' | 'set' | 'delete' | 'addToSet' | 'members' | 'clear' | 'publish';
interface TierRequest { readonly outpost: 'tier'; readonly id: number; readonly op: Op; readonly args: readonly unknown[] }
interface TierAnswer { readonly outpost: 'tier-answer'; readonly id: number; readonly ok: boolean; readonly value?: unknown; readonly error?: string }
interface TierEvent { readonly outpost: 'tier-event'; readonly channel: string; readonly message: string }

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
export function createNodeTier(options: { now?: () => number } = {}): NodeTier {
  let store: CacheStore | undefined;
  let size = 0;
  const attached = new Set<TierPeer>();

  const open = async (maxSize: number) => {
    if (store !== undefined && size === maxSize) return;
    await store?.close();
    store = createMemoryStore({ maxSize, now: options.now });
    size = maxSize;
  };
  const run = async (from: TierPeer, op: Op, args: readonly unknown[]): Promise<unknown> => {
    if (op === 'open') return open(Number(args[0]));
    if (op === 'publish') {
      const event: TierEvent = { outpost: 'tier-event', channel: String(args[0]), message: String(args[1]) };
      for (const worker of attached) if (worker !== from && worker.isConnected()) worker.send(event);
      return undefined;
    }
    if (store === undefined) throw new Error('node tier: not opened');
    switch (op) {
      case 'get': {
        const record = await store.get(String(args[0]));
        return record === undefined ? undefined : { meta: record.meta, body: record.body };
      }
      case 'set': {
        const record = args[1] as { meta: unknown; body: unknown };
        return store.set(String(args[0]), { meta: record.meta, body: asBuffer(record.body) }, Number(args[2]));
      }
      case 'delete': return store.delete((args[0] as unknown[]).map(String));
      case 'addToSet': return store.addToSet(String(args[0]), String(args[1]), Number(args[2]));
      case 'members': return store.members(String(args[0]));
      case 'clear': return store.clear();
    }
    throw new Error(`node tier: unknown operation ${String(op)}`);
  };

  return {
    attach(worker) {
      attached.add(worker);
      worker.once('exit', () => attached.delete(worker));
      worker.on('message', (message: unknown) => {
        if (!isTier<TierRequest>(message, 'tier')) return;
        run(worker, message.op, Array.isArray(message.args) ? message.args : []).then(
          (value) => { if (worker.isConnected()) worker.send({ outpost: 'tier-answer', id: message.id, ok: true, value } satisfies TierAnswer); },
          (error: unknown) => { if (worker.isConnected()) worker.send({ outpost: 'tier-answer', id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) } satisfies TierAnswer); },
        );
      });
    },
    usage: () => store?.usage?.(),
    async close() {
      await store?.close();
      store = undefined;
    },
  };
}

/** A worker's view of the node tier: a far store with publish/subscribe, for the tiered store. */
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
  send?: (message: TierRequest) => void;
  messages?: NodeJS.EventEmitter;
}): NodeTierStore {
  const send = options.send ?? ((message: TierRequest) => { process.send?.(message); });
  const messages: NodeJS.EventEmitter = options.messages ?? process;
  const timeoutMs = options.timeoutMs ?? 2000;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>();
  const listeners = new Map<string, Set<(message: string) => void>>();
  let nextId = 1;

  const onMessage = (message: unknown) => {
    if (isTier<TierAnswer>(message, 'tier-answer')) {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return;
      pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(new Error(message.error ?? 'node tier: the primary refused'));
    } else if (isTier<TierEvent>(message, 'tier-event')) {
      for (const listener of listeners.get(message.channel) ?? []) listener(message.message);
    }
  };
  messages.on('message', onMessage);

  const call = <T>(op: Op, ...args: unknown[]): Promise<T> => new Promise<T>((resolve, reject) => {
    const id = nextId++;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error(`node tier: the primary did not answer ${op} within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
    try {
      send({ outpost: 'tier', id, op, args });
    } catch (error) {
      pending.delete(id);
      clearTimeout(timer);
      reject(error as Error);
    }
  });
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
      await call('set', key, { meta: record.meta, body: record.body }, ttlMs);
    },
    async delete(keys) { await opened; return call<number>('delete', [...keys]); },
    async addToSet(set, member, ttlMs) { await opened; await call('addToSet', set, member, ttlMs); },
    async members(set) { await opened; return call<string[]>('members', set); },
    async clear() { await opened; return call<number>('clear'); },
    async publish(channel, message) { await call('publish', channel, message); },
    async subscribe(channel, onMessage) {
      let channelListeners = listeners.get(channel);
      if (channelListeners === undefined) listeners.set(channel, channelListeners = new Set());
      channelListeners.add(onMessage);
      return async () => { channelListeners.delete(onMessage); };
    },
    async close() {
      messages.off('message', onMessage);
      for (const [id, waiting] of pending) {
        clearTimeout(waiting.timer);
        waiting.reject(new Error('node tier: closed'));
        pending.delete(id);
      }
    },
  };
}
