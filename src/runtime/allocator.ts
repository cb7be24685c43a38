import { readFileSync } from 'node:fs';

/**
 * Which malloc a process runs on: glibc's, or jemalloc when bin/pinned-node (and so `npm start`)
 * preloaded it because OUTPOST_MALLOC asked for it (see bin/pinned-node for what each costs). Read
 * from the process's memory map, so it says what is loaded, not what was asked for.
 */
export type Allocator = 'jemalloc' | 'system' | 'unknown';

export function allocatorOf(pid: number | 'self' = 'self'): Allocator {
  let maps: string;
  try {
    maps = readFileSync(`/proc/${pid}/maps`, 'latin1');
  } catch {
    return 'unknown'; // not Linux, or the process is gone
  }
  return /\/libjemalloc[^/\n]*\.so/.test(maps) ? 'jemalloc' : 'system';
}

/**
 * The startup line about the allocator: which one serves when jemalloc was asked for, and a
 * warning when it was asked for but is not loaded (a process started without bin/pinned-node).
 * Nothing for the default.
 */
export function allocatorLine(allocator: Allocator = allocatorOf(), asked: string | undefined = process.env.OUTPOST_MALLOC): { warning: boolean; text: string } | null {
  if (allocator === 'jemalloc') return { warning: false, text: 'outpost: memory allocator: jemalloc' };
  if (asked !== undefined && asked !== 'system' && allocator === 'system') {
    return { warning: true, text: `outpost: warning: OUTPOST_MALLOC=${asked} but this process runs on the system malloc: jemalloc is preloaded only by bin/pinned-node (npm start)` };
  }
  return null;
}
