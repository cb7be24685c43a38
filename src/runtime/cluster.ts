import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import type { AdminActions, ReloadAnswer, RunningAdmin } from '../observability/admin.ts';
import { answerRequests, ask, isMessage, sumStats, type Failed, type Ready, type WorkerMethod } from './ipc.ts';
import { restartOnlyChanges } from './instance.ts';
import { devCertificate } from '../server/tls.ts';
import { dashboardView, mergeSnapshots, type FeedSnapshot } from '../observability/feed.ts';
import { processMemoryLimit, startBudget, startConfiguredAdmin, startNode, stopSignal } from './serve.ts';
import type { ConfigSource } from './source.ts';
import { servingLaunch } from './node-flags.ts';
import { keepCompiledModules } from './compile-cache.ts';
import { createNodeTier } from '../cache/store/node-tier.ts';
import { createPrimaryChannel, NODE_WORKERS } from './primary-channel.ts';
import { createNodeLimits } from '../guard/node-limiter.ts';
import { createNodeFlights } from '../cache/node-flights.ts';
import { createNodeConnections } from '../server/node-connections.ts';
import { startConfiguredTrimmer } from './malloc-trim.ts';

/**
 * `workers: N` (or auto): a primary process supervises N workers that share the listeners through
 * node:cluster (the primary accepts and hands connections round-robin, Node's default on Linux).
 * Each worker is a whole serving process (its own app, logs and metrics); the memory cache is the
 * node's: each worker holds what it stored or served and the primary knows who holds what
 * (node-tier.ts), so what one worker stored is a hit in all and an invalidation in one reaches all. The
 * primary holds the admin API and answers for the node by asking every worker and combining:
 * purge and stats are summed, metrics aggregated (prom-client), explain says which workers hold
 * the URL. SIGHUP / POST /reload: the primary validates the new config once, then each worker
 * swaps it in place in turn, so some worker accepts at every moment. A worker that dies is
 * started again after a back-off. SIGTERM/SIGINT: every worker drains, then the primary exits.
 */

/** The environment variable that hands a worker its (already validated) config. */
export const WORKER_CONFIG = 'OUTPOST_WORKER_CONFIG';

export const workerCount = (workers: Config['workers']): number => (workers === 'auto' ? availableParallelism() : workers);

/** Back-off before restarting a worker that died: doubles per quick death, at most 30 s. */
export function restartDelay(quickDeaths: number): number {
  return Math.min(30_000, 250 * 2 ** Math.max(0, quickDeaths - 1));
}
/** A worker that ran this long before dying starts the back-off again from the beginning. */
const STABLE_MS = 30_000;

