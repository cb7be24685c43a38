import { randomUUID } from 'node:crypto';
import type { CacheRecord, CacheStore } from './contract.ts';
import type { RedisStore } from './redis.ts';
import { createReadGuard } from './overtaken.ts';

export interface TieredStoreOptions {
  near: CacheStore;
  /** Redis (shared by nodes: invalidations go over its pub/sub) or a store only this node uses (a disk). */
  far: RedisStore | CacheStore;
  /** How long a copy read from the far tier stays near (freshness is still decided per request). */
  nearTtlMs?: number;
  /**
   * Why a record read from the far tier cannot be used (undefined: it can). A shared tier is input:
   * a refused record reads as absent, is reported, and is not kept near.
   */
  refuse?: (key: string, record: CacheRecord) => string | undefined;
  onError?: (err: unknown) => void;
}

const CHANNEL = 'invalidate';

/**
 * Several nodes, one shared tier: reads try this process's memory first, then Redis (and keep a
 * near copy); writes and deletes go to both. Every write or delete is announced on a Redis
 * channel so the other nodes drop their near copies: a purge on any node purges every node.
 * A far tier that is down leaves the near tier working. A far tier without publish/subscribe
 * (a disk store of this node's own) is the same two tiers with no one else to tell.
 */
export async function createTieredStore(options: TieredStoreOptions): Promise<CacheStore> {
  const { near, far } = options;
  const nearTtl = options.nearTtlMs ?? 60_000;
  const onError = options.onError ?? (() => {});
  const self = randomUUID();

  const bus = 'publish' in far && 'subscribe' in far ? far : undefined;

  const announce = (keys: readonly string[] | '*') => {
    bus?.publish(CHANNEL, JSON.stringify({ from: self, keys })).catch(onError);
  };
  // A far read that an invalidation overtook is served once and not kept near (overtaken.ts).
  const guard = createReadGuard();
  const unsubscribe = !bus ? async () => {} : await bus.subscribe(CHANNEL, (message) => {
    try {
      const { from, keys } = JSON.parse(message) as { from: string; keys: string[] | '*' };
      if (from === self) return;
      if (keys === '*') {
        void near.clear();
        guard.dropped('*');
      } else if (Array.isArray(keys)) {
        const named = keys.filter((k) => typeof k === 'string');
        void near.delete(named);
        guard.dropped(named);
      }
    } catch {
      // not one of ours
    }
  });

  /** One read of the far tier, kept near unless refused or overtaken by a drop. */
  async function readFar(key: string): Promise<CacheRecord | undefined> {
    const { value: remote, overtaken: replaced } = await guard.read(key, () => far.get(key));
    if (!remote) return undefined;
    const why = options.refuse?.(key, remote);
    if (why !== undefined) {
      onError(new Error(`record ${JSON.stringify(key)} refused: ${why}`)); // the reporter names the tier
      return undefined;
    }
    if (!replaced) await near.set(key, remote, nearTtl);
    return remote;
  }

  return {
    name: `memory+${far.name}`,
    usage: near.usage === undefined ? undefined : () => near.usage!(),
    // What this process holds near; a record only the far tier has is read with get().
    getNow: near.getNow === undefined ? undefined : (key) => near.getNow!(key),
    peekNow: near.peekNow === undefined ? undefined : (key) => near.peekNow!(key),
    async get(key) {
      const local = await near.get(key);
      if (local) return local as never;
      return guard.shared(key, () => readFar(key)) as never;
    },
    async set(key, record, ttlMs) {
      // A far read under way holds what this write replaces: not kept near, not shared from now.
      guard.dropped([key]);
      await near.set(key, record, Math.min(ttlMs, nearTtl));
      try {
        await far.set(key, record, ttlMs);
      } finally {
        announce([key]);
      }
    },
    async delete(keys) {
      guard.dropped(keys);
      const local = await near.delete(keys);
      announce(keys);
      try {
        return await far.delete(keys);
      } catch (err) {
        onError(err);
        return local;
      }
    },
    async discard(keys) {
      guard.dropped(keys);
      await near.delete(keys);
      announce(keys);
      try {
        await (far.discard !== undefined ? far.discard(keys) : far.delete(keys));
      } catch (err) {
        onError(err);
      }
    },
    async addToSet(set, member, ttlMs) {
      await far.addToSet(set, member, ttlMs);
    },
    async members(set) {
      return far.members(set);
    },
    async clear() {
      guard.dropped('*');
      await near.clear();
      announce('*');
      return far.clear();
    },
    async close() {
      await unsubscribe();
      await near.close();
      await far.close();
    },
  };
}
