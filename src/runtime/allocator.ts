import { readFileSync } from 'node:fs';

/**
 * Which malloc a process runs on. bin/pinned-node (and so `npm start`) preloads jemalloc when the
 * system has it (OUTPOST_MALLOC=system keeps glibc's): under a cache that keeps replacing small
 * bodies, glibc's heap fragments and is never returned to the system, jemalloc's is. Read from the
 * process's memory map, so it says what is loaded, not what was asked for.
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

/** The startup line: which allocator serves, and what to do when it is not jemalloc. */
export function allocatorLine(allocator: Allocator = allocatorOf()): string | null {
  switch (allocator) {
    case 'jemalloc': return 'outpost: memory allocator: jemalloc';
    case 'system': return process.env.OUTPOST_MALLOC === 'system'
      ? 'outpost: memory allocator: the system malloc (OUTPOST_MALLOC=system)'
      : 'outpost: memory allocator: the system malloc; with libjemalloc2 installed, npm start (bin/pinned-node) uses jemalloc, which returns freed memory under a churning cache (README: Install and start)';
    case 'unknown': return null;
  }
}