export async function runPrimary(config: Config, source: ConfigSource): Promise<number> {
  const count = workerCount(config.workers);
  let current = config;
  let stopping = false;
  const workers = new Set<Worker>();
  /** Workers that listen and answer requests (a starting one does neither yet). */
  const serving = new Set<Worker>();
  let quickDeaths = 0;

  /** Starts a worker; resolves with its URLs once it listens, rejects if it fails first. */
  // Workers start with the serving runtime flags (node-flags.ts) besides the primary's own, but
  // for those the operator set in NODE_OPTIONS (which workers inherit, and a flag would override).
  // Advanced serialization: records handed from worker to worker carry their bodies as bytes (not JSON arrays).
  cluster.setupPrimary({ execArgv: servingLaunch([], process.execArgv, process.env.NODE_OPTIONS) ?? [...process.execArgv], serialization: 'advanced' });
  // What the workers share through the primary: the memory cache's directory (node-tier.ts), their
  // turns at fetching a URI (node-flights.ts), the memory rate limits' counters (node-limiter.ts)
  // and each client's open connections (node-connections.ts).
  const tier = createNodeTier();
  const limits = createNodeLimits();
  const shared = createPrimaryChannel({ cache: tier, flights: createNodeFlights(), limits, connections: createNodeConnections() }, (error) => console.error(`outpost: ${error instanceof Error ? error.message : String(error)}`));
  // The primary holds no cached bodies (the workers do): its memory.limit is "auto"'s headroom alone.
  const budget = startBudget(config, 'primary');
  // The primary's free pages (the directory's, the messages') go back when the load stops, as the workers' do.
  const trimmer = startConfiguredTrimmer(config.memory, budget && (() => budget.tight()));
  keepCompiledModules(); // the workers load every module from the cache (compile-cache.ts)
  const fork = () => new Promise<{ worker: Worker; urls: readonly string[] }>((resolve, reject) => {
    // The config the primary validated (and last applied): a worker started after a reload, or
    // after a crash, serves what the others serve, not whatever the file says now.
    const worker = cluster.fork({ [WORKER_CONFIG]: JSON.stringify(current), [NODE_WORKERS]: String(count) });
    const started = Date.now();
    workers.add(worker);
    shared.attach(worker);
    let ready = false;
    worker.on('message', (message: unknown) => {
      if (isMessage<Ready>(message, 'ready')) { ready = true; serving.add(worker); resolve({ worker, urls: message.urls }); }
      if (isMessage<Failed>(message, 'failed')) {
        const { outpost: _, ...fields } = message;
        reject(Object.assign(new Error(message.message), fields));
      }
    });
    worker.once('exit', (code, signal) => {
      workers.delete(worker);
      serving.delete(worker);
      if (!ready) { reject(new Error(`worker exited while starting (${signal ?? `code ${code}`})`)); return; }
      if (stopping) return;
      quickDeaths = Date.now() - started < STABLE_MS ? quickDeaths + 1 : 1;
      const delay = restartDelay(quickDeaths);
      console.error(`outpost: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); starting another in ${delay} ms`);
      setTimeout(() => {
        if (stopping) return;
        fork().catch((err: Error) => console.error(`outpost: a worker failed to start: ${err.message}`));
      }, delay).unref();
    });
  });

  // Made once here: workers making the development certificate at the same time would each write their own.
  if (config.tls.certificates.length === 0) await devCertificate(config.tls.devCertDir);
  const first = await Promise.allSettled(Array.from({ length: count }, fork));
  const failure = first.find((r) => r.status === 'rejected');
  if (failure !== undefined) {
    stopping = true;
    for (const worker of workers) worker.kill('SIGTERM');
    throw (failure as PromiseRejectedResult).reason;
  }
  const urls = (first[0] as PromiseFulfilledResult<{ urls: readonly string[] }>).value.urls;
  // Before the line that says it listens: a SIGTERM from then on drains the workers (serve.ts).
  const stopped = stopSignal(() => current.limits.shutdownTimeout);
  console.log(`outpost: listening on ${urls.join(' and ')} (${count} workers)`);

  const live = () => [...serving].filter((w) => w.isConnected());
  const askAll = <T>(method: WorkerMethod, args: readonly unknown[] = []) => Promise.all(live().map((w) => ask<T>(w, method, args)));

  let reloading: Promise<unknown> = Promise.resolve();
  const reloadAll = (why: string): Promise<ReloadAnswer> => {
    const run = async (): Promise<ReloadAnswer> => {
      const report = await source();
      if (report.config === null) {
        console.error(`outpost: reload (${why}) refused, the previous configuration keeps serving: ${new ConfigError(report.errors).message}`);
        return { reloaded: false, problems: report.errors };
      }
      const next = report.config;
      // One worker at a time: the others keep serving while it swaps (and it keeps accepting too).
      try {
        for (const worker of live()) await ask(worker, 'reload', [next], 30_000);
      } catch (err) {
        const message = (err as Error).message;
        console.error(`outpost: reload (${why}) failed: ${message}`);
        return { reloaded: false, problems: [message] };
      }
      const restartNeeded = restartOnlyChanges(current, next);
      current = next;
      budget?.setLimit(processMemoryLimit(next, 0));
      const warnings = [...report.warnings, ...restartNeeded.map((key) => `${key} changed: it takes effect on restart`)];
      console.log(`outpost: configuration reloaded (${why}) in ${workers.size} workers${warnings.length > 0 ? `; ${warnings.join('; ')}` : ''}`);
      return { reloaded: true, warnings, restartNeeded };
    };
    const result = reloading.then(run);
    reloading = result.catch(() => {});
    return result;
  };

  const actions: AdminActions = {
    purge: async (target, soft) => (await askAll<number>('purge', [target, soft])).reduce((a, b) => a + b, 0),
    stats: async () => ({
      ...sumStats(await askAll<Record<string, unknown>>('stats')),
      workers: serving.size, workerPids: [...serving].map((w) => w.process.pid),
      ...(tier.usage() === undefined ? {} : { nodeTier: tier.usage() }),
      ...(trimmer === undefined ? {} : { primaryMalloc: trimmer.stats() }),
    }),
    metrics: async () => {
      const { AggregatorRegistry } = await import('prom-client'); // loaded when metrics are first asked for
      return AggregatorRegistry.aggregate(await askAll<any[]>('metrics')).metrics();
    },
    explain: async (url, headers) => {
      const answers = await askAll<Record<string, unknown>>('explain', [url.href, headers]);
      const stored = answers.filter((a) => a.stored === true);
      return { ...(stored[0] ?? answers[0]), workers: answers.length, storedIn: stored.length };
    },
    reload: () => reloadAll('POST /reload'),
    dashboard: async () => {
      const [feeds, stats] = await Promise.all([
        askAll<{ snapshot: FeedSnapshot; upstreams: Array<{ upstream: string; up: boolean }> }>('feed'),
        actions.stats(),
      ]);
      // An upstream is down for the node when any worker skips it.
      const health = new Map<string, boolean>();
      for (const { upstreams } of feeds) for (const { upstream, up } of upstreams) health.set(upstream, (health.get(upstream) ?? true) && up);
      return dashboardView(mergeSnapshots(feeds.map((f) => f.snapshot)), { stats, upstreams: [...health].map(([upstream, up]) => ({ upstream, up })), workers: feeds.length });
    },
  };
  let admin: RunningAdmin | null;
  try {
    admin = await startConfiguredAdmin(config, actions);
  } catch (err) {
    stopping = true;
    for (const worker of workers) worker.kill('SIGTERM');
    throw err;
  }

  const onHup = () => { void reloadAll('SIGHUP'); };
  const onUsr1 = () => { void askAll('reopen').then(() => console.log(`outpost: SIGUSR1: access log reopened in ${workers.size} workers`)); };
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  await stopped;
  stopping = true;
  process.off('SIGHUP', onHup);
  process.off('SIGUSR1', onUsr1);
  // Each worker drains (its own shutdown deadline); the primary waits for all of them, and ends
  // one that has not exited well after that deadline.
  const grace = current.limits.shutdownTimeout + 5000;
  await Promise.all([...workers].map((worker) => new Promise<void>((resolve) => {
    if (worker.isDead()) { resolve(); return; }
    const timer = setTimeout(() => worker.process.kill('SIGKILL'), grace);
    worker.once('exit', () => { clearTimeout(timer); resolve(); });
    worker.process.kill('SIGTERM');
  })));
  await admin?.close();
  trimmer?.stop();
  budget?.stop();
  await tier.close();
  await limits.close();
  console.log('outpost: stopped');
  return 0;
}

