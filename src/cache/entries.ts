import type { IncomingHttpHeaders } from 'node:http';
import type { CacheRecord, CacheStore } from './store/contract.ts';
import { flatKey, secondaryKey, varyNames } from './key.ts';
import type { StoredResponse } from './policy.ts';

/**
 * How stored responses are laid out in a store (which knows nothing about HTTP):
 *   o:<primary>\n             the stored response of a URI whose response does not vary (most):
 *                              its plain key, read first by every lookup
 *   v:<primary>                for a URI whose latest stored response varies: the Vary field names
 *   o:<primary>\n<secondary>   a stored response that varies: StoredResponse metadata + identity body
 *   e:<object key>\n<coding>   an encoded variant of that body (metadata: the token naming its bytes)
 *   u:<primary>                set: the keys stored for that URI that vary (purge by URL, invalidation);
 *                              a response that does not vary has keys derived from the URI alone
 *                              (plainKeys), so most URIs need no set: a Set, its entry and key less each
 *   t:<tag>                    set: every key stored under that tag (purge by tag)
 */

interface VaryMeta {
  readonly vary: readonly string[];
  /** When a URI's responses vary: until when (ms since the epoch) the longest-kept of them is. */
  readonly until?: number;
}
export interface VariantMeta { token: string }

export interface Found {
  key: string;
  primary: string;
  meta: StoredResponse;
  body: Buffer;
}

export type Lookup =
  | { kind: 'found'; found: Found }
  | { kind: 'uri-miss' }
  /** `key`: the variant this request would find (its flights are keyed by it: stage.ts). */
  | { kind: 'vary-miss'; key: string };

/** The request fields a stored response's Vary index names (Vary `*` is never stored). */
const indexedNames = (meta: StoredResponse): readonly string[] => {
  const names = varyNames(meta.headers.vary);
  return names === '*' ? [] : names;
};

const sameNames = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((name, i) => name === b[i]);

/** Every coding a variant may be stored under. */
const CODINGS = ['br', 'zstd', 'gzip'] as const;

/** The body of a Vary index: one shared empty Buffer (it has no bytes to change), not an ArrayBuffer per stored URI. */
const NO_BODY = Buffer.alloc(0);

/** Nothing stored for the URI (one object for every such answer). */
export const URI_MISS: Lookup = { kind: 'uri-miss' };

export const objectKey = (primary: string, secondary: string) => flatKey('o:', primary, '\n', secondary);
export const variantKey = (key: string, coding: string) => flatKey('e:', key, '\n', coding);
const urlSet = (primary: string) => flatKey('u:', primary);
const tagSet = (tag: string) => flatKey('t:', tag);
const varyKey = (primary: string) => flatKey('v:', primary);

/** The key of a URI's response that does not vary (its secondary key is empty), and of its codings. */
const plainKey = (primary: string) => objectKey(primary, '');
/**
 * The key a fetch for `found`'s request flies under (stage.ts): its URI, or its variant when the
 * URI varies, as a vary-miss's `key` (a validation of one variant says nothing about another's).
 */
export const flightKeyOf = (found: Found): string => (found.key === plainKey(found.primary) ? found.primary : found.key);
const plainKeys = (primary: string) => {
  const key = plainKey(primary);
  return { object: key, variants: CODINGS.map((coding) => variantKey(key, coding)) };
};

/**
 * The stored response for this request, or which kind of miss (RFC 9211 fwd=uri-miss / vary-miss).
 * The plain key and the Vary index are read together: a response that does not vary is found, and
 * a URI never stored is known a miss, in one round trip to a shared tier (Redis pipelines the two
 * reads, the node tier sends them as one message); the index is used only when there is no plain
 * response. It is a vary-miss only when the URI's stored responses vary and another variant could
 * be there: a Vary index left behind by a purge or an eviction is a uri-miss.
 */
export async function lookup(store: CacheStore, primary: string, headers: IncomingHttpHeaders): Promise<Lookup> {
  const plain = plainKey(primary);
  const [record, vary] = await Promise.all([store.get<StoredResponse>(plain), store.get<VaryMeta>(varyKey(primary))]);
  if (record) return foundAt(primary, plain, record);
  if (!varies(vary)) return URI_MISS;
  const key = objectKey(primary, secondaryKey(vary.meta.vary, headers));
  return lookedUp(primary, key, await store.get<StoredResponse>(key));
}

/** An index that names fields (one an earlier version wrote for a URI that does not vary names none). */
const varies = (vary: CacheRecord<VaryMeta> | undefined): vary is CacheRecord<VaryMeta> => vary !== undefined && vary.meta.vary.length > 0;

