import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { KeyvStoreAdapter } from 'keyv';

export interface SqliteAdapterOptions {
  /** The database file (created with its directory if missing), or ':memory:'. */
  path: string;
  /** Several adapters (each with its own Keyv namespace) may share one table. */
  table?: string;
  /** How long a write waits for another process holding the file's write lock. */
  busyTimeoutMs?: number;
  /** How often a write also deletes expired rows (at most `SWEEP_BATCH` per write). */
  sweepIntervalMs?: number;
  now?: () => number;
}

export type SqliteAdapter = KeyvStoreAdapter & {
  /** Deletes up to `limit` expired rows now; answers how many. Writes call it on their own. */
  sweep(limit?: number): number;
};

/** What `value` holds, so get() can hand Keyv back exactly what set() was given. */
const Kind = {
  /** A string from Keyv's serializer (its default): Keyv parses it again. */
  serialized: 0,
  /** Keyv without a serializer passes `{ value, expires }`: here `value` as a BLOB, byte for byte. */
  bytes: 1,
  text: 2,
  /** Any other value (numbers, objects) as JSON text. */
  json: 3,
} as const;
type Kind = (typeof Kind)[keyof typeof Kind];

/** 1000 rows: a sweep stays a short pause for the event loop even when a burst of records expires at once. */
const SWEEP_BATCH = 1000;

interface Row {
  value: Uint8Array | string | null;
  expires: number | null;
  kind: Kind;
}

/**
 * A Keyv storage adapter over Node's built-in SQLite (`node:sqlite`, no native module to build):
 * one row per key with its value, its expiry time and what kind of value it is. Bytes are BLOBs,
 * never text: with `new Keyv({ store, serialize: undefined, deserialize: undefined })` Keyv hands
 * over `{ value: Buffer, expires }` and gets the same back; with Keyv's default serializer it
 * stores the serialized strings, like any other adapter.
 *
 * Expiry is ours too, not only Keyv's: reads skip (and drop) expired rows, and writes sweep them
 * out in batches, so a file of short-lived records does not keep growing.
 *
 * The calls are synchronous underneath (SQLite in this thread): a read of a cached body is a copy
 * out of the page cache. The journal is a WAL with synchronous=NORMAL: a crash loses at most the
 * last writes, never the file — the right trade for a cache.
 */
