import type { Config } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { startLogs, type Logs } from '../observability/log.ts';
import { startAdmin, type AdminActions, type ReloadAnswer, type RunningAdmin } from '../observability/admin.ts';
import { startInstance, type Instance, type ReloadOutcome } from './instance.ts';
import type { Metrics } from '../observability/metrics.ts';
import { createFeed, dashboardView, type Feed } from '../observability/feed.ts';
import type { ConfigSource } from './source.ts';
import { startConfiguredTrimmer, type MallocTrimmer } from './malloc-trim.ts';
import { keepCompiledModules } from './compile-cache.ts';
import { growthSetByOperator, memoryLimitOf, startHeapBudget, type HeapBudget } from './heap-budget.ts';
import { memoryCacheBytes } from '../app.ts';

/**
 * Outpost as one process (`workers: 1`): the serving instance, the admin API, the logs, and the
 * signals an operator sends:
 *   SIGHUP           reload the config and certificates (as POST /reload)
 *   SIGUSR1          reopen the log files (after logrotate moved them)
 *   SIGTERM, SIGINT  stop accepting, let in-flight requests finish, exit 0 (a second one: exit now)
 */

export interface Reloader {
  /** Reads the config again and applies it; a refused config is logged and answered, the old one keeps serving. */
  (why: string): Promise<ReloadAnswer>;
}

/** Reload for one instance, shared with the cluster worker: read, validate, apply, report. */
export function reloader(instance: Instance, source: ConfigSource, onApplied: (config: Config) => void = () => {}): Reloader {
  return async (why) => {
    const report = await source();
    if (report.config === null) {
      publishError({ ctx: null, error: new ConfigError(report.errors), where: `reload (${why}) refused, the previous configuration keeps serving` });
      return { reloaded: false, problems: report.errors };
    }
    try {
      const outcome = await instance.reload(report.config);
      onApplied(report.config);
      const warnings = [...report.warnings, ...outcome.restartNeeded.map((key) => `${key} changed: it takes effect on restart`)];
      if (!outcome.cacheKept) warnings.push('cache changed: the new cache starts empty');
      console.log(`outpost: configuration reloaded (${why})${warnings.length > 0 ? `; ${warnings.join('; ')}` : ''}`);
      return { reloaded: true, warnings, restartNeeded: outcome.restartNeeded };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      publishError({ ctx: null, error, where: `reload (${why}) failed, the previous configuration keeps serving` });
      return { reloaded: false, problems: [message] };
    }
  };
}

/**
 * Waits for SIGTERM or SIGINT. In a lone process a second one exits at once; a worker ignores
 * further ones (a terminal's Ctrl-C reaches it and the primary's SIGTERM follows) and stays quiet.
 * `shutdownTimeout` is read when the signal comes (a reload may have changed it since).
 */
export function stopSignal(shutdownTimeout: () => number, options: { worker?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      if (options.worker) {
        for (const again of ['SIGTERM', 'SIGINT'] as const) process.on(again, () => {});
      } else {
        console.log(`outpost: ${signal}: finishing in-flight requests (at most ${shutdownTimeout() / 1000} s)`);
        process.once(signal, () => process.exit(1)); // a second signal does not wait
      }
      resolve(signal);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
  });
}

/**
 * The metrics of one serving process, reading the current app's cache engine and upstreams.
 * prom-client (with @opentelemetry/api: 0.7 MB of a started node's live heap, heap snapshots) is
 * loaded only here: a node without the admin API, the default, never loads it.
 */
export async function nodeMetrics(instance: Instance, trimmer?: MallocTrimmer, budget?: HeapBudget): Promise<Metrics> {
  const { createMetrics } = await import('../observability/metrics.ts');
  const metrics = createMetrics({
    cache: () => { const engine = instance.current().engine; return { stats: engine.stats, usage: engine.usage() }; },
    upstreams: () => instance.current().upstreams(),
    ...(trimmer && { malloc: () => ({ info: trimmer.info(), stats: trimmer.stats() }) }),
    ...(budget && { heapBudget: () => budget.stats() }),
  });
  metrics.watch(instance.running.servers);
  return metrics;
}

/**
 * One serving process's parts (the whole node with `workers: 1`, one worker otherwise): logs,
 * the instance, metrics, and what the admin API can ask of them.
 */