const foundAt = (primary: string, key: string, record: CacheRecord<StoredResponse>): Lookup =>
  ({ kind: 'found', found: { key, primary, meta: record.meta, body: record.body } });

/** The varying response read under `key`, or a vary-miss. */
const lookedUp = (primary: string, key: string, record: CacheRecord<StoredResponse> | undefined): Lookup =>
  record ? foundAt(primary, key, record) : { kind: 'vary-miss', key };

/**
 * The lookup answered without waiting, where the store can: both records held in this process, or
 * a miss in a store that keeps nothing elsewhere (`holdsAll`). Undefined: a read must go out.
 */
export function lookupNow(store: CacheStore, primary: string, headers: IncomingHttpHeaders): Lookup | undefined {
  const getNow = store.getNow;
  if (getNow === undefined) return undefined;
  const plain = plainKey(primary);
  const record = getNow.call(store, plain) as CacheRecord<StoredResponse> | undefined;
  if (record !== undefined) return foundAt(primary, plain, record);
  const vary = getNow.call(store, varyKey(primary)) as CacheRecord<VaryMeta> | undefined;
  if (!varies(vary)) return store.holdsAll === true ? URI_MISS : undefined;
  const key = objectKey(primary, secondaryKey(vary.meta.vary, headers));
  const varied = getNow.call(store, key) as CacheRecord<StoredResponse> | undefined;
  if (varied === undefined && store.holdsAll !== true) return undefined;
  return lookedUp(primary, key, varied);
}

/**
 * A check, answered without waiting, that the store still holds `found` as it was read and that a
 * lookup for its URI would find it again for any request (no Vary, the same record). Undefined
 * where the store cannot answer that way (no memory tier).
 */
export function holderOf(store: CacheStore, found: Found): (() => boolean) | undefined {
  const getNow = store.getNow?.bind(store);
  if (getNow === undefined) return undefined;
  const { key, meta, body } = found;
  // A response that varies is not what every request finds.
  if (key !== plainKey(found.primary)) return () => false;
  // The same body too: the memory store moves a record's body out of a mostly emptied slab
  // (body-arena.ts), and a reply kept with the old bytes would hold the old slab.
  return () => {
    const record = getNow<StoredResponse>(key);
    return record !== undefined && record.meta === meta && record.body === body;
  };
}

/** A response to write: its URI, the request it answered (for the Vary key), what to keep and for how long. */
export interface NewEntry {
  readonly primary: string;
  readonly requestHeaders: IncomingHttpHeaders;
  readonly meta: StoredResponse;
  readonly body: Buffer;
  readonly ttlMs: number;
  /** The time the TTL counts from (the engine's clock). */
  readonly now: number;
}

/** Deletes what a write replaces; nobody needs to know how many there were. */
const discard = (store: CacheStore, keys: readonly string[]): Promise<unknown> =>
  store.discard !== undefined ? store.discard(keys) : store.delete(keys);

/** Writes a response and its indexes; answers its key. Vary `*` never gets here (it is not storable). */
export async function save(store: CacheStore, { primary, requestHeaders: headers, meta, body, ttlMs, now }: NewEntry): Promise<string> {
  const vary = indexedNames(meta);
  const key = objectKey(primary, secondaryKey(vary, headers));
  // Codings made from a body this one replaces are other bytes: they go with it; and a response
  // that does not vary replaces the URI's varying ones (their index goes). One delete, one round trip.
  const replaced = CODINGS.map((coding) => variantKey(key, coding));
  if (vary.length === 0) replaced.push(varyKey(primary));
  await discard(store, replaced);
  await store.set(key, { meta, body }, ttlMs);
  if (vary.length > 0) {
    await keepVaryIndex(store, primary, vary, ttlMs, now);
    // A response that did not vary would be preferred to the index: it goes.
    const plain = plainKeys(primary);
    await discard(store, [plain.object, ...plain.variants]);
  }
  await index(store, { primary, tags: meta.tags, key, object: key, ttlMs });
  return key;
}

/**
 * Writes the Vary index of a URI whose responses vary, so that it lives as long as the responses it
 * leads to: it keeps until when the longest-kept of them is, and a response kept for a shorter time
 * (another language's, or a refresh of one) never shortens it, else the others would be missed
 * while still stored. `current`: the index as stored now, when the caller has read it.
 */
async function keepVaryIndex(store: CacheStore, primary: string, vary: readonly string[], ttlMs: number, now: number, current?: CacheRecord<VaryMeta>): Promise<void> {
  current ??= await store.get<VaryMeta>(varyKey(primary));
  const until = Math.max(now + ttlMs, current?.meta.until ?? 0);
  await store.set(varyKey(primary), { meta: { vary, until } satisfies VaryMeta, body: NO_BODY }, until - now);
}

