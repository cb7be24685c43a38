import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * One of Outpost's native helpers (native/, built by `npm ci` through native/build.sh), or why it
 * is not there: not built, or a file that does not load. The callers check its exports.
 */
export function loadAddon<T>(path: string, compiler = 'a C compiler'): { addon: T; why?: undefined } | { addon: null; why: string } {
  if (!existsSync(path)) return { addon: null, why: `the native helper is not built (${path}; npm ci builds it with ${compiler})` };
  try {
    return { addon: createRequire(import.meta.url)(path) as T };
  } catch (error) {
    return { addon: null, why: `the native helper did not load: ${(error as Error).message.split('\n')[0]}` };
  }
}