export async function runWorker(config: Config): Promise<number> {
  let node;
  try {
    node = await startNode(config);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
    process.send?.({ outpost: 'failed', message: e instanceof Error ? e.message : String(err), code: e?.code, syscall: e?.syscall, port: e?.port, address: e?.address } satisfies Failed);
    throw err;
  }
  const running = node;
  const stopAnswering = answerRequests({
    purge: (target, soft) => running.actions.purge(target, soft),
    stats: () => running.actions.stats(),
    metrics: () => running.metrics.json(),
    explain: (url: string, headers: Record<string, string>) => running.actions.explain(new URL(url), headers),
    reload: async (next: Config) => { await running.apply(next); return true; },
    feed: () => ({ snapshot: running.feed.snapshot(), upstreams: running.instance.current().upstreams() }),
    reopen: () => { running.logs.reopen(); return true; },
  });
  process.send?.({ outpost: 'ready', urls: running.instance.running.urls } satisfies Ready);
  // SIGHUP and SIGUSR1 are the primary's to act on (main.ts leaves them harmless here).
  await stopSignal(() => config.limits.shutdownTimeout, { worker: true });
  stopAnswering();
  await running.close();
  // The IPC channel would keep this process alive: let go of it, and the process ends.
  process.disconnect?.();
  return 0;
}
