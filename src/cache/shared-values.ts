/**
 * One string for each stored field value that many responses share.
 *
 * A stored response keeps its fields as strings, each a heap object of its own: a full 512 MB cache
 * of the bench's page held 13,900 copies of "text/html; charset=utf-8" and as many of its
 * Cache-Control, one per record, and every full collection marks each of them (a cache of small
 * API answers holds many more records, so many more copies). The values of the fields below
 * repeat across responses (one Content-Type for a whole API, one Date per second of misses, one
 * Last-Modified per deploy), so a record keeps the table's copy of an equal value instead of its
 * own. The table is bounded (`maxValues` values of at most `maxLength` characters) and starts over
 * when full: a field whose values never repeat costs a look-up and nothing more.
 */

/** Fields whose values commonly repeat from one response to the next. */
const SHARED_FIELDS: ReadonlySet<string> = new Set([
  'content-type', 'cache-control', 'vary', 'content-encoding', 'content-language', 'date', 'last-modified', 'expires',
  'accept-ranges', 'server', 'x-powered-by', 'via', 'access-control-allow-origin', 'access-control-allow-credentials',
  'access-control-allow-methods', 'access-control-allow-headers', 'access-control-expose-headers', 'access-control-max-age',
  'timing-allow-origin', 'strict-transport-security', 'content-security-policy', 'x-content-type-options', 'x-frame-options',
  'x-xss-protection', 'referrer-policy', 'permissions-policy', 'cross-origin-opener-policy', 'cross-origin-embedder-policy',
  'cross-origin-resource-policy', 'surrogate-control', 'cdn-cache-control', 'pragma',
]);

export interface ValueTable {
  /** `value` itself, or the equal string the table holds (then `value` can be let go). */
  shared(value: string): string;
  readonly size: number;
}

export function createValueTable({ maxValues = 4096, maxLength = 1024 } = {}): ValueTable {
  const values = new Map<string, string>();
  return {
    shared(value) {
      if (value.length > maxLength) return value;
      const held = values.get(value);
      if (held !== undefined) return held;
      if (values.size >= maxValues) values.clear();
      values.set(value, value);
      return value;
    },
    get size() { return values.size; },
  };
}

const table = createValueTable();

/** Values the process's table holds now (for tests and curiosity). */
export const sharedValueCount = (): number => table.size;

/** The value to store for field `name`: the shared copy for the fields in SHARED_FIELDS, else `value`. */
export function storedValue(name: string, value: string | string[]): string | string[] {
  if (typeof value !== 'string' || !SHARED_FIELDS.has(name)) return value;
  return table.shared(value);
}
