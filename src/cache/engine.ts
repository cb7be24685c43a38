import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Encoding, StoredVariant, Variants } from '../pipeline/context.ts';
import type { ConditionalTarget } from '../http/conditional.ts';
import type { CacheStore, StoreUsage } from './store/contract.ts';
import { primaryKey } from './key.ts';
import { flightKeyOf, holderOf, lookup, lookupNow, objectsOf, primaryOf, purgeTag, purgeUrl, rewrite, save, saveVariant, variantKey, type Found, type Lookup, type NewVariant, type VariantMeta } from './entries.ts';
import { currentAge, initialAge, responseFacts, retentionMs, type PolicyOptions, type ResponseFacts, type StoredResponse } from './policy.ts';
import { createFlights, type Flights } from './flights.ts';
import type { NodeFlights } from './node-flights.ts';
import { createHitForMiss, HIT_FOR_MISS, type HitForMiss } from './hit-for-miss.ts';
import type { PurgeTarget } from '../observability/admin.ts';
import { onceASecond } from '../timers.ts';

/**
 * The cache engine: one per node, made once by the composition root and shared by every route's
 * cache stage and the admin API. It owns the state (store, flights in the air, hit-for-miss,
 * counters) and the store operations; what to do with a request is the stage's business
 * (stage.ts), what the protocol allows is the policy's (policy.ts, decide.ts).
 *
 * Store failures never fail a response: a failed read is a miss, a failed write is "not stored",
 * each counted and logged at most once a second (onError).
 */

export interface CacheEngineOptions {
  readonly store: CacheStore;
  /** Larger responses stream through uncached. */
  readonly maxObjectSize: number;
  /** ms a stale response may still be served when the origin fails (Varnish's grace). */
  readonly grace: number;
  /** RFC 9213 targeted fields obeyed, first present wins (lower-case). */
  readonly targeted: readonly string[];
  /** Response fields stored (they drive the cache) but never sent to clients (lower-case). */
  readonly hideHeaders: readonly string[];
  /** Name in Cache-Status. */
  readonly name?: string;
  /** The clock (ms since the epoch); tests inject one. */
  readonly now?: () => number;
  readonly onError?: (error: unknown, where: string) => void;
  /** With several workers on the node tier: misses collapsed across workers (node-flights.ts). */
  readonly nodeFlights?: NodeFlights;
}

export interface CacheStats {
  hits: number;
  misses: number;
  stores: number;
  storeErrors: number;
  coalesced: number;
  revalidations: number;
  staleServed: number;
}

/** A stored response as the request path uses it: parsed once per stored record. */
export interface StoredView {
  readonly facts: ResponseFacts;
  /** Freshness lifetime in seconds, shortened by a soft purge. */
  readonly lifetime: number;
  readonly initialAge: number;
  /** The stored fields a client may see (hidden ones removed), without Age: read-only (it may be the stored fields themselves). */
  readonly clientHeaders: Readonly<OutgoingHttpHeaders>;
  /** What a client's preconditions compare with: the ETag, and Last-Modified or else Date (RFC 9111 §4.3.2). */
  readonly validators: ConditionalTarget;
}


