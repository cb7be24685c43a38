import { createClient } from '@keyv/redis';
import { RESP_TYPES } from '@redis/client';
import { decodeRecord, encodeRecord, type CacheStore } from './contract.ts';

export interface RedisStoreOptions {
  url: string;
  /** Every key this store writes starts with it; clear() touches nothing else. */
  prefix?: string;
  /** A command that has not answered by then fails (and the request goes on as a miss). */
  commandTimeout?: number;
  onError?: (err: unknown) => void;
}

/**
 * The shared tier: one Redis value per record (see encodeRecord: raw body bytes, never base64),
 * sets for the purge indexes. The client comes from @keyv/redis (node-redis underneath), set up so
 * that a Redis outage fails fast instead of queueing: no offline queue, bounded connect time,
 * reconnection in the background with backoff.
 */
/** The Redis store also carries messages between nodes (invalidations for their near tiers). */
export interface RedisStore extends CacheStore {
  publish(channel: string, message: string): Promise<void>;
  /** Listens on a channel over a second connection; returns the function that stops it. */
  subscribe(channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>;
}

export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const prefix = options.prefix ?? 'outpost:';
  const timeout = options.commandTimeout ?? 1000;
  const onError = options.onError ?? (() => {});
  const client = createClient({
    url: options.url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 2000,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
    },
  });
  client.on('error', onError);
  // Bodies come back as Buffers, not strings decoded as UTF-8.
  const binary = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const connecting = client.connect().catch((err: unknown) => onError(err));

  const ready = async () => {
    await connecting;
    if (!client.isReady) throw new Error('redis not connected');
  };
  const withTimeout = <T>(work: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout;
    return Promise.race([
      work,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('redis command timed out')), timeout); }),
    ]).finally(() => clearTimeout(timer));
  };
  const k = (key: string) => prefix + key;

  return {
    name: 'redis',
    async get(key) {
      await ready();
      const raw = await withTimeout(binary.get(k(key))) as Buffer | null;
      return raw ? decodeRecord(raw) : undefined;
    },
    async set(key, record, ttlMs) {
      await ready();
      await withTimeout(client.set(k(key), encodeRecord(record), { expiration: { type: 'PX', value: Math.max(1, Math.ceil(ttlMs)) } }));
    },
    async delete(keys) {
      if (keys.length === 0) return 0;
      await ready();
      return Number(await withTimeout(client.unlink(keys.map(k))));
    },
    async addToSet(set, member, ttlMs) {
      await ready();
      const name = k(set);
      await withTimeout(client.multi()
        .sAdd(name, member)
        .pExpire(name, Math.ceil(ttlMs), 'NX')
        .pExpire(name, Math.ceil(ttlMs), 'GT')
        .exec());
    },
    async members(set) {
      await ready();
      return withTimeout(client.sMembers(k(set)));
    },
    async clear() {
      await ready();
      let count = 0;
      for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) {
        if (keys.length > 0) count += Number(await client.unlink(keys));
      }
      return count;
    },
    async publish(channel, message) {
      await ready();
      await withTimeout(client.publish(k(channel), message));
    },
    async subscribe(channel, onMessage) {
      const subscriber = client.duplicate();
      subscriber.on('error', onError);
      await subscriber.connect().catch((err: unknown) => onError(err));
      await subscriber.subscribe(k(channel), (message: string) => onMessage(message)).catch((err: unknown) => onError(err));
      return async () => {
        if (subscriber.isOpen) await subscriber.close().catch(() => subscriber.destroy());
        else subscriber.destroy();
      };
    },
    async close() {
      await connecting;
      if (client.isOpen) await client.close().catch(() => client.destroy());
      else client.destroy();
    },
  };
}
