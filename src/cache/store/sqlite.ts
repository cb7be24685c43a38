import Keyv from 'keyv';
import type { CacheStore } from './contract.ts';
import { createKeyvStore } from './keyv.ts';
import { createSqliteAdapter } from './sqlite-adapter.ts';

export interface SqliteStoreOptions {
  /** `sqlite:///absolute/path.db`, or `sqlite://relative/path.db` (from the working directory). */
  url: string;
  /** Every key this store writes is in this Keyv namespace; clear() touches nothing else. */
  prefix?: string;
  onError?: (err: unknown) => void;
}

/** The file a `sqlite://` URL names: what follows the two slashes, so a third one makes it absolute. */
export function sqlitePath(url: string): string {
  const match = /^sqlite:\/\/([^\s?#]+)$/.exec(url);
  if (!match) throw new TypeError(`sqlite store: expected sqlite:///absolute/path.db or sqlite://relative/path.db, got ${JSON.stringify(url)}`);
  return match[1]!;
}

/**
 * This node's disk tier: Keyv over our `node:sqlite` adapter, bodies as BLOBs. It survives a
 * restart; it is not shared with other nodes (use Redis for that).
 */
export function createSqliteStore(options: SqliteStoreOptions): CacheStore {
  const store = createSqliteAdapter({ path: sqlitePath(options.url) });
  // No serializer: Keyv hands the adapter { value: Buffer, expires } and the body stays bytes.
  const keyv = new Keyv({ store, serialize: undefined, deserialize: undefined });
  return createKeyvStore({ keyv, name: 'sqlite', prefix: options.prefix ?? 'outpost', onError: options.onError });
}
