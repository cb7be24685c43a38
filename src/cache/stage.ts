import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import CachePolicy from 'http-cache-semantics';
import type { Handler, Stage } from '../pipeline/compose.ts';
import type { Context, Encoding, Reply, Variants } from '../pipeline/context.ts';
import { isOutpostError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { ifRangeHolds, matchesTagList, parseHttpDate, parseRange } from '../http/conditional.ts';
import type { CacheStore } from './store/contract.ts';
import { primaryKey, varyNames } from './key.ts';
import { decide, hasConflictingFreshness, isErrorStatus, mayServeStaleOnError, parseCacheControl, seconds, type Directives, type Freshness } from './decide.ts';
import { lookup, purgeTag, purgeUrl, save, saveVariant, tagsOf, variantKey, type Found, type StoredMeta } from './entries.ts';
import { setCacheStatus } from './status.ts';

export interface CacheStageOptions {
  store: CacheStore;
  /** Larger responses stream through uncached. */
  maxObjectSize: number;
  /** ms a stale response may still be served when the origin fails (Varnish's grace). */
  grace: number;
  /** Store responses that carry Set-Cookie (without the cookie: it goes to the first requester only). */
  storeSetCookie?: boolean;
  /** Name in Cache-Status. */
  name?: string;
}

/** RFC 9111 §4.4: "a cache MUST invalidate the target URI ... when it receives a non-error status code in response to an unsafe request method". */
const UNSAFE = new Set(['POST', 'PUT', 'DELETE', 'PATCH']);

/** Request fields that make a forward conditional or partial: dropped on a fetch meant for storing. */
const CONDITIONAL = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']);

/** Shared cache; RFC 9111 §4.2.2's 10 % heuristic; `immutable` does not stretch lifetimes. */
const POLICY_OPTIONS = { shared: true, cacheHeuristic: 0.1, immutableMinTimeToLive: 0, ignoreCargoCult: false };

/** How long a URI stays known-uncacheable (Varnish's hit-for-miss), so bursts for it do not queue. */
const HIT_FOR_MISS_MS = 120_000;
const HIT_FOR_MISS_MAX = 10_000;

/** Kept past freshness for revalidation with validators: a 304 is cheaper than a full fetch. */
const KEEP_WITH_VALIDATORS_S = 3600;

/** Response fields a 304 never updates in a stored response (RFC 9111 §3.2). */
const NOT_UPDATED_BY_304 = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'content-range']);

/** What waiters on a collapsed forward learn: look again, or share the leader's error. */
type Outcome = { kind: 'stored' } | { kind: 'pass' } | { kind: 'error'; error: unknown };

/**
 * Reads a reply's body to its end without sending it: a 304 or error replaced by a stored response,
 * a background revalidation (whose stored copy is made as the body flows). Reading, not destroying,
 * keeps the origin connection reusable and lets the store see the whole body.
 */
const drain = (reply: Reply) => {
  const body = reply.body;
  if (body && !Buffer.isBuffer(body) && !('kind' in body)) {
    body.on('error', () => {});
    body.resume();
  }
};

export interface CacheStage {
  stage: Stage;
  /** Purge helpers for the admin API. */
  purgeUrl(url: string): Promise<number>;
  purgeTag(tag: string): Promise<number>;
  purgeAll(): Promise<number>;
  readonly stats: { hits: number; misses: number; storeErrors: number };
}