export interface CacheEngine {
  readonly name: string;
  readonly now: () => number;
  readonly policy: PolicyOptions;
  readonly graceSeconds: number;
  readonly maxObjectSize: number;
  readonly hidden: ReadonlySet<string>;
  readonly flights: Flights;
  /** The node's turns at a URI, when workers share the node tier. */
  readonly nodeFlights: NodeFlights | undefined;
  readonly hitForMiss: HitForMiss;
  readonly stats: CacheStats;
  readonly storeName: string;
  /** Bytes and records this process's store holds, and its evictions, where the store can tell. */
  usage(): StoreUsage | undefined;
  lookup(primary: string, headers: IncomingHttpHeaders): Promise<Lookup>;
  /** The lookup without waiting, where the store can answer so (entries.ts lookupNow); undefined: call lookup. */
  lookupNow(primary: string, headers: IncomingHttpHeaders): Lookup | undefined;
  view(found: Found): StoredView;
  /** A check that the store still holds `found` unchanged and unvaried, answered without waiting (see holderOf); undefined: it cannot tell. */
  holder(found: Found): (() => boolean) | undefined;
  age(found: Found, view: StoredView): number;
  /** Stores a response; answers the stored record, or undefined when it was not stored. */
  save(primary: string, requestHeaders: IncomingHttpHeaders, meta: StoredResponse, body: Buffer): Promise<Found | undefined>;
  /** Replaces a stored response's metadata (after a 304). */
  refresh(found: Found, meta: StoredResponse): Promise<Found>;
  /**
   * The record's variants, kept with it so a hit builds no closures; `forOneReply` (a miss): made
   * for this reply only, so a record that is never read again keeps none; with `justStored` (this
   * process has just saved it) it asks the store for no coding (see RecordVariants.absent).
   */
  variants(found: Found, forOneReply?: boolean, justStored?: boolean): Variants;
  /** Drops what a successful unsafe request invalidates (RFC 9111 §4.4). */
  invalidate(primaries: readonly string[]): Promise<void>;
  /**
   * Read-only, for the admin API's explain (never on the request path): what is stored for this
   * request, the stored codings with their sizes, and whether the URI is known uncacheable or
   * being fetched.
   */
  inspect(primary: string, headers: IncomingHttpHeaders): Promise<Inspection>;
  /** Admin purge; `soft` marks stale instead of dropping. Answers how many stored responses. */
  purge(target: PurgeTarget, soft: boolean): Promise<number>;
  close(): Promise<void>;
}

export interface Inspection {
  readonly lookup: Lookup;
  /** For a stored response: its parsed view and current age (seconds). */
  readonly view?: StoredView;
  readonly age?: number;
  /** Stored bodies: identity first, then each coding made from it. */
  readonly codings: ReadonlyArray<{ readonly coding: string; readonly bytes: number; readonly token?: string }>;
  /** Why the URI is known uncacheable (hit-for-miss), while it is. */
  readonly uncacheable: string | undefined;
  /** An origin fetch for this URI is in flight. */
  readonly inFlight: boolean;
}

/** The same stored response: the same record (memory store), or one received at the same moments (a store that parses records anew). */
const sameResponse = (a: StoredResponse, b: StoredResponse): boolean =>
  a === b || (a.responseTime === b.responseTime && a.requestTime === b.requestTime && a.status === b.status);

/**
 * Whether the record stored now holds the bytes `found` had: the same response, or the same body
 * under fields a 304 refreshed since (RFC 9111 §4.3.4 updates the fields, not the content; the
 * memory store keeps the very Buffer, which `equals` answers without comparing, a store that
 * parses records anew an equal one).
 */
const sameBytes = (current: { meta: StoredResponse; body: Buffer }, found: Found): boolean =>
  sameResponse(current.meta, found.meta) || current.body.equals(found.body);

/** One bit per coding a record's variants may have (RecordVariants.absent). */
const CODING_BITS: Readonly<Record<Encoding, number>> = { br: 1, zstd: 2, gzip: 4 };
const ALL_CODINGS = 7;

/**
 * A value worked out once per stored record (its parsed view, its variants), kept on the record's
 * metadata object under a key of its own, not in a WeakMap: V8 marks WeakMap entries (ephemerons)
 * in the atomic pause of every full GC, and with an entry or two per stored response that was 29
 * of the 37 ms pause on the miss benchmark, and its p99. Non-enumerable, so a copy (`{ ...meta }`)
 * and JSON (Redis) leave it behind: a copy is another record, with its own. A frozen meta gets none.
 */
function recordMemo<T extends object>(name: string): { get(meta: StoredResponse): T | undefined; set(meta: StoredResponse, value: T): void } {
  const key = Symbol(name);
  return {
    get: (meta) => (meta as { [key]?: T })[key],
    set: (meta, value) => {
      if (Object.isExtensible(meta)) Object.defineProperty(meta, key, { value });
    },
  };
}