export function createSqliteAdapter(options: SqliteAdapterOptions): SqliteAdapter {
  const table = options.table ?? 'keyv';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new TypeError(`sqlite adapter: table must be an SQL identifier, got ${JSON.stringify(table)}`);
  if (typeof options.path !== 'string' || options.path === '') throw new TypeError(`sqlite adapter: path must be a file path, got ${JSON.stringify(options.path)}`);
  const now = options.now ?? Date.now;
  const sweepInterval = options.sweepIntervalMs ?? 30_000;

  let db: DatabaseSync;
  try {
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    db = new DatabaseSync(options.path, { timeout: options.busyTimeoutMs ?? 5000 });
    db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS ${table} (key TEXT PRIMARY KEY, value BLOB, expires INTEGER, kind INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS ${table}_expires ON ${table} (expires) WHERE expires IS NOT NULL;
    `);
  } catch (err) {
    throw new Error(`sqlite adapter: cannot open ${JSON.stringify(options.path)}: ${(err as Error).message}`, { cause: err });
  }
  const q = {
    get: db.prepare(`SELECT value, expires, kind FROM ${table} WHERE key = ?`),
    has: db.prepare(`SELECT 1 FROM ${table} WHERE key = ? AND (expires IS NULL OR expires > ?)`),
    set: db.prepare(`INSERT INTO ${table} (key, value, expires, kind) VALUES (?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, kind = excluded.kind`),
    delete: db.prepare(`DELETE FROM ${table} WHERE key = ? RETURNING expires`),
    // [prefix, prefix with its last character incremented): every key that starts with the prefix, through the key index.
    countRange: db.prepare(`SELECT count(*) AS n FROM ${table} WHERE key >= ? AND key < ? AND (expires IS NULL OR expires > ?)`),
    clearRange: db.prepare(`DELETE FROM ${table} WHERE key >= ? AND key < ?`),
    countAll: db.prepare(`SELECT count(*) AS n FROM ${table} WHERE expires IS NULL OR expires > ?`),
    clearAll: db.prepare(`DELETE FROM ${table}`),
    page: db.prepare(`SELECT key, value, expires, kind FROM ${table} WHERE key > ? AND key >= ? AND key < ? ORDER BY key LIMIT ?`),
    sweep: db.prepare(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE expires <= ? LIMIT ?)`),
  };
  let nextSweep = now() + sweepInterval;

  const isLive = (expires: number | null) => expires === null || expires > now();

  /** What Keyv gave set(), rebuilt from a row. */
  const decode = (row: Row): unknown => {
    const expires = row.expires ?? undefined;
    switch (row.kind) {
      case Kind.serialized: return String(row.value);
      case Kind.bytes: {
        const bytes = row.value as Uint8Array;
        return { value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), expires };
      }
      case Kind.text: return { value: String(row.value), expires };
      default: return { value: JSON.parse(String(row.value)), expires };
    }
  };

  const read = (key: string): unknown => {
    const row = q.get.get(key) as Row | undefined;
    if (!row) return undefined;
    if (!isLive(row.expires)) {
      q.delete.run(key);
      return undefined;
    }
    return decode(row);
  };

  const write = (key: string, data: unknown, ttl: number | undefined) => {
    let expires: number | null = typeof ttl === 'number' && ttl > 0 ? now() + ttl : null;
    if (typeof data === 'string') {
      q.set.run(key, data, expires, Kind.serialized);
    } else if (typeof data === 'object' && data !== null && 'value' in data) {
      const { value, expires: until } = data as { value: unknown; expires?: unknown };
      if (expires === null && typeof until === 'number') expires = until;
      if (value instanceof Uint8Array) q.set.run(key, value, expires, Kind.bytes);
      else if (typeof value === 'string') q.set.run(key, value, expires, Kind.text);
      else q.set.run(key, JSON.stringify(value), expires, Kind.json);
    } else {
      throw new TypeError(`sqlite adapter: expected a serialized string or Keyv's { value, expires }, got ${typeof data}`);
    }
  };

  const remove = (key: string): boolean => {
    const row = q.delete.get(key) as { expires: number | null } | undefined;
    return row !== undefined && isLive(row.expires);
  };

  const sweep = (limit = SWEEP_BATCH): number => Number(q.sweep.run(now(), limit).changes);
  const maybeSweep = () => {
    if (now() < nextSweep) return;
    // A full batch means more are waiting: the next write goes on with them.
    nextSweep = sweep() === SWEEP_BATCH ? 0 : now() + sweepInterval;
  };

  /** The keys Keyv owns in this table: its namespace prefix, or every key without one. */
  const range = (namespace: string | undefined): [string, string] | undefined => {
    if (!namespace) return undefined;
    const prefix = `${namespace}:`;
    return [prefix, prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)];
  };

  const transaction = <T>(work: () => T): T => {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      db.exec('COMMIT');
      return result;
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  };

  const adapter = Object.assign(new EventEmitter(), {
    // Keyv reads `opts.dialect` to decide that this adapter can be iterated.
    opts: { dialect: 'sqlite', url: `sqlite://${options.path}`, table },
    namespace: undefined as string | undefined,
    async get(key: string) {
      return read(key) as never;
    },
    async getMany(keys: string[]) {
      return keys.map(read) as never;
    },
    async has(key: string) {
      return q.has.get(key, now()) !== undefined;
    },
    async hasMany(keys: string[]) {
      const at = now();
      return keys.map((key) => q.has.get(key, at) !== undefined);
    },
    async set(key: string, value: unknown, ttl?: number) {
      write(key, value, ttl);
      maybeSweep();
      return true;
    },
    async setMany(entries: Array<{ key: string; value: unknown; ttl?: number }>) {
      transaction(() => { for (const { key, value, ttl } of entries) write(key, value, ttl); });
      maybeSweep();
    },
    async delete(key: string) {
      return remove(key);
    },
    async deleteMany(keys: string[]) {
      return transaction(() => keys.map(remove)).some(Boolean);
    },
    /**
     * Drops this namespace's keys (all of the table's without a namespace). Keyv's adapters answer
     * nothing here; this one answers how many live records it dropped, for whoever asks the store itself.
     */
    async clear() {
      const bounds = range(adapter.namespace);
      return transaction(() => {
        const { n } = (bounds ? q.countRange.get(...bounds, now()) : q.countAll.get(now())) as { n: number };
        if (bounds) q.clearRange.run(...bounds);
        else q.clearAll.run();
        return Number(n);
      }) as never;
    },
    /** [key, value] in key order, a page at a time; Keyv unwraps the values and skips expired ones. */
    async *iterator(namespace?: string) {
      const [from, to] = range(namespace) ?? ['', '\u{10ffff}'];
      let after = '';
      for (;;) {
        const rows = q.page.all(after, from, to, 100) as unknown as Array<Row & { key: string }>;
        if (rows.length === 0) return;
        for (const row of rows) yield [row.key, decode(row)];
        after = rows[rows.length - 1]!.key;
      }
    },
    async disconnect() {
      if (db.isOpen) db.close();
    },
    sweep,
  });
  return adapter as unknown as SqliteAdapter;
}
