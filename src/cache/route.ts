import type { Handler } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import type { CacheEngine, StoredView } from './engine.ts';
import type { Found } from './entries.ts';
import type { OriginFetch } from './origin-fetch.ts';
import type { StoreRules } from './policy.ts';

/**
 * What the parts of one route's cache share (stage.ts builds it; admit.ts, collapse.ts and
 * validate.ts take it): the node's engine, the route's rules and origin, and how an answer is
 * labelled and made.
 */
export interface CacheRoute extends OriginFetch {
  readonly engine: CacheEngine;
  readonly rules: StoreRules;
  /** The route's origin as it is: a validation's conditional request goes there unchanged. */
  readonly origin: Handler;
  /** This cache's Cache-Status entry (RFC 9211) with `params`: `outpost; hit; ttl=5`. */
  status(params: string): string;
  /** The stored response `found` as the reply to `ctx` (serve.ts), `params` its Cache-Status. */
  serve(ctx: Context, found: Found, view: StoredView, age: number, params: string): Reply;
}
