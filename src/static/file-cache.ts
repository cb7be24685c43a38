import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/**
 * Small files kept in memory, like nginx's open_file_cache but with the bytes: a hit costs no
 * open/fstat/read/close round trips through the thread pool (those were 40 % of the static path's
 * CPU). An entry is trusted for `validMs`, then checked with one stat(): same device, inode, size
 * and mtime, or it is dropped and the file is opened (and checked against the root) again. A file
 * swapped for a symlink has another inode, so it never slips past the open-time checks.
 */
export interface CachedFile {
  readonly body: Buffer;
  readonly stats: Pick<Stats, 'size' | 'mtimeMs' | 'ino' | 'dev'>;
  checkedAt: number;
}

export interface FileCache {
  /** A kept file still valid, or undefined (then open it and `keep` it). */
  get(file: string): Promise<CachedFile | undefined>;
  /** Keeps the file's bytes; answers the entry kept, or undefined when it is not kept (too large). */
  keep(file: string, body: Buffer, stats: Stats): CachedFile | undefined;
  /** Whether `entry` is still what get() would answer for `file` without a stat (see Reuse). */
  holds(file: string, entry: CachedFile): boolean;
  /** Files larger than this are streamed, never kept. */
  readonly maxFileSize: number;
}

export function createFileCache(options: { maxSize: number; maxFileSize: number; validMs?: number; now?: () => number }): FileCache {
  const { maxSize, maxFileSize } = options;
  const validMs = options.validMs ?? 1000;
  const now = options.now ?? Date.now;
  const files = new Map<string, CachedFile>();
  let used = 0;

  const drop = (file: string) => {
    const entry = files.get(file);
    if (entry) {
      files.delete(file);
      used -= entry.body.length;
    }
  };

  /** Checked recently enough to be served without a stat. */
  const trusted = (entry: CachedFile) => now() - entry.checkedAt < validMs;

  return {
    maxFileSize,
    async get(file) {
      const entry = files.get(file);
      if (!entry) return undefined;
      if (trusted(entry)) return entry;
      let current: Stats;
      try {
        current = await stat(file);
      } catch {
        drop(file);
        return undefined;
      }
      const s = entry.stats;
      if (current.ino !== s.ino || current.dev !== s.dev || current.size !== s.size || current.mtimeMs !== s.mtimeMs) {
        drop(file);
        return undefined;
      }
      entry.checkedAt = now();
      files.delete(file); // most recently used goes last
      files.set(file, entry);
      return entry;
    },
    holds: (file, entry) => files.get(file) === entry && trusted(entry),
    keep(file, body, stats) {
      if (body.length > maxFileSize || body.length > maxSize) return undefined;
      drop(file);
      for (const key of files.keys()) {
        if (used + body.length <= maxSize) break;
        drop(key);
      }
      const entry: CachedFile = { body, stats: { size: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino, dev: stats.dev }, checkedAt: now() };
      files.set(file, entry);
      used += body.length;
      return entry;
    },
  };
}