export interface NodeProcess {
  readonly instance: Instance;
  readonly logs: Logs;
  readonly metrics: Metrics;
  /** The dashboard's data for this process. */
  readonly feed: Feed;
  /** The admin actions this process answers for itself (reload: re-read from the source). */
  readonly actions: Required<Pick<AdminActions, 'purge' | 'stats' | 'explain' | 'metrics' | 'dashboard'>>;
  /** Applies a config validated elsewhere (the primary's), logs included. */
  apply(config: Config): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

/** memory.limit in bytes for a process whose memory cache holds up to `cacheBytes` (this one's by default), or null when off. */
export function processMemoryLimit(config: Config, cacheBytes = memoryCacheBytes(config.cache)): number | null {
  return memoryLimitOf(config.memory.limit, cacheBytes);
}

/**
 * V8 collects sooner near memory.limit, and later while the memory cache fills (heap-budget.ts):
 * unless it is off, or the operator set V8's heap growth himself. `serving`: the instance whose
 * memory cache this process holds (its bytes are read), or a cluster's primary, which holds no
 * cached bodies (its memory.limit is "auto"'s headroom alone).
 */
export function startBudget(config: Config, serving: Instance | 'primary'): HeapBudget | undefined {
  if (growthSetByOperator()) return undefined;
  if (serving === 'primary') return startHeapBudget(processMemoryLimit(config, 0));
  return startHeapBudget(processMemoryLimit(config), { cacheHeld: () => serving.current().engine.usage()?.bytes });
}

export async function startNode(config: Config): Promise<NodeProcess> {
  const logs: Logs = startLogs(config.log);
  let instance: Instance;
  try {
    instance = await startInstance(config, {}, { onError: (where, error) => publishError({ ctx: null, error, where }) });
  } catch (err) {
    await logs.close();
    throw err;
  }
  const budget = startBudget(config, instance);
  // glibc's free pages back to the system when the load stops, and more often near memory.limit
  // (the startup line says when it cannot).
  const trimmer = startConfiguredTrimmer(config.memory, budget && (() => budget.tight()));
  // Metrics and the dashboard's feed cost every response a little (they subscribe to its end):
  // only when the admin API that serves them is on.
  const observed = config.admin.listen !== null && config.admin.token !== null;
  const metrics = observed ? await nodeMetrics(instance, trimmer, budget) : UNOBSERVED_METRICS;
  const feed = observed ? createFeed() : unobservedFeed();
  // Listening, every module loaded (metrics.ts too when observed): into the compile cache now.
  keepCompiledModules();
  return {
    instance,
    logs,
    metrics,
    feed,
    actions: {
      purge: (target, soft) => instance.current().admin.purge(target, soft),
      stats: () => instance.current().admin.stats(),
      explain: (url, headers) => instance.current().admin.explain!(url, headers),
      metrics: () => metrics.text(),
      dashboard: async () => dashboardView(feed.snapshot(), { stats: await instance.current().admin.stats(), upstreams: instance.current().upstreams(), workers: 1 }),
    },
    async apply(next) {
      const outcome = await instance.reload(next);
      logs.configure(next.log);
      budget?.setLimit(processMemoryLimit(next));
      return outcome;
    },
    async close() {
      trimmer?.stop();
      budget?.stop();
      await instance.close();
      metrics.close();
      feed.close();
      await logs.close();
    },
  };
}

/** Nothing collected: no admin API to read it. */
const UNOBSERVED_METRICS: Metrics = { json: async () => [], watch() {}, text: async () => '', close() {} };

function unobservedFeed(): Feed {
  return { snapshot: () => ({ seconds: [], missed: [], errors: [] }), close() {} };
}

/** The admin API when configured with a token; a line saying why not otherwise. */
export async function startConfiguredAdmin(config: Config, actions: AdminActions): Promise<RunningAdmin | null> {
  if (config.admin.listen !== null && config.admin.token !== null) {
    const admin = await startAdmin(config.admin.listen, config.admin.token, actions);
    console.log(`outpost: admin API on http://${config.admin.listen.replace(/:\d+$/, `:${admin.port}`)}/ (purge, stats, metrics, explain, reload, dashboard)`);
    return admin;
  }
  if (config.admin.listen !== null) console.log('outpost: admin API off: set admin.token (or OUTPOST_ADMIN_TOKEN) to enable purge');
  return null;
}

export async function serveSingle(config: Config, source: ConfigSource): Promise<number> {
  const node = await startNode(config);
  // Before the line that says it listens (what supervisors and scripts wait for): a SIGTERM from
  // then on drains and exits 0, even one that comes while the admin API is still starting.
  const stopped = stopSignal(() => config.limits.shutdownTimeout);
  console.log(`outpost: listening on ${node.instance.running.urls.join(' and ')}`);
  const reload = reloader(node.instance, source, (next) => node.logs.configure(next.log));
  let admin: RunningAdmin | null;
  try {
    admin = await startConfiguredAdmin(config, { ...node.actions, reload: () => reload('POST /reload') });
  } catch (err) {
    await node.close();
    throw err;
  }

  const onHup = () => { void reload('SIGHUP'); };
  const onUsr1 = () => { node.logs.reopen(); console.log('outpost: SIGUSR1: access log reopened'); };
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  await stopped;
  await node.instance.close();
  await admin?.close();
  process.off('SIGHUP', onHup);
  process.off('SIGUSR1', onUsr1);
  await node.close();
  console.log('outpost: stopped');
  return 0;
}
