/**
 * Which kept variants are upgraded, and when. Only objects that prove popular: a fast variant is
 * upgraded once it has been served from where it is kept `hits` times (`createPopularity`), never
 * on first store, so a stream of URLs seen once (a crawler, unique API answers) costs one fast
 * encode each and no Brotli 11 at all.
 *
 * The background queue that re-encodes kept variants at high quality. Bounded twice: `concurrency`
 * jobs run at once (they share the background encoder's one thread, background.ts), and the jobs
 * waiting hold at most `maxQueuedBytes` of input (a job keeps its identity body alive); beyond that
 * a job is dropped and its variant stays at fast quality, which is still correct. A key that is
 * queued or running is not queued again, so an object and encoding is upgraded once however many
 * requests arrive before the upgraded variant is stored.
 */

export interface UpgradeQueue {
  /** Queues `job` (holding `bytes` of input) unless `key` is queued or running, or the queue is full. */
  schedule(key: unknown, bytes: number, job: () => Promise<void>): boolean;
  /** Whether `schedule` would take a job for `key` holding `bytes` now: asked before its input is copied. */
  admits(key: unknown, bytes: number): boolean;
  /** Whether a job for `key` is queued or running. */
  pending(key: unknown): boolean;
}

export interface UpgradeQueueOptions {
  readonly concurrency: number;
  readonly maxQueuedBytes: number;
  /** Called with a job's error; a failed upgrade never fails a response. */
  readonly onError: (error: unknown) => void;
}

export function createUpgradeQueue(options: UpgradeQueueOptions): UpgradeQueue {
  const { concurrency, maxQueuedBytes, onError } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`upgrades.concurrency: expected an integer ≥ 1, got ${concurrency}`);
  if (!Number.isInteger(maxQueuedBytes) || maxQueuedBytes < 0) throw new TypeError(`upgrades.maxQueuedBytes: expected an integer ≥ 0, got ${maxQueuedBytes}`);
  const keys = new Set<unknown>();
  const waiting: Array<{ key: unknown; bytes: number; job: () => Promise<void> }> = [];
  let waitingBytes = 0;
  let running = 0;

  function pump(): void {
    while (running < concurrency && waiting.length > 0) {
      const { key, bytes, job } = waiting.shift()!;
      waitingBytes -= bytes;
      running++;
      job().catch(onError).finally(() => {
        running--;
        keys.delete(key);
        pump();
      });
    }
  }

  const admits = (key: unknown, bytes: number) => !keys.has(key) && (running < concurrency || waitingBytes + bytes <= maxQueuedBytes);

  return {
    admits,
    schedule(key, bytes, job) {
      if (!admits(key, bytes)) return false;
      keys.add(key);
      waiting.push({ key, bytes, job });
      waitingBytes += bytes;
      pump();
      return true;
    },
    pending: (key) => keys.has(key),
  };
}

export interface Popularity {
  /** Counts one use of `key`; true on the `hits`-th (then forgets it: the caller acts once). Never for a settled key. */
  hit(key: string): boolean;
  /** Nothing more to do for `key` (its upgrade came out no smaller): no more counting. */
  settle(key: string): void;
  settled(key: string): boolean;
}

/**
 * Counts uses per key up to `hits`. Bounded: past `maxKeys` counts it starts afresh (counts lost
 * only delay an upgrade), so a flood of keys seen once holds at most `maxKeys` small strings.
 */
export function createPopularity(options: { readonly hits: number; readonly maxKeys: number }): Popularity {
  const { hits, maxKeys } = options;
  if (!Number.isInteger(hits) || hits < 1) throw new TypeError(`popularity.hits: expected an integer ≥ 1, got ${hits}`);
  /** Uses so far, or SETTLED. */
  let counts = new Map<string, number>();
  const SETTLED = -1;
  const room = (key: string) => {
    if (counts.size >= maxKeys && !counts.has(key)) counts = new Map();
  };
  return {
    hit(key) {
      const before = counts.get(key) ?? 0;
      if (before === SETTLED) return false;
      if (before + 1 >= hits) {
        counts.delete(key);
        return true;
      }
      room(key);
      counts.set(key, before + 1);
      return false;
    },
    settle(key) {
      room(key);
      counts.set(key, SETTLED);
    },
    settled: (key) => counts.get(key) === SETTLED,
  };
}
