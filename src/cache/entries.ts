import type { CacheStore } from './store/contract.ts';
import { secondaryKey, varyNames } from './key.ts';
import type { IncomingHttpHeaders } from 'node:http';
import type CachePolicy from 'http-cache-semantics';

/**
 * How stored responses are laid out in a store (which knows nothing about HTTP):
 *   v:<primary>                the Vary field names of the latest stored response for that URI
 *   o:<primary>\n<secondary>   a stored response: metadata + identity body
 *   e:<object key>\n<coding>   an encoded variant of that body
 *   u:<primary>                set: every key stored for that URI (purge by URL, invalidation)
 *   t:<tag>                    set: every key stored under that tag (purge by tag)
 */

export interface StoredMeta {
  /** http-cache-semantics' serialized policy: request facts, status, response headers, times. */
  policy: CachePolicy.CachePolicyObject;
  tags: string[];
}

interface VaryMeta { vary: string[] }

export interface Found {
  key: string;
  primary: string;
  meta: StoredMeta;
  body: Buffer;
}

export type Lookup =
  | { kind: 'found'; found: Found }
  | { kind: 'uri-miss' }
  | { kind: 'vary-miss' };

const objectKey = (primary: string, secondary: string) => `o:${primary}\n${secondary}`;
export const variantKey = (key: string, coding: string) => `e:${key}\n${coding}`;
const urlSet = (primary: string) => `u:${primary}`;
const tagSet = (tag: string) => `t:${tag}`;

export async function lookup(store: CacheStore, primary: string, headers: IncomingHttpHeaders): Promise<Lookup> {
  const vary = await store.get<VaryMeta>(`v:${primary}`);
  if (!vary) return { kind: 'uri-miss' };
  const key = objectKey(primary, secondaryKey(vary.meta.vary, headers));
  const record = await store.get<StoredMeta>(key);
  if (!record) return { kind: 'vary-miss' };
  return { kind: 'found', found: { key, primary, meta: record.meta, body: record.body } };
}

/** Writes a response and its indexes. Vary `*` never gets here (it is not storable). */
export async function save(store: CacheStore, primary: string, headers: IncomingHttpHeaders, meta: StoredMeta, body: Buffer, ttlMs: number): Promise<string> {
  const names = varyNames(meta.policy.resh.vary);
  const vary = names === '*' ? [] : names;
  const key = objectKey(primary, secondaryKey(vary, headers));
  await store.set(key, { meta, body }, ttlMs);
  await store.set(`v:${primary}`, { meta: { vary } satisfies VaryMeta, body: Buffer.alloc(0) }, ttlMs);
  await index(store, primary, meta.tags, key, ttlMs);
  return key;
}

export async function saveVariant(store: CacheStore, found: Found, coding: string, body: Buffer, ttlMs: number): Promise<void> {
  const key = variantKey(found.key, coding);
  await store.set(key, { meta: {}, body }, ttlMs);
  await index(store, found.primary, found.meta.tags, key, ttlMs);
}

async function index(store: CacheStore, primary: string, tags: readonly string[], key: string, ttlMs: number) {
  await store.addToSet(urlSet(primary), key, ttlMs);
  for (const tag of tags) await store.addToSet(tagSet(tag), key, ttlMs);
}

/** Drops every stored response (all Vary variants and encodings) for a URI; answers how many responses. */
export function purgeUrl(store: CacheStore, primary: string): Promise<number> {
  return dropIndexed(store, urlSet(primary), [`v:${primary}`]);
}

export function purgeTag(store: CacheStore, tag: string): Promise<number> {
  return dropIndexed(store, tagSet(tag), []);
}

/** Deletes what an index set names, the set itself and `also`; counts only stored responses (o: keys). */
async function dropIndexed(store: CacheStore, set: string, also: readonly string[]): Promise<number> {
  const members = await store.members(set);
  await store.delete([...members.filter((m) => !m.startsWith('o:')), ...also, set]);
  return store.delete(members.filter((m) => m.startsWith('o:')));
}

/** Tags from the origin's Cache-Tag (comma-separated) and Surrogate-Key (space-separated). */
export function tagsOf(headers: Record<string, string | string[] | number | undefined>): string[] {
  const tags = new Set<string>();
  const add = (value: unknown, separator: RegExp) => {
    if (value === undefined) return;
    for (const part of (Array.isArray(value) ? value.join(',') : String(value)).split(separator)) {
      const tag = part.trim();
      if (tag !== '' && tag.length <= 256) tags.add(tag);
    }
  };
  add(headers['cache-tag'], /,/);
  add(headers['surrogate-key'], /[\s,]+/);
  return [...tags].slice(0, 64);
}
