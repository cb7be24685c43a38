import { stat as statFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { createSharedWork } from '../shared-work.ts';

/**
 * Small files kept in memory, like nginx's open_file_cache but with the bytes: a hit costs no
 * open/fstat/read/close round trips through the thread pool (those were 40 % of the static path's
 * CPU). An entry is trusted for `validMs`, then checked with one stat(): same device, inode, size
 * and mtime, or it is dropped and the file is opened (and checked against the root) again. A file
 * swapped for a symlink has another inode, so it never slips past the open-time checks.
 *
 * One stat per file at a time: the requests that find an entry out of its window while its check
 * is under way wait for that check's answer. Each asking for its own made a herd at every window's
 * end, as many stats through the thread pool as requests in flight (h2load -c100 -m10 on a kept
 * file: 4,985 stats in 150,000 requests, ~620 a second, where one a second is the design).
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

export interface FileCacheOptions {
  readonly maxSize: number;
  readonly maxFileSize: number;
  readonly validMs?: number;
  readonly now?: () => number;
  /** The stat of a re-check (node:fs/promises' by default; tests count the calls). */
  readonly stat?: (file: string) => Promise<Stats>;
}

export function createFileCache(options: FileCacheOptions): FileCache {
  const { maxSize, maxFileSize } = options;
  const validMs = options.validMs ?? 1000;
  const now = options.now ?? Date.now;
  const stat = options.stat ?? ((file: string) => statFile(file));
  const files = new Map<string, CachedFile>();
  /** Re-checks under way, by file: what the requests that find the entry out of its window wait for. */
  const checks = createSharedWork<CachedFile | undefined>();
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

  /** The entry if the file is still the one it holds (one stat), else undefined with the entry dropped. */
  async function recheck(file: string, entry: CachedFile): Promise<CachedFile | undefined> {
    let current: Stats | undefined;
    try {
      current = await stat(file);
    } catch {
      current = undefined;
    }
    // Kept again or dropped while the stat ran: that newer state stands, and this entry is not it.
    if (files.get(file) !== entry) return undefined;
    const s = entry.stats;
    if (current === undefined || current.ino !== s.ino || current.dev !== s.dev || current.size !== s.size || current.mtimeMs !== s.mtimeMs) {
      drop(file);
      return undefined;
    }
    entry.checkedAt = now();
    files.delete(file); // most recently used goes last
    files.set(file, entry);
    return entry;
  }

  return {
    maxFileSize,
    get(file) {
      const entry = files.get(file);
      if (!entry) return Promise.resolve(undefined);
      if (trusted(entry)) return Promise.resolve(entry);
      return checks.run(file, () => recheck(file, entry));
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
