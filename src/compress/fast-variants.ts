import { isFileBody, type Context, type Encoding, type ReplyBody, type StoredVariant, type Variants } from '../pipeline/context.ts';
import { publishError } from '../observability/channels.ts';
import { readFileBody, tokenOf } from './encoders.ts';
import { ownBytes } from '../buffers.ts';
import { createPopularity, createUpgradeQueue } from './upgrades.ts';

/**
 * The life of a kept fast variant: stored at fast quality when first encoded (`keep`), counted
 * each time it is served from its holder until it proves popular (`servedFast`), then re-encoded
 * at high quality in the background, the result replacing it in the holder when smaller.
 * `upgradable` says whether a stored variant's uses are still counted (then its reply must not be
 * kept ready: its uses have to reach the compression stage).
 */

/** 16 MB: a file is read into memory to be encoded once and kept only up to this (the cache's default maxObjectSize). */
export const READ_LIMIT = 16 * 1024 * 1024;
const UPGRADES = {
  /** One background encode at a time per stage (they share the background encoder's one thread). */
  concurrency: 1,
  /**
   * 4 MB of identity bodies may wait (a job holds a copy of its input); beyond that a variant stays
   * at fast quality and is counted afresh, so it is queued again once it has been served twice more.
   * A longer queue is memory and no sooner upgrade: the encoder's thread runs only when the core
   * would idle, so under full load the queue stays full. The memory soak (bench/soak.ts: 4,000
   * kept variants, the core busy) held 16 MB of queued inputs in 2,271 jobs the whole run with 16
   * MB here (heap snapshot, 2026-12-03), 4 MB in 863 with this.
   */
  maxQueuedBytes: 4 * 1024 * 1024,
};
/** A kept fast variant is upgraded when it is served from its holder this many times (its second hit). */
const UPGRADE_AFTER = 2;
/** Objects whose hits are being counted, at most (upgrades.ts `createPopularity`). */
const POPULARITY_KEYS = 50_000;
/** The token of what the compression stage encodes when nothing is stored (streams, first requests): `br2`. */
export const FAST: Readonly<Record<Encoding, string>> = { br: tokenOf('br', 'fast'), zstd: tokenOf('zstd', 'fast'), gzip: tokenOf('gzip', 'fast') };
/** The token of an upgraded variant: `br11`. */
export const HIGH: Readonly<Record<Encoding, string>> = { br: tokenOf('br', 'high'), zstd: tokenOf('zstd', 'high'), gzip: tokenOf('gzip', 'high') };

/** Encodes at high quality off the serving path (background.ts). */
export type HighQualityEncoder = (coding: Encoding, input: Buffer) => Promise<Buffer>;

/** See the functions of the same names below. */
export interface FastVariants {
  keep(ctx: Context, variants: Variants, coding: Encoding, fast: Buffer, from: Buffer): void;
  servedFast(ctx: Context, variants: Variants, coding: Encoding, fastLength: number, body: ReplyBody, key: string, etag: string | undefined): boolean;
  upgradable(ctx: Context, variants: Variants, coding: Encoding, stored: StoredVariant, etag: string | undefined): string | undefined;
}

export function createFastVariants(encodeHigh: HighQualityEncoder): FastVariants {
  const upgrades = createUpgradeQueue({
    ...UPGRADES,
    onError: (error) => publishError({ ctx: null, error, where: 'compress upgrade' }),
  });
  const popularity = createPopularity({ hits: UPGRADE_AFTER, maxKeys: POPULARITY_KEYS });

  /** Keeps the fast encoding; the high-quality one comes only if it proves popular (`servedFast`). */
  function keep(ctx: Context, variants: Variants, coding: Encoding, fast: Buffer, from: Buffer): void {
    try {
      variants.put!(coding, fast, FAST[coding], from);
    } catch (error) {
      publishError({ ctx, error, where: 'compress put' });
    }
  }

  /**
   * A kept fast variant (`upgradable`'s key) is being sent: counted, and on its `UPGRADE_AFTER`-th
   * time the high-quality re-encode that replaces it is queued. The identity bytes come from the
   * holder, or from the reply's own body (a file is read for it, off the response's path). Answers
   * whether it took `body` (then the caller must not dispose of it).
   */
  function servedFast(ctx: Context, variants: Variants, coding: Encoding, fastLength: number, body: ReplyBody, key: string, etag: string | undefined): boolean {
    if (!popularity.hit(key)) return false;
    const identity = variants.identity ?? (Buffer.isBuffer(body) ? body : undefined);
    if (identity !== undefined) {
      upgrade(variants, coding, identity, fastLength, key, etag);
      return false;
    }
    if (body === null || !isFileBody(body) || body.length > READ_LIMIT) return false;
    readFileBody(body).then(
      (read) => upgrade(variants, coding, read, fastLength, key, etag),
      (error) => publishError({ ctx, error, where: 'compress upgrade' }),
    );
    return true;
  }

  /** Queues the high-quality encode of `identity`, which replaces the fast variant when smaller. */
  function upgrade(variants: Variants, coding: Encoding, identity: Buffer, fastLength: number, key: string, etag: string | undefined): void {
    // Same object and coding while an upgrade waits: the URL and its validator, else the body itself.
    const job = etag !== undefined ? key : identity;
    if (!upgrades.admits(job, identity.length)) return; // a full queue: served fast until it proves popular again
    // A job may wait: it holds a copy of just these bytes, not a view into one of the cache's
    // slabs (body-arena.ts), which would keep the whole slab however many jobs wait (the queue is
    // bounded by the bytes of its inputs).
    const input = ownBytes(identity);
    upgrades.schedule(job, input.length, async () => {
      const best = await encodeHigh(coding, input);
      if (best.length < fastLength) variants.put!(coding, best, HIGH[coding], input);
      // Not smaller (repetitive input): the fast body stays, with its own token, for good.
      else popularity.settle(key);
    });
  }

  /**
   * The key that counts uses of a kept fast variant (one object and coding: the URL and its
   * validator), or undefined when `stored` is final until further notice: not a fast body, a holder
   * that keeps nothing, an upgrade that came out no smaller, or one already waiting (with a validator
   * to name it by) — then there is nothing to count, and the fast reply may be kept ready until the
   * upgraded variant replaces it in the holder (its `held` turns false).
   */
  function upgradable(ctx: Context, variants: Variants, coding: Encoding, stored: StoredVariant, etag: string | undefined): string | undefined {
    if (stored.token !== FAST[coding] || variants.put === undefined) return undefined;
    const key = `${coding} ${ctx.host}${ctx.target} ${etag ?? ''}`;
    return popularity.settled(key) || (etag !== undefined && upgrades.pending(key)) ? undefined : key;
  }

  return { keep, servedFast, upgradable };
}
