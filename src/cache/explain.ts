import type { IncomingHttpHeaders } from 'node:http';
import { parseCacheControl, seconds } from '../http/cache-control.ts';
import type { CacheEngine } from './engine.ts';
import { primaryKey, varyNames } from './key.ts';
import { decide, mayServeStale } from './decide.ts';
import { retentionMs } from './policy.ts';
import { pragmaNoCache } from './requests.ts';
import type { Context } from '../pipeline/context.ts';

/**
 * What Outpost holds for a URL and why, for operators (GET /explain on the admin API). Built from
 * the engine's read-only inspect() and the same pure policy the request path uses (policy.ts,
 * decide.ts), so it says what the next request with these headers would get, not a guess.
 */

export type NextResult =
  | 'hit'
  | 'hit, then a background revalidation (stale-while-revalidate)'
  | 'revalidate'
  | 'miss'
  | 'bypass (known uncacheable: straight to the origin)';

const NEXT_FOR_VERDICT = {
  'fresh': 'hit',
  'stale-acceptable': 'hit',
  'stale-while-revalidate': 'hit, then a background revalidation (stale-while-revalidate)',
  'revalidate': 'revalidate',
} as const satisfies Record<string, NextResult>;

/** Why a response was not stored, in words, for the words whyNotStorable and the stage use. */
const NOT_STORED: Record<string, string> = {
  'no-store': 'the response said no-store',
  'request-no-store': 'the request said no-store',
  'private': 'the response is private',
  'set-cookie': 'the response sets a cookie (cache.storeSetCookie is off for this route)',
  'authorization': 'the request carried Authorization and the response did not allow shared caching (public, s-maxage, must-revalidate)',
  'vary-star': 'the response varies on * (no request can match it)',
  'no-explicit-freshness': 'no freshness information and a status that is not heuristically cacheable',
  'heuristic-with-credentials': 'only a heuristic lifetime, for a request with Cookie or Authorization',
  'too-large': 'the body is larger than cache.maxObjectSize',
  'no-lifetime': 'already stale, without validators or a stale window: nothing to keep it for',
  'partial': '206 Partial Content is not stored',
  'must-understand': 'must-understand with a status this cache does not understand',
  'interim': 'an interim (1xx) response',
  'invalid-status': 'an invalid status',
  'not-modified': 'a 304 is not stored',
  'uncacheable': 'the origin\'s answer could not be stored',
};

export interface ExplainRequest {
  readonly url: URL;
  /** Request fields to judge with (lower-case names): Vary inputs, Cache-Control, Accept-Encoding. */
  readonly headers: IncomingHttpHeaders;
}

export async function explain(engine: CacheEngine, { url, headers }: ExplainRequest): Promise<Record<string, unknown>> {
  const key = primaryKey({ scheme: url.protocol === 'http:' ? 'http' : 'https', authority: url.host, target: url.pathname + url.search });
  const seen = await engine.inspect(key, headers);
  const request = parseCacheControl(headers['cache-control']);
  const common = { url: url.href, key, store: engine.storeName, inFlight: seen.inFlight };

  if (seen.lookup.kind !== 'found' || seen.view === undefined || seen.age === undefined) {
    const why = seen.uncacheable;
    return {
      ...common,
      stored: false,
      miss: seen.lookup.kind,
      notStored: why === undefined
        ? { reason: null, detail: seen.lookup.kind === 'vary-miss' ? 'other variants of this URL are stored, not one for these request headers' : 'nothing stored: never fetched, expired, evicted or purged' }
        : { reason: why, detail: NOT_STORED[why] ?? why },
      next: why !== undefined ? 'bypass (known uncacheable: straight to the origin)' : 'miss',
    };
  }

  const { found } = seen.lookup;
  const view = seen.view;
  const facts = view.facts;
  const age = seen.age;
  const cc = facts.directives;
  const verdict = decide({ age, lifetime: view.lifetime }, { response: cc, request, pragmaNoCache: pragmaNoCache({ headers } as Context, request) });
  const vary = varyNames(found.meta.headers.vary as string | string[] | undefined);
  const round = (n: number) => Math.round(n * 10) / 10;
  const field = (name: string) => { const v = found.meta.headers[name]; return Array.isArray(v) ? v.join(', ') : v ?? null; };
  return {
    ...common,
    stored: true,
    status: found.meta.status,
    variant: { vary: vary === '*' ? ['*'] : vary, selectedBy: Object.fromEntries((vary === '*' ? [] : vary).map((name) => [name, headers[name] ?? null])) },
    codings: seen.codings,
    age: round(age),
    freshness: {
      lifetime: view.lifetime,
      source: facts.lifetimeSource,
      field: facts.directivesFrom,
      explicit: facts.explicit,
      remaining: round(view.lifetime - age),
      fresh: age < view.lifetime,
      softPurgedAt: found.meta.invalidatedAt === undefined ? null : new Date(found.meta.invalidatedAt).toISOString(),
    },
    stale: {
      mayServeStale: mayServeStale(cc),
      whileRevalidate: seconds(cc, 'stale-while-revalidate') ?? 0,
      ifError: seconds(cc, 'stale-if-error') ?? 0,
      grace: engine.graceSeconds,
    },
    keptFor: round(retentionMs({ facts: { ...facts, lifetime: view.lifetime }, age, graceSeconds: engine.graceSeconds }) / 1000),
    validators: { etag: facts.etag ?? null, lastModified: field('last-modified') },
    directives: Object.fromEntries([...cc].map(([name, value]) => [name, value])),
    tags: found.meta.tags,
    storedAt: new Date(found.meta.responseTime).toISOString(),
    next: NEXT_FOR_VERDICT[verdict.kind],
    ...(verdict.kind === 'revalidate' ? { revalidateBecause: verdict.reason === 'request' ? 'the request asks for it (no-cache, max-age, min-fresh)' : 'stale' } : {}),
  };
}