export function createCacheStage(options: CacheStageOptions): CacheStage {
  const { store, maxObjectSize } = options;
  if (!Number.isSafeInteger(maxObjectSize) || maxObjectSize <= 0) throw new TypeError(`cache: maxObjectSize must be a positive byte count, got ${maxObjectSize}`);
  const graceSeconds = Math.max(0, options.grace) / 1000;
  const name = options.name ?? 'Outpost';
  const storeSetCookie = options.storeSetCookie ?? false;
  const stats = { hits: 0, misses: 0, storeErrors: 0 };
  const inflight = new Map<string, Promise<Outcome>>();
  const revalidating = new Set<string>();
  const hitForMiss = new Map<string, number>();

  let lastErrorLog = 0;
  /** A store failure is a miss plus a counter; logged at most once a second. */
  const storeFailed = (error: unknown) => {
    stats.storeErrors++;
    const now = Date.now();
    if (now - lastErrorLog > 1000) {
      lastErrorLog = now;
      publishError({ ctx: null, error, where: `cache store (${store.name}), ${stats.storeErrors} failures so far` });
    }
  };
  const safely = async <T>(work: Promise<T>, fallback: T): Promise<T> => {
    try { return await work; } catch (error) { storeFailed(error); return fallback; }
  };

  /** The request as http-cache-semantics wants it. */
  const policyRequest = (ctx: Context, headers: IncomingHttpHeaders = ctx.headers): CachePolicy.Request => ({
    method: 'GET', url: ctx.target, headers: { ...headers, host: ctx.authority } as CachePolicy.Headers,
  });

  /**
   * The policy object and response directives of a stored response, built once per stored record
   * (the memory store hands back the same metadata object on every hit; Redis records are new each read).
   */
  interface Parsed {
    policy: CachePolicy;
    directives: Directives;
    /** Freshness lifetime in seconds: it depends on the stored headers only. */
    lifetime: number;
    etag: string | undefined;
    lastModified: number | undefined;
  }
  const parsed = new WeakMap<StoredMeta, Parsed>();
  const policyOf = (meta: StoredMeta): Parsed => {
    let entry = parsed.get(meta);
    if (!entry) {
      const policy = CachePolicy.fromObject(meta.policy);
      const stored = meta.policy.resh as Record<string, string | string[] | undefined>;
      entry = {
        policy,
        directives: parseCacheControl(stored['cache-control']),
        lifetime: hasConflictingFreshness(stored['cache-control'], stored.expires) ? 0 : policy.maxAge(),
        etag: typeof stored.etag === 'string' ? stored.etag : undefined,
        lastModified: typeof stored['last-modified'] === 'string' ? parseHttpDate(stored['last-modified']) : undefined,
      };
      parsed.set(meta, entry);
    }
    return entry;
  };

  // ---- serving a stored response -------------------------------------------------------------

  function storedReply(ctx: Context, found: Found, policy: CachePolicy, status: string): Reply {
    const meta = found.meta;
    const stored = meta.policy.resh as Record<string, string | string[]>;
    const headers: OutgoingHttpHeaders = { ...stored };
    // §5.1: Age is the stored response's current age, in whole seconds.
    headers.age = String(Math.floor(policy.age()));
    const body = found.body;
    const reply: Reply = { status: meta.policy.st, headers, body };
    setCacheStatus(reply, name, status);

    // §4.3.2: the cache answers the client's own conditional request from the stored validators.
    const { etag, lastModified } = policyOf(meta);
    const inm = ctx.headers['if-none-match'];
    const notModified = inm !== undefined
      ? etag !== undefined && matchesTagList(inm, etag, false)
      : lastModified !== undefined && (parseHttpDate(ctx.headers['if-modified-since']) ?? -Infinity) >= lastModified;
    if (notModified && reply.status === 200) return notModifiedReply(reply);

    if (ctx.method === 'HEAD') return { ...reply, body: null, headers: { ...headers, 'content-length': body.length } };
    headers['content-length'] = body.length;
    // Ranges are served from the stored full response (RFC 9110 §14); only from a 200.
    if (reply.status === 200 && ctx.headers.range !== undefined && lastModifiedOrEtag(etag, lastModified, ctx.headers['if-range'])) {
      const range = parseRange(ctx.headers.range as string, body.length);
      if (range.kind === 'partial') {
        return { status: 206, headers: { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${body.length}`, 'content-length': range.end - range.start + 1 }, body: body.subarray(range.start, range.end + 1) };
      }
      if (range.kind === 'unsatisfiable') {
        return { status: 416, headers: { 'content-range': `bytes */${body.length}`, 'content-length': 0, 'cache-status': headers['cache-status'] }, body: null };
      }
    }
    reply.variants = variantsOf(found, policy);
    return reply;
  }

  function lastModifiedOrEtag(etag: string | undefined, lastModified: number | undefined, ifRange: string | string[] | undefined): boolean {
    if (ifRange === undefined) return true;
    if (etag === undefined && lastModified === undefined) return false;
    return ifRangeHolds(Array.isArray(ifRange) ? ifRange[0] : ifRange, { etag: etag ?? '"\u0000"', lastModified: lastModified ?? -1 });
  }

  /** RFC 9110 §15.4.5: a 304 carries the fields a 200 would have had that describe the representation's metadata. */
  function notModifiedReply(reply: Reply): Reply {
    const headers: OutgoingHttpHeaders = {};
    for (const field of ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified', 'age', 'cache-status']) {
      if (reply.headers[field] !== undefined) headers[field] = reply.headers[field];
    }
    return { status: 304, headers, body: null };
  }

  /** Encoded forms of a stored body: kept next to it, made once by the compression stage. */
  function variantsOf(found: Found, policy: CachePolicy): Variants {
    return {
      identity: found.body,
      get: async (coding: Encoding) => (await safely(store.get(variantKey(found.key, coding)), undefined))?.body,
      put: (coding: Encoding, body: Buffer) => {
        if (policy.timeToLive() > 0) void safely(saveVariant(store, found, coding, body, retention(policy)), undefined);
      },
    };
  }

  // ---- storing what the origin answers --------------------------------------------------------

  /**
   * How long a store keeps a response (ms): its freshness, plus what may still use it once stale —
   * stale-while-revalidate, stale-if-error, grace, and revalidation when it has validators.
   */
  function retention(policy: CachePolicy): number {
    const headers = policy.toObject().resh;
    const cc = parseCacheControl(headers['cache-control'] as string | undefined);
    const validators = headers.etag !== undefined || headers['last-modified'] !== undefined;
    const keep = Math.max(seconds(cc, 'stale-while-revalidate') ?? 0, seconds(cc, 'stale-if-error') ?? 0, graceSeconds, validators ? KEEP_WITH_VALIDATORS_S : 0);
    return policy.timeToLive() + keep * 1000;
  }

  /** Why a response is not stored, or null when it is storable (RFC 9111 §3 via http-cache-semantics). */
  function notStorable(ctx: Context, request: Directives, reply: Reply, policy: CachePolicy): string | null {
    const length = reply.headers['content-length'];
    return request.has('no-store') ? 'request no-store'
      : !policy.storable() ? 'not storable'
      : reply.status === 206 ? 'partial'
      : varyNames(reply.headers.vary as string | undefined) === '*' ? 'vary *'
      : reply.headers['set-cookie'] !== undefined && !storeSetCookie ? 'set-cookie'
      : reply.headers['content-encoding'] !== undefined && reply.headers['content-encoding'] !== 'identity' ? 'encoded'
      : length !== undefined && Number(length) > maxObjectSize ? 'too large'
      : reply.body !== null && !Buffer.isBuffer(reply.body) && 'kind' in reply.body ? 'file body'
      : retention(policy) <= 0 ? 'no lifetime'
      : null;
  }

  /**
   * Passes the origin's reply on while keeping a copy. The copy is stored once the body is complete
   * and whole (Content-Length matched); past maxObjectSize, on error or abort it is dropped and
   * nothing is stored: a truncated response is never served to anyone else.
   */
  function storeWhileStreaming(ctx: Context, reply: Reply, primary: string, policy: CachePolicy, settle: (o: Outcome) => void): Reply {
    const headers = reply.headers;
    const expected = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
    const stored = policy.toObject(); // its headers are our copy (takeOriginReply), not the reply's
    if (storeSetCookie) delete stored.resh['set-cookie'];
    const meta: StoredMeta = { policy: stored, tags: tagsOf(headers) };
    const ttl = retention(policy);
    const commit = async (body: Buffer) => {
      if (expected !== undefined && body.length !== expected) return settle({ kind: 'pass' });
      await safely(save(store, primary, ctx.headers, meta, body, ttl), undefined);
      settle({ kind: 'stored' });
    };
    if (reply.body === null || Buffer.isBuffer(reply.body)) {
      const body = reply.body ?? Buffer.alloc(0);
      void commit(body);
      return { ...reply, body };
    }
    const source = reply.body as Readable;
    const chunks: Buffer[] = [];
    let size = 0;
    let keeping = true;
    let done = false;
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, callback: TransformCallback) {
        if (keeping) {
          size += chunk.length;
          if (size > maxObjectSize) { keeping = false; chunks.length = 0; }
          else chunks.push(chunk);
        }
        callback(null, chunk);
      },
      flush(callback) {
        done = true;
        if (keeping) void commit(Buffer.concat(chunks, size)); else settle({ kind: 'pass' });
        callback();
      },
    });
    tee.once('close', () => { if (!done) settle({ kind: 'pass' }); });
    source.once('error', (err) => tee.destroy(err));
    return { ...reply, body: source.pipe(tee) };
  }

  /** A forward meant to produce a storable full response: the client's conditionals and Range stay home. */
  function forwardContext(ctx: Context, extra: Record<string, string> = {}, detached = false): Context {
    // Copied field by field: `delete` would turn the object into a slow dictionary for every later reader.
    const headers: IncomingHttpHeaders = {};
    for (const field in ctx.headers) if (!CONDITIONAL.has(field)) headers[field] = ctx.headers[field] as string;
    Object.assign(headers, extra);
    const forwarded: Context = { ...ctx, method: 'GET', headers };
    // A background revalidation outlives the client that triggered it.
    return detached ? { ...forwarded, signal: new AbortController().signal, body: Readable.from([]) } : forwarded;
  }

  /** Handles a full (non-304) origin reply for a GET/HEAD: store it when allowed, answer the client. */
  async function takeOriginReply(ctx: Context, request: Directives, reply: Reply, primary: string, status: string, settle: (o: Outcome) => void): Promise<Reply> {
    // RFC 9110 §6.6.1: a response without Date gets the time it was received before it is stored.
    if (reply.headers.date === undefined) reply.headers.date = new Date().toUTCString();
    // A copy: Cache-Status and other per-response fields added later must not be stored.
    const policy = new CachePolicy(policyRequest(ctx), { status: reply.status, headers: { ...reply.headers } as CachePolicy.Headers }, POLICY_OPTIONS);
    const reason = notStorable(ctx, request, reply, policy);
    if (reason !== null) {
      if (reason !== 'request no-store') rememberUncacheable(primary);
      settle({ kind: 'pass' });
      setCacheStatus(reply, name, `${status}; fwd-status=${reply.status}`);
      return reply;
    }
    hitForMiss.delete(primary);
    const teed = storeWhileStreaming(ctx, reply, primary, policy, settle);
    setCacheStatus(teed, name, `${status}; fwd-status=${reply.status}; stored`);
    if (ctx.method === 'HEAD' || ctx.headers.range !== undefined || hasConditional(ctx)) {
      // The client wanted less than the full body: read it all for the store, then answer from it.
      const body = Buffer.isBuffer(teed.body) ? teed.body : await collect(teed.body as Readable);
      const found: Found = { key: '', primary, meta: { policy: policy.toObject(), tags: [] }, body };
      const answer = storedReply(ctx, found, policy, `${status}; fwd-status=${reply.status}; stored`);
      delete answer.variants;
      return answer;
    }
    return teed;
  }

  const hasConditional = (ctx: Context) => ctx.headers['if-none-match'] !== undefined || ctx.headers['if-modified-since'] !== undefined;

  function rememberUncacheable(primary: string) {
    if (hitForMiss.size >= HIT_FOR_MISS_MAX) hitForMiss.delete(hitForMiss.keys().next().value!);
    hitForMiss.set(primary, Date.now() + HIT_FOR_MISS_MS);
  }
  function knownUncacheable(primary: string): boolean {
    const until = hitForMiss.get(primary);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    hitForMiss.delete(primary);
    return false;
  }

  // ---- miss: collapse identical forwards -------------------------------------------------------

  async function miss(ctx: Context, next: Handler, request: Directives, primary: string, fwd: string): Promise<Reply> {
    stats.misses++;
    if (knownUncacheable(primary)) {
      const reply = await next(forwardContext(ctx));
      return takeOriginReply(ctx, request, reply, primary, 'fwd=bypass', () => {});
    }
    const pending = inflight.get(primary);
    if (pending) {
      // Another request is already fetching this URI: wait for it, then look again.
      const outcome = await pending;
      if (outcome.kind === 'error') throw outcome.error;
      if (outcome.kind === 'stored') {
        const again = await safely(lookup(store, primary, ctx.headers), { kind: 'uri-miss' as const });
        if (again.kind === 'found') {
          const { policy } = policyOf(again.found.meta);
          return storedReply(ctx, again.found, policy, `fwd=${fwd}; collapsed`);
        }
      }
      const reply = await next(forwardContext(ctx));
      return takeOriginReply(ctx, request, reply, primary, `fwd=${fwd}; collapsed`, () => {});
    }
    let settle!: (o: Outcome) => void;
    const outcome = new Promise<Outcome>((resolve) => { settle = resolve; });
    inflight.set(primary, outcome);
    let settled = false;
    const settleOnce = (o: Outcome) => {
      if (settled) return;
      settled = true;
      inflight.delete(primary);
      settle(o);
    };
    try {
      const reply = await next(forwardContext(ctx));
      return await takeOriginReply(ctx, request, reply, primary, `fwd=${fwd}`, settleOnce);
    } catch (error) {
      settleOnce({ kind: 'error', error });
      throw error;
    }
  }

  // ---- stale: validate with the origin -------------------------------------------------------

  /** A 304 updates the stored response's header fields (§4.3.4) and its freshness. */
  async function refresh(ctx: Context, found: Found, notModified: Reply): Promise<{ found: Found; policy: CachePolicy } | null> {
    const stored = found.meta.policy.resh as Record<string, string | string[]>;
    const newTag = notModified.headers.etag as string | undefined;
    // §4.3.4: a strong validator in the 304 selects the stored responses with the same one.
    if (newTag !== undefined && !newTag.startsWith('W/') && stored.etag !== undefined && stored.etag !== newTag) return null;
    const merged: Record<string, string | string[]> = { ...stored };
    for (const [field, value] of Object.entries(notModified.headers)) {
      if (value !== undefined && !NOT_UPDATED_BY_304.has(field) && field !== 'cache-status') merged[field] = value as string | string[];
    }
    const policy = new CachePolicy(policyRequest(ctx), { status: found.meta.policy.st, headers: merged }, POLICY_OPTIONS);
    const meta: StoredMeta = { policy: policy.toObject(), tags: tagsOf(merged) };
    const ttl = retention(policy);
    await safely(save(store, found.primary, ctx.headers, meta, found.body, ttl), '');
    return { found: { ...found, meta }, policy };
  }

  async function revalidate(ctx: Context, next: Handler, request: Directives, found: Found, policy: CachePolicy, fwd: string, detached = false): Promise<Reply> {
    const forward = forwardContext(ctx, {}, detached);
    const conditional = policy.revalidationHeaders(policyRequest(ctx, forward.headers)) as Record<string, string>;
    const validating: Context = { ...forward, headers: { ...forward.headers, ...pick(conditional, ['if-none-match', 'if-modified-since']) } };
    const stale = () => {
      const { directives, lifetime } = policyOf(found.meta);
      return mayServeStaleOnError({ age: policy.age(), lifetime }, directives, request, graceSeconds);
    };
    let reply: Reply;
    try {
      reply = await next(validating);
    } catch (error) {
      if (isOutpostError(error) && error.status >= 500 && stale()) return servedStaleOnError(ctx, found, policy, error.status);
      throw error;
    }
    if (reply.status === 304) {
      drain(reply);
      const refreshed = await refresh(ctx, found, reply);
      if (refreshed) return storedReply(ctx, refreshed.found, refreshed.policy, `fwd=${fwd}; fwd-status=304`);
      // The 304 is for another representation: fetch the full response.
      const full = await next(forwardContext(ctx, {}, detached));
      return takeOriginReply(ctx, request, full, found.primary, `fwd=${fwd}`, () => {});
    }
    if (isErrorStatus(reply.status) && stale()) {
      drain(reply);
      return servedStaleOnError(ctx, found, policy, reply.status);
    }
    return takeOriginReply(ctx, request, reply, found.primary, `fwd=${fwd}`, () => {});
  }

  function servedStaleOnError(ctx: Context, found: Found, policy: CachePolicy, status: number): Reply {
    const ttl = Math.floor(policy.maxAge() - policy.age());
    return storedReply(ctx, found, policy, `fwd=stale; fwd-status=${status}; ttl=${ttl}; detail=stale-if-error`);
  }

  /** RFC 5861 §3: one background revalidation per stored response at a time. */
  function revalidateInBackground(ctx: Context, next: Handler, request: Directives, found: Found, policy: CachePolicy) {
    if (revalidating.has(found.key)) return;
    revalidating.add(found.key);
    revalidate(ctx, next, request, found, policy, 'stale', true)
      .then((reply) => drain(reply))
      .catch((error) => publishError({ ctx, error, where: 'background revalidation' }))
      .finally(() => revalidating.delete(found.key));
  }

  // ---- invalidation ----------------------------------------------------------------------------

  /** §4.4: the target URI, and Location / Content-Location when they share its origin. */
  async function invalidate(ctx: Context, reply: Reply) {
    const base = `${ctx.scheme}://${ctx.authority}${ctx.target}`;
    const targets = new Set([primaryKey(ctx)]);
    for (const field of ['location', 'content-location']) {
      const value = reply.headers[field];
      if (typeof value !== 'string') continue;
      try {
        const url = new URL(value, base);
        if (url.origin === new URL(base).origin) targets.add(primaryKey({ scheme: ctx.scheme, authority: ctx.authority, target: url.pathname + url.search }));
      } catch { /* not a URI: nothing to invalidate */ }
    }
    for (const target of targets) {
      hitForMiss.delete(target);
      await safely(purgeUrl(store, target), 0);
    }
  }

  // ---- the stage ---------------------------------------------------------------------------------

  const stage: Stage = async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      const reply = await next(ctx);
      if (UNSAFE.has(ctx.method) && reply.status < 400) await invalidate(ctx, reply);
      setCacheStatus(reply, name, 'fwd=method');
      return reply;
    }
    const request = parseCacheControl(ctx.headers['cache-control']);
    const primary = primaryKey(ctx);
    const found = await safely(lookup(store, primary, ctx.headers), { kind: 'uri-miss' as const });
    if (found.kind !== 'found') {
      // §5.2.1.7: only-if-cached and nothing stored: 504.
      if (request.has('only-if-cached')) return onlyIfCached(ctx);
      return miss(ctx, next, request, primary, found.kind);
    }
    const { policy, directives: response, lifetime } = policyOf(found.found.meta);
    const freshness: Freshness = { age: policy.age(), lifetime };
    const pragmaNoCache = /no-cache/i.test(String(ctx.headers.pragma ?? ''));
    const verdict = decide(freshness, response, request, pragmaNoCache);
    const ttl = Math.floor(freshness.lifetime - freshness.age);
    switch (verdict.kind) {
      case 'fresh':
        stats.hits++;
        return storedReply(ctx, found.found, policy, `hit; ttl=${ttl}`);
      case 'stale-acceptable':
        stats.hits++;
        return storedReply(ctx, found.found, policy, `hit; ttl=${ttl}`);
      case 'stale-while-revalidate':
        stats.hits++;
        revalidateInBackground(ctx, next, request, found.found, policy);
        return storedReply(ctx, found.found, policy, `hit; ttl=${ttl}; detail=stale-while-revalidate`);
      case 'revalidate':
        if (request.has('only-if-cached')) return onlyIfCached(ctx);
        stats.misses++;
        return revalidate(ctx, next, request, found.found, policy, verdict.reason === 'request' ? 'request' : 'stale');
    }
  };

  function onlyIfCached(ctx: Context): Reply {
    const body = Buffer.from('Gateway Timeout: not in cache (only-if-cached)\n');
    const reply: Reply = { status: 504, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length }, body: ctx.method === 'HEAD' ? null : body };
    setCacheStatus(reply, name, 'fwd=miss; detail=only-if-cached');
    return reply;
  }

  return {
    stage,
    stats,
    purgeUrl: async (url) => {
      const parsed = new URL(url);
      const scheme = parsed.protocol === 'http:' ? 'http' : 'https';
      const primary = primaryKey({ scheme, authority: parsed.host, target: parsed.pathname + parsed.search });
      hitForMiss.delete(primary);
      return purgeUrl(store, primary);
    },
    purgeTag: (tag) => purgeTag(store, tag),
    purgeAll: async () => {
      hitForMiss.clear();
      return store.clear();
    },
  };
}

function pick(headers: Record<string, string>, fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const field of fields) if (headers[field] !== undefined) out[field] = headers[field];
  return out;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

