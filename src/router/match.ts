/**
 * Host and path matching, pure and precomputed. Sites match by exact host, then by the longest
 * wildcard suffix (`*.example.com`), then `*`. Routes match by the longest path prefix.
 */

export interface HostTable<T> {
  lookup(host: string): T | undefined;
}

export function hostTable<T>(entries: ReadonlyArray<{ hosts: readonly string[]; value: T }>): HostTable<T> {
  const exact = new Map<string, T>();
  const suffixes: Array<{ suffix: string; value: T }> = [];
  let any: T | undefined;
  for (const { hosts, value } of entries) {
    for (const host of hosts) {
      if (host === '*') any ??= value;
      else if (host.startsWith('*.')) suffixes.push({ suffix: host.slice(1), value }); // ".example.com"
      else if (!exact.has(host)) exact.set(host, value);
    }
  }
  suffixes.sort((a, b) => b.suffix.length - a.suffix.length);
  return {
    lookup(host) {
      const hit = exact.get(host);
      if (hit !== undefined) return hit;
      for (const { suffix, value } of suffixes) if (host.endsWith(suffix) && host.length > suffix.length) return value;
      return any;
    },
  };
}

/** `/api/` matches `/api/x`; `/api` matches `/api` and `/api/x`, never `/apix`. */
export function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith('/') || path.length === prefix.length || path.charCodeAt(prefix.length) === 47 /* '/' */;
}

export interface PathTable<T> {
  lookup(path: string): T | undefined;
}

export function pathTable<T>(entries: ReadonlyArray<{ prefix: string; value: T }>): PathTable<T> {
  const sorted = [...entries].sort((a, b) => b.prefix.length - a.prefix.length);
  return {
    lookup(path) {
      for (const { prefix, value } of sorted) if (prefixMatches(prefix, path)) return value;
      return undefined;
    },
  };
}