/**
 * Rewrites a stored response's metadata in place (a 304 refresh, a soft purge): `found.meta` is the
 * new one, kept `ttlMs` from `now`. So is what finds a varying one, the URI's Vary index (it was
 * written with the first response's lifetime: past that, lookups missed a response refreshed since
 * and fetched it whole again), as far as the index is this response's: the names it varies by are
 * those the index holds.
 * Its body is the same, so are the codings made from it: they are kept as long as it is (else they
 * would be made again, Brotli 11 included).
 */
export async function rewrite(store: CacheStore, found: Found, ttlMs: number, now: number): Promise<void> {
  await store.set(found.key, { meta: found.meta, body: found.body }, ttlMs);
  await index(store, { primary: found.primary, tags: found.meta.tags, key: found.key, object: found.key, ttlMs });
  const vary = indexedNames(found.meta);
  if (vary.length > 0) {
    const indexed = await store.get<VaryMeta>(varyKey(found.primary));
    if (indexed !== undefined && sameNames(indexed.meta.vary, vary)) await keepVaryIndex(store, found.primary, vary, ttlMs, now, indexed);
  }
  // Read together: one round trip to a shared tier, not one per coding.
  const codings = CODINGS.map((coding) => variantKey(found.key, coding));
  const variants = await Promise.all(codings.map((key) => store.get<VariantMeta>(key)));
  await Promise.all(variants.map((variant, i) => (variant === undefined ? undefined : store.set(codings[i], variant, ttlMs))));
}

/** An encoded body made from a stored response, and the token naming its bytes. */
export interface NewVariant {
  readonly coding: string;
  readonly body: Buffer;
  readonly token: string;
  readonly ttlMs: number;
}

export async function saveVariant(store: CacheStore, found: Found, { coding, body, token, ttlMs }: NewVariant): Promise<void> {
  const key = variantKey(found.key, coding);
  await store.set(key, { meta: { token } satisfies VariantMeta, body }, ttlMs);
  await index(store, { primary: found.primary, tags: found.meta.tags, key, object: found.key, ttlMs });
}

interface IndexEntry {
  readonly primary: string;
  readonly tags: readonly string[];
  readonly key: string;
  /** The stored response `key` belongs to (itself, or the one it is a coding of). */
  readonly object: string;
  readonly ttlMs: number;
}

async function index(store: CacheStore, { primary, tags, key, object, ttlMs }: IndexEntry) {
  if (object !== plainKey(primary)) await store.addToSet(urlSet(primary), key, ttlMs);
  for (const tag of tags) await store.addToSet(tagSet(tag), key, ttlMs);
}

/** The stored responses (o: keys) a URL or a tag names; for a URL, its plain key whether stored or not. */
export async function objectsOf(store: CacheStore, target: { primary: string } | { tag: string }): Promise<string[]> {
  const members = await store.members('primary' in target ? urlSet(target.primary) : tagSet(target.tag));
  const objects = members.filter((m) => m.startsWith('o:'));
  return 'primary' in target ? [...new Set([plainKey(target.primary), ...objects])] : objects;
}

/** Drops every stored response (all Vary variants and encodings) for a URI; answers how many responses. */
export function purgeUrl(store: CacheStore, primary: string): Promise<number> {
  const plain = plainKeys(primary);
  return dropIndexed(store, urlSet(primary), [varyKey(primary), ...plain.variants], [plain.object]);
}

export function purgeTag(store: CacheStore, tag: string): Promise<number> {
  return dropIndexed(store, tagSet(tag), [], []);
}

/** The primary key an object key belongs to. */
export const primaryOf = (objectKeyValue: string): string => objectKeyValue.slice(2, objectKeyValue.indexOf('\n'));

/**
 * Deletes what an index set names, the set itself, `also` and `objects`; counts only stored
 * responses (o: keys), each once.
 */
async function dropIndexed(store: CacheStore, set: string, also: readonly string[], objects: readonly string[]): Promise<number> {
  const members = await store.members(set);
  await store.delete([...members.filter((m) => !m.startsWith('o:')), ...also, set]);
  return store.delete([...new Set([...objects, ...members.filter((m) => m.startsWith('o:'))])]);
}

/** Most responses have no tags: one shared empty list, not an array per stored record. */
const NO_TAGS: readonly string[] = Object.freeze([]);

/** Tags from the origin's Cache-Tag (comma-separated) and Surrogate-Key (space-separated). */
export function tagsOf(headers: Readonly<Record<string, string | string[] | number | undefined>>): readonly string[] {
  if (headers['cache-tag'] === undefined && headers['surrogate-key'] === undefined) return NO_TAGS;
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