/** RFC 9111 §4.2.2 suggests at most 10 % of the time since Last-Modified. */
const HEURISTIC_FRACTION = 0.1;

export function createCacheEngine(options: CacheEngineOptions): CacheEngine {
  const { store, maxObjectSize } = options;
  if (!Number.isSafeInteger(maxObjectSize) || maxObjectSize <= 0) throw new TypeError(`cache.maxObjectSize: expected a positive byte count, got ${maxObjectSize}`);
  if (!Number.isFinite(options.grace) || options.grace < 0) throw new TypeError(`cache.grace: expected a duration ≥ 0, got ${options.grace}`);
  const now = options.now ?? Date.now;
  const name = options.name ?? 'Outpost';
  const policy: PolicyOptions = { targeted: options.targeted.map((t) => t.toLowerCase()), heuristicFraction: HEURISTIC_FRACTION };
  const graceSeconds = options.grace / 1000;
  const hidden: ReadonlySet<string> = new Set(options.hideHeaders.map((h) => h.toLowerCase()));
  const onError = options.onError ?? (() => {});
  const stats: CacheStats = { hits: 0, misses: 0, stores: 0, storeErrors: 0, coalesced: 0, revalidations: 0, staleServed: 0 };
  const flights = createFlights();
  const hitForMiss = createHitForMiss({ ...HIT_FOR_MISS, now });
  /** A URI no longer known uncacheable (none, without one), here and for the node's workers. */
  const forgetUncacheable = (primary?: string) => {
    if (primary === undefined) hitForMiss.clear();
    else hitForMiss.forget(primary);
    options.nodeFlights?.forget(primary);
  };
  // A new engine (a start, or a reload that changed the cache section): what the node's workers
  // learnt uncacheable under the rules before is not known under these.
  forgetUncacheable();

  const logStoreError = onceASecond((error: unknown) => onError(error, `cache store (${store.name}), ${stats.storeErrors} failures so far`));
  const storeFailed = (error: unknown) => {
    stats.storeErrors++;
    logStoreError(error);
  };
  const safely = async <T>(work: Promise<T>, fallback: T): Promise<T> => {
    try { return await work; } catch (error) { storeFailed(error); return fallback; }
  };

  // The memory store hands back the same metadata object on every hit; Redis records are new each read.
  const views = recordMemo<StoredView>('view');
  function view(found: Found): StoredView {
    let v = views.get(found.meta);
    if (v === undefined) views.set(found.meta, v = parsedView(found.meta));
    return v;
  }
  /**
   * The view of a record being written (a miss, a variant): the kept one if a request made it,
   * else one made for this call and dropped, so a record nobody reads again (most of the misses
   * of a long tail) does not keep a dozen objects for every GC to mark.
   */
  const viewForWrite = (meta: StoredResponse): StoredView => views.get(meta) ?? parsedView(meta);
  function parsedView(meta: StoredResponse): StoredView {
    const facts = responseFacts({ status: meta.status, headers: meta.headers, receivedAt: meta.responseTime }, policy);
    const initial = initialAge(meta, facts.date);
    // A soft purge ends freshness at the time of the purge.
    const lifetime = meta.invalidatedAt === undefined ? facts.lifetime : Math.min(facts.lifetime, Math.floor(currentAge(initial, meta.responseTime, meta.invalidatedAt)));
    return { facts, lifetime, initialAge: initial, clientHeaders: clientHeadersOf(meta.headers), validators: { etag: facts.etag, lastModified: facts.lastModified ?? facts.date } };
  }
  /** The stored fields themselves when none is to be left out (most responses): no copy kept per record. */
  function clientHeadersOf(headers: StoredResponse['headers']): Readonly<OutgoingHttpHeaders> {
    const shown = (field: string) => !hidden.has(field) && field !== 'age';
    if (Object.keys(headers).every(shown)) return headers;
    const copy: OutgoingHttpHeaders = {};
    for (const field in headers) if (shown(field)) copy[field] = headers[field];
    return copy;
  }
  const age = (found: Found, v: StoredView) => currentAge(v.initialAge, found.meta.responseTime, now());
  const ttlOf = (found: Pick<Found, 'meta'>, v: StoredView) => retentionMs({ facts: { ...v.facts, lifetime: v.lifetime }, age: currentAge(v.initialAge, found.meta.responseTime, now()), graceSeconds });

  const variantsByRecord = recordMemo<Variants>('variants');
  /**
   * A stored record's encodings: one small object per record with its methods on the prototype.
   * (Two closures over the lookup's Found kept their context, the Found and its primary key string
   * alive for as long as the record: ~300 B and six objects more per stored URL, for every full
   * collection to mark; heap snapshots of the soak's 2,000 URLs.)
   */
  class RecordVariants implements Variants {
    readonly key: string;
    readonly meta: StoredResponse;
    /**
     * The identity bytes, kept here only where the store parses records anew on each read (this
     * object then lives for one request). Where the store holds records (the memory store, the
     * near tier) they are read from it: it may move a body (body-arena.ts), and this object lives
     * as long as the record, so a view kept here would hold a slab the store has let go.
     */
    readonly captured: Buffer | undefined;
    /**
     * Codings known to be absent (one bit each, CODING_BITS): a record this process just stored
     * has none but those put through this object (save() dropped the old ones), so asking the
     * store is a read for nothing (with a shared tier, a round trip on every miss). Another
     * process that reads the record may keep one meanwhile: this one then encodes once itself.
     */
    private absent: number;
    constructor(found: Found, justStored: boolean) {
      this.key = found.key;
      this.meta = found.meta;
      this.captured = store.getNow === undefined ? found.body : undefined;
      this.absent = justStored ? ALL_CODINGS : 0;
    }
    get identity(): Buffer | undefined {
      if (this.captured !== undefined) return this.captured;
      // Not a use of the record (the lookup that found it for a hit counted one; a miss that just
      // stored it is none): a response nobody asks for again must not get a second chance at eviction.
      const record = store.peekNow !== undefined ? store.peekNow<StoredResponse>(this.key) : store.getNow!<StoredResponse>(this.key);
      return record !== undefined && record.meta === this.meta ? record.body : undefined;
    }
    async get(coding: Encoding): Promise<StoredVariant | undefined> {
      if ((this.absent & CODING_BITS[coding]) !== 0) return undefined;
      const key = variantKey(this.key, coding);
      const record = await safely(store.get<VariantMeta>(key), undefined);
      if (!record || typeof record.meta?.token !== 'string') return undefined;
      const held = store.getNow === undefined ? undefined : () => store.getNow!(key) === record;
      return { body: record.body, token: record.meta.token, held };
    }
    put(coding: Encoding, body: Buffer, token: string, from: Buffer): void {
      this.absent &= ~CODING_BITS[coding];
      const found: Found = { key: this.key, primary: primaryOf(this.key), meta: this.meta, body: from };
      void safely(putVariant(found, { coding, body, token }), undefined);
    }
  }

  /**
   * Keeps an encoding of `found` only while the response stored under its key still has `found`'s
   * bytes: an upgrade finishes in the background, maybe seconds later, when a new response (other
   * bytes) may have replaced it, and its variant must not be kept under the new one's key. A 304
   * that refreshed the response meanwhile (short max-age, busy core) changed no bytes: kept, as
   * long as the refreshed response is.
   */
  async function putVariant(found: Found, variant: Omit<NewVariant, 'ttlMs'>): Promise<void> {
    const current = store.peekNow?.<StoredResponse>(found.key) ?? await store.get<StoredResponse>(found.key);
    if (current === undefined || !sameBytes(current, found)) return;
    const ttlMs = ttlOf(current, viewForWrite(current.meta));
    if (ttlMs > 0) await saveVariant(store, { ...found, meta: current.meta }, { ...variant, ttlMs });
  }

  async function markStale(keys: readonly string[]): Promise<number> {
    let count = 0;
    const at = now();
    for (const key of keys) {
      const record = await store.get<StoredResponse>(key);
      if (!record) continue;
      const found: Found = { key, primary: primaryOf(key), meta: { ...record.meta, invalidatedAt: at }, body: record.body };
      const ttl = ttlOf(found, view(found));
      if (ttl <= 0) await store.delete([key]);
      else await rewrite(store, found, ttl, at);
      count++;
    }
    return count;
  }

  return {
    name,
    now,
    policy,
    graceSeconds,
    maxObjectSize,
    hidden,
    flights,
    nodeFlights: options.nodeFlights,
    hitForMiss,
    stats,
    storeName: store.name,
    usage: () => store.usage?.(),
    lookup: (primary, headers) => safely(lookup(store, primary, headers), { kind: 'uri-miss' }),
    lookupNow: (primary, headers) => {
      try {
        return lookupNow(store, primary, headers);
      } catch {
        return undefined; // as lookup's failures: asked again the way that falls back to a miss
      }
    },
    view,
    holder: (found) => holderOf(store, found),
    age,
    async save(primary, requestHeaders, meta, body) {
      const ttl = ttlOf({ meta }, viewForWrite(meta));
      if (ttl <= 0) return undefined;
      try {
        const key = await save(store, { primary, requestHeaders, meta, body, ttlMs: ttl, now: now() });
        stats.stores++;
        return { key, primary, meta, body };
      } catch (error) {
        storeFailed(error);
        return undefined;
      }
    },
    async refresh(found, meta) {
      const refreshed: Found = { ...found, meta };
      const ttl = ttlOf(refreshed, view(refreshed));
      await safely(ttl > 0 ? rewrite(store, refreshed, ttl, now()) : store.delete([found.key]).then(() => {}), undefined);
      return refreshed;
    },
    variants(found, forOneReply = false, justStored = false) {
      // One per stored record: a hit builds nothing (the memory store hands back the same record).
      let offered = variantsByRecord.get(found.meta);
      if (offered === undefined && forOneReply) return new RecordVariants(found, justStored);
      // The one kept with the record serves its hits: it must see the codings any reply keeps.
      if (offered === undefined) variantsByRecord.set(found.meta, offered = new RecordVariants(found, false));
      return offered;
    },
    async invalidate(primaries) {
      for (const primary of primaries) {
        forgetUncacheable(primary);
        await safely(purgeUrl(store, primary), 0);
      }
    },
    async inspect(primary, headers) {
      const found = await lookup(store, primary, headers);
      // This request's fetch flies under its URI, or its variant's key once the URI varies (stage.ts).
      const flightKey = found.kind === 'found' ? flightKeyOf(found.found) : found.kind === 'vary-miss' ? found.key : primary;
      const base = { uncacheable: hitForMiss.reason(primary), inFlight: flights.get(flightKey) !== undefined || flights.get(primary) !== undefined };
      if (found.kind !== 'found') return { ...base, lookup: found, codings: [] };
      const v = view(found.found);
      const codings: Array<{ coding: string; bytes: number; token?: string }> = [{ coding: 'identity', bytes: found.found.body.length }];
      for (const coding of ['br', 'zstd', 'gzip'] as const) {
        const record = await store.get<VariantMeta>(variantKey(found.found.key, coding));
        if (record) codings.push({ coding, bytes: record.body.length, token: record.meta?.token });
      }
      return { ...base, lookup: found, view: v, age: age(found.found, v), codings };
    },
    async purge(target, soft) {
      if ('all' in target) {
        forgetUncacheable();
        return store.clear();
      }
      if ('url' in target) {
        const url = new URL(target.url);
        const primary = primaryKey({ scheme: url.protocol === 'http:' ? 'http' : 'https', authority: url.host, target: url.pathname + url.search });
        forgetUncacheable(primary);
        return soft ? markStale(await objectsOf(store, { primary })) : purgeUrl(store, primary);
      }
      return soft ? markStale(await objectsOf(store, { tag: target.tag })) : purgeTag(store, target.tag);
    },
    close: () => store.close(),
  };
}
