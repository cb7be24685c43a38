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

/**
 * The path a route is chosen by: percent-escapes decoded, repeated slashes merged and dot-segments
 * removed (RFC 3986 §6.2.2, §5.2.4), as nginx normalizes a URI before it matches a location. A
 * route's guard or limits must not be stepped around by another spelling of its path that the
 * origin reads as the same (`/%61dmin/`, `//admin/`, `/x/../admin/`: before 2026-12-05 each went
 * by the catch-all route). The target the origin gets is left as the client sent it. Case is
 * kept: paths are case-sensitive (RFC 3986 §6.2.2.1), and so is nginx's matching.
 */
export function routingPath(path: string): string {
  // Most paths have nothing to normalize: three scans of a short string, no copy.
  if (path.indexOf('%') === -1 && path.indexOf('//') === -1 && path.indexOf('/.') === -1) return path;
  const segments: string[] = [];
  const decoded = decodedEscapes(path);
  const parts = decoded.split('/');
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i];
    const last = i === parts.length - 1;
    if (part === '' && !last) continue; // a repeated slash
    if (part === '.') {
      if (last) segments.push('');
      continue;
    }
    if (part === '..') {
      segments.pop(); // above the root: stays at the root (§5.2.4)
      if (last) segments.push('');
      continue;
    }
    segments.push(part);
  }
  return `/${segments.join('/')}`;
}

/** Every `%XX` escape as its byte (read as Latin-1: a route prefix is compared byte for byte); a malformed one stays. */
function decodedEscapes(path: string): string {
  if (path.indexOf('%') === -1) return path;
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}
