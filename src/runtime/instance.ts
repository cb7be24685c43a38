import type { Config } from '../config/schema.ts';
import { createApp, type App, type AppDependencies } from '../app.ts';
import { startServers, type Running, type ServerEvents } from '../server/listener.ts';
import type { Dispatch, Served } from '../server/dispatch.ts';
import { createReadyReplies } from '../server/replies.ts';
import { responseEndChannel } from '../observability/channels.ts';

/**
 * One serving process: the listeners and the app (the compiled chains) behind them, which a reload
 * swaps. The listeners stay open across a reload, so no connection is dropped; each request runs
 * on the app that was current when it arrived, and an app that was replaced is closed only once
 * the last request it took has its reply (its origin pools then let the bodies in flight finish).
 *
 * What a reload cannot change without a restart (the sockets and their limits) is named in the
 * outcome instead of being half-applied.
 */

export interface ReloadOutcome {
  /** Config keys that changed but only take effect after a restart. */
  readonly restartNeeded: readonly string[];
  /** Whether the cache was kept (same `cache` section) or started empty. */
  readonly cacheKept: boolean;
}

export interface Instance {
  readonly running: Running;
  /** The app serving new requests. */
  current(): App;
  config(): Config;
  /** Swaps in a validated config; throws (and the old one keeps serving) when it cannot be applied. */
  reload(config: Config): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

/** One configuration's app, and its requests still open (the listener tells each one's end: Served). */
interface Generation extends Served {
  readonly app: App;
  readonly config: Config;
  inFlight: number;
  /** Counts one of its requests done: one function per generation, not two closures per request. */
  readonly settled: () => void;
  retired: boolean;
  /** Its engine went on to the next generation: closing this one must not close it. */
  engineHandedOn: boolean;
}

/** Sections bound to the open sockets (or the process layout): applied by a restart only. */
const RESTART_ONLY = ['listen', 'limits', 'admin', 'workers', 'memory'] as const;

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function restartOnlyChanges(before: Config, after: Config): string[] {
  const changed: string[] = [];
  for (const section of RESTART_ONLY) {
    const a = (before as Record<string, unknown>)[section];
    const b = (after as Record<string, unknown>)[section];
    if (a !== null && typeof a === 'object' && b !== null && typeof b === 'object') {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
        if (!same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) changed.push(`${section}.${key}`);
      }
    } else if (!same(a, b)) changed.push(section);
  }
  return changed;
}

const REPLY_SWEEP_MS = 5000;

export async function startInstance(config: Config, deps: AppDependencies = {}, events: ServerEvents = {}): Promise<Instance> {
  const closing = new Set<Promise<void>>();

  const retire = (gen: Generation) => {
    const done = gen.app.close(gen.engineHandedOn).catch((error) => events.onError?.('closing the previous configuration', error)).finally(() => closing.delete(done));
    closing.add(done);
  };
  const generation = (app: App, applied: Config): Generation => {
    const gen: Generation = { app, handler: app.handler, config: applied, inFlight: 0, retired: false, engineHandedOn: false, settled: () => {
      if (--gen.inFlight === 0 && gen.retired) retire(gen);
    } };
    return gen;
  };
  let current = generation(await createApp(config, deps), config);

  // Replies the server may send again without the chain; made under one configuration, dropped on a reload.
  const replies = createReadyReplies({ reported: () => responseEndChannel.hasSubscribers });
  // Kept replies nobody asked for in a sweep period are let go, and their bodies with them.
  const sweeper = setInterval(() => replies.sweep(), REPLY_SWEEP_MS);
  sweeper.unref();
  // Each request runs on the generation current when it arrives, counted open until the listener
  // has its reply or its failure (a throw included: the listener makes it a rejection).
  const dispatch: Dispatch = {
    begin: () => {
      const gen = current;
      gen.inFlight++;
      return gen;
    },
  };

  let running: Running;
  try {
    running = await startServers(config, dispatch, events, replies);
  } catch (err) {
    clearInterval(sweeper);
    await current.app.close();
    throw err;
  }

  let reloading: Promise<unknown> = Promise.resolve();
  let closed: Promise<void> | undefined;
  async function reload(next: Config): Promise<ReloadOutcome> {
    const previous = current;
    const cacheKept = same(previous.config.cache, next.cache);
    // Built completely before anything changes: a failure leaves the old config serving.
    const app = await createApp(next, { ...deps, engine: cacheKept ? previous.app.engine : undefined });
    try {
      // Always: certificates may have been replaced on disk under the same paths.
      await running.updateTls(next.tls);
    } catch (err) {
      await app.close(cacheKept);
      throw err;
    }
    current = generation(app, next);
    replies.clear();
    previous.engineHandedOn = cacheKept;
    previous.retired = true;
    if (previous.inFlight === 0) retire(previous);
    return { restartNeeded: restartOnlyChanges(previous.config, next), cacheKept };
  }

  return {
    running,
    current: () => current.app,
    config: () => current.config,
    // One reload at a time, in the order asked.
    reload: (next) => {
      const result = reloading.then(() => reload(next));
      reloading = result.catch(() => {});
      return result;
    },
    close: () => (closed ??= (async () => {
      clearInterval(sweeper);
      await running.close();
      await reloading;
      await Promise.all([...closing]);
      await current.app.close();
    })()),
  };
}
