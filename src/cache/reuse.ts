import type { OutgoingHttpHeaders } from 'node:http';
import type { Reuse } from '../pipeline/context.ts';
import type { CacheEngine, StoredView } from './engine.ts';
import type { Found } from './entries.ts';
import { varyNames } from './key.ts';
import { appendCacheStatus } from './status.ts';

export interface HitReuseInput {
  readonly engine: CacheEngine;
  readonly found: Found;
  readonly view: StoredView;
  /** The current age (seconds) when the hit was decided fresh. */
  readonly age: number;
  /** Our Cache-Status entry for these parameters (`Outpost; hit; ttl=12`). */
  readonly cacheStatus: (params: string) => string;
}

/**
 * A fresh hit the server may send again (Reuse) while the store holds this very record and it is
 * still fresh; each response gets its own Age and Cache-Status and counts as a hit. Undefined for
 * a response that varies on request fields (another answer for other values: a ready reply's key
 * has only Accept-Encoding) and where the store cannot tell without waiting.
 */
export function hitReuse({ engine, found, view, age, cacheStatus }: HitReuseInput): Reuse | undefined {
  const vary = varyNames(found.meta.headers.vary);
  const holds = vary === '*' || vary.length > 0 ? undefined : engine.holder(found);
  if (holds === undefined) return undefined;
  const freshUntil = engine.now() + (view.lifetime - age) * 1000;
  const upstreamStatus = view.clientHeaders['cache-status'];
  let shownAge = -1;
  let shownTtl = -1;
  let fields: Readonly<OutgoingHttpHeaders> = {};
  return {
    valid: () => engine.now() < freshUntil && holds(),
    stamp() {
      engine.stats.hits++;
      const current = engine.age(found, view);
      const whole = Math.floor(current);
      const ttl = Math.floor(view.lifetime - current);
      // The fields change once a second: the same object until then (the server keeps its header block).
      if (whole !== shownAge || ttl !== shownTtl) {
        shownAge = whole;
        shownTtl = ttl;
        fields = { age: String(whole), 'cache-status': appendCacheStatus(upstreamStatus, cacheStatus(`hit; ttl=${ttl}`)) };
      }
      return fields;
    },
  };
}
