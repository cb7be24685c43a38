import type { Config } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';
import { startLogs, type Logs } from '../observability/log.ts';
import { startAdmin, type AdminActions, type ReloadAnswer, type RunningAdmin } from '../observability/admin.ts';
import { startInstance, type Instance } from './instance.ts';
import { createMetrics, type Metrics } from '../observability/metrics.ts';
import type { ConfigSource } from './source.ts';

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

/** Waits for SIGTERM or SIGINT; a second one exits at once. */
export function stopSignal(shutdownTimeout: number): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      console.log(`outpost: ${signal}: finishing in-flight requests (at most ${shutdownTimeout / 1000} s)`);
      process.once(signal, () => process.exit(1)); // a second signal does not wait
      resolve(signal);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
  });
}

/** The metrics of one serving process, reading the current app's cache engine and upstreams. */
export function nodeMetrics(instance: Instance): Metrics {
  const metrics = createMetrics({
    cache: () => { const engine = instance.current().engine; return { stats: engine.stats, usage: engine.usage() }; },
    upstreams: () => instance.current().upstreams(),
  });
  metrics.watch(instance.running.servers);
  return metrics;
}

export async function serveSingle(config: Config, source: ConfigSource): Promise<number> {
  const logs: Logs = startLogs(config.log);
  let instance: Instance;
  try {
    instance = await startInstance(config, {}, { onError: (where, error) => publishError({ ctx: null, error, where }) });
  } catch (err) {
    await logs.close();
    throw err;
  }
  console.log(`outpost: listening on ${instance.running.urls.join(' and ')}`);
  const metrics = nodeMetrics(instance);
  const reload = reloader(instance, source, (next) => logs.configure(next.log));

  const actions: AdminActions = {
    purge: (target, soft) => instance.current().admin.purge(target, soft),
    stats: () => instance.current().admin.stats(),
    explain: (url, headers) => instance.current().admin.explain!(url, headers),
    reload: () => reload('POST /reload'),
    metrics: () => metrics.text(),
  };
  let admin: RunningAdmin | null = null;
  if (config.admin.listen !== null && config.admin.token !== null) {
    try {
      admin = await startAdmin(config.admin.listen, config.admin.token, actions);
    } catch (err) {
      await instance.close();
      await logs.close();
      throw err;
    }
    console.log(`outpost: admin API on http://${config.admin.listen.replace(/:\d+$/, `:${admin.port}`)}/ (purge, stats, reload)`);
  } else if (config.admin.listen !== null) {
    console.log('outpost: admin API off: set admin.token (or OUTPOST_ADMIN_TOKEN) to enable purge');
  }

  const onHup = () => { void reload('SIGHUP'); };
  const onUsr1 = () => { logs.reopen(); console.log('outpost: SIGUSR1: access log reopened'); };
  process.on('SIGHUP', onHup);
  process.on('SIGUSR1', onUsr1);
  await stopSignal(config.limits.shutdownTimeout);
  await instance.close();
  await admin?.close();
  process.off('SIGHUP', onHup);
  process.off('SIGUSR1', onUsr1);
  metrics.close();
  await logs.close();
  console.log('outpost: stopped');
  return 0;
}
