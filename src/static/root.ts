import { closeSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { readlink, realpath, type FileHandle } from 'node:fs/promises';

/**
 * The static root on disk: the configured root, index and mount path checked once (a message
 * naming the key when they are wrong), and how to learn where an opened file really is (the
 * static stage refuses what leads out of the root: serve.ts).
 */

export type RealpathOf = (handle: FileHandle, file: string) => Promise<string>;

/**
 * How to learn where an opened file really is. Linux: /proc/self/fd/N names the descriptor itself,
 * so the check is on the file that will be sent (no race with a symlink swapped after open).
 * Elsewhere: realpath of the name, a moment after open.
 */
export function realpathStrategy(root: string): RealpathOf {
  try {
    const fd = openSync(root, 'r');
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === root) return (handle) => readlink(`/proc/self/fd/${handle.fd}`);
    } finally {
      closeSync(fd);
    }
  } catch {
    // no procfs: fall back below
  }
  return (_handle, file) => realpath(file);
}

export function resolveRoot(root: string): string {
  let real: string;
  try {
    real = realpathSync(root);
  } catch (err) {
    throw new TypeError(`static.root: cannot resolve ${JSON.stringify(root)}: ${(err as Error).message}`);
  }
  if (!statSync(real).isDirectory()) throw new TypeError(`static.root: ${JSON.stringify(root)} is not a directory`);
  return real;
}

export function checkIndex(index: string): string {
  if (index === '' || index === '.' || index === '..' || /[/\\\0]/.test(index)) {
    throw new TypeError(`static.index: expected a file name, got ${JSON.stringify(index)}`);
  }
  return index;
}

/** '/' → '', '/assets/' and '/assets' → '/assets'. */
export function mountBase(mountPath: string): string {
  if (!mountPath.startsWith('/')) {
    throw new TypeError(`mountPath: expected a path prefix starting with "/", got ${JSON.stringify(mountPath)}`);
  }
  return mountPath.replace(/\/+$/, '');
}
