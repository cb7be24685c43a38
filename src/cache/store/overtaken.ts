/**
 * Reads from elsewhere (a shared tier, another worker) and the drops that overtake them. A read's
 * answer and a drop of the same key can arrive together, the drop handled before the read's
 * continuation: the read then holds what was just replaced. It may be served once (it was what
 * was stored when read) but must not be kept, or this process would serve it until it expires.
 */
import { createSharedWork } from '../../shared-work.ts';

export interface ReadGuard {
  /** Runs `read` for `key`; `overtaken`: a drop of the key arrived meanwhile. */
  read<T>(key: string, read: () => Promise<T>): Promise<{ value: T; overtaken: boolean }>;
  /**
   * `work` for `key` (a guarded read and what is done with its answer), shared with the callers
   * that ask for the same key before it settles: the requests that miss here together make one
   * read from elsewhere and keep one copy, not one each (every hot object once its copy here has
   * ended, with as many reads as requests in flight). A drop of the key ends the sharing: a
   * caller after it runs its own.
   */
  shared<T>(key: string, work: () => Promise<T>): Promise<T>;
  /** Drops arrived for these keys (`*`: all), or writes made here: reads under way are overtaken, and no longer shared. */
  dropped(keys: readonly string[] | '*'): void;
}

export function createReadGuard(): ReadGuard {
  const reading = new Map<string, number>();
  const overtaken = new Set<string>();
  const sharing = createSharedWork<unknown>();
  return {
    async read(key, read) {
      reading.set(key, (reading.get(key) ?? 0) + 1);
      try {
        const value = await read();
        return { value, overtaken: overtaken.has(key) };
      } finally {
        const left = reading.get(key)! - 1;
        if (left > 0) reading.set(key, left);
        else { reading.delete(key); overtaken.delete(key); }
      }
    },
    shared: <T>(key: string, work: () => Promise<T>) => sharing.run(key, work) as Promise<T>,
    dropped(keys) {
      for (const key of keys === '*' ? reading.keys() : keys) if (reading.has(key)) overtaken.add(key);
      sharing.forget(keys);
    },
  };
}
