import type { Dispatcher } from 'undici';
import type { OriginOptions, OriginPoolConfig, UpstreamConfig } from '../config/schema.ts';
import { realTimers, type Timers } from '../timers.ts';
import { createPicker, type Balanced, type Picker } from './balance.ts';
import { createHealthChecker, type HealthChecker, type Probed } from './health.ts';
import { createDispatcher, createProbeClient } from './dispatcher.ts';

/**
 * An upstream pool: its upstreams with their connections and health, and which one takes the next
 * request. An upstream is usable while its active checks say up and no passive failure benched it;
 * backups serve only when no primary is usable; with none usable, `choose` says so at once, so the
 * caller answers 503 (or the cache serves stale) without a connect timeout per request.
 */

export interface Upstream extends Balanced, Probed {
  /** scheme://host:port, for logs, errors and stats. */
  readonly name: string;
  /** The URL's path prefix ('' for none), put in front of every request target. */
  readonly basePath: string;
  readonly backup: boolean;
  readonly http2: boolean;
  readonly dispatcher: Dispatcher;
  /** Requests its connections carry at once (HTTP/1.1: one per connection); past it they wait in undici's queue. */
  readonly capacity: number;
  inFlight: number;
  /** Passive health: skipped until this time (timers clock) after a failed connection. */
  downUntil: number;
  requests: number;
  /** Attempts that failed (connection, reset, timeout) or were answered with a retried status. */
  failures: number;
  /** Time to response headers, moving average (ms). */
  latencyMs: number;
  lastError: string | null;
}

export interface UpstreamStats {
  url: string;
  weight: number;
  backup: boolean;
  http2: boolean;
  /** Takes requests now. */
  healthy: boolean;
  /** up | down by active checks, `off` without them. */
  checks: 'up' | 'down' | 'off';
  /** Failed probes in a row. */
  failing: number;
  lastCheck: string | null;
  /** Benched by a passive failure for this much longer. */
  benchedMs: number;
  /**
   * A failed connection happened less than failTimeout ago (benched, or for a lone upstream, still
   * tried since there is nothing to fail over to): what health reporting calls down.
   */
  recentlyFailed: boolean;
  inFlight: number;
  requests: number;
  failures: number;
  latencyMs: number;
  lastError: string | null;
}

export interface UpstreamPool {
  readonly upstreams: readonly Upstream[];
  /** Whether `choose` needs a key (hash balancing). */
  readonly keyed: boolean;
  /** The upstream for the next attempt, never one in `tried`; undefined when none is usable. */
  choose(key: string, tried?: ReadonlySet<Upstream>): Upstream | undefined;
  /** An attempt starts: in flight until `end` (called once, when its response ends or it fails). */
  begin(upstream: Upstream): void;
  /** Its response headers came after `ms`. */
  responded(upstream: Upstream, ms: number): void;
  end(upstream: Upstream): void;
  /**
   * An attempt failed (or was answered with a status that is retried). `connect`: no connection
   * could be made; the upstream is benched for failTimeout (nginx's max_fails=1 fail_timeout).
   */
  failed(upstream: Upstream, error: string, connect: boolean): void;
  stats(): { balance: string; healthChecks: boolean; upstreams: UpstreamStats[] };
  /** Resolves when no health probe is in flight (tests). */
  probesSettled(): Promise<void>;
  close(): Promise<void>;
}

export interface PoolOptions extends OriginOptions {
  readonly pool: OriginPoolConfig;
  readonly timers?: Timers;
  readonly random?: () => number;
  /** An upstream left or rejoined the rotation by its health checks. */
  readonly onHealthChange?: (upstream: Upstream, up: boolean, why: string) => void;
}

/** Weight of the newest sample in the latency average. */
const LATENCY_ALPHA = 0.2;

function upstreamOf(config: UpstreamConfig, options: OriginOptions): Upstream {
  const url = new URL(config.url);
  return {
    name: url.origin,
    basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
    weight: config.weight,
    backup: config.backup,
    http2: config.http2 !== null,
    dispatcher: createDispatcher(config, options),
    capacity: config.http2 !== null ? config.http2.connections * config.http2.maxConcurrentStreams : options.connections,
    current: 0,
    inFlight: 0,
    checkedUp: true,
    consecutiveFails: 0,
    consecutivePasses: 0,
    lastCheck: null,
    downUntil: 0,
    requests: 0,
    failures: 0,
    latencyMs: 0,
    lastError: null,
  };
}

export function createUpstreamPool(options: PoolOptions): UpstreamPool {
  const timers = options.timers ?? realTimers;
  const { balance, healthCheck } = options.pool;
  const upstreams = options.pool.upstreams.map((config) => upstreamOf(config, options));
  const primaries = upstreams.filter((u) => !u.backup);
  const backups = upstreams.filter((u) => u.backup);
  const pickers: Array<[readonly Upstream[], Picker<Upstream>]> = [[primaries, createPicker(balance, primaries)]];
  if (backups.length > 0) pickers.push([backups, createPicker(balance, backups)]);
  // With a single upstream there is nothing to fail over to: passive failures never bench it (as in
  // nginx), every request tries it. Active checks still can: then the answer is a quick 503.
  const passive = upstreams.length > 1;

  // The facts of the choice in progress, read by one predicate made once (no closure per request).
  let now = 0;
  let tried: ReadonlySet<Upstream> | undefined;
  const usable = (u: Upstream) => u.checkedUp && (!passive || u.downUntil <= now) && (tried === undefined || !tried.has(u));

  const probes = healthCheck === null ? [] : upstreams.map((u, i) => createProbeClient(options.pool.upstreams[i], options, healthCheck.timeout));
  const checker: HealthChecker | null = healthCheck === null ? null : createHealthChecker({
    targets: upstreams,
    config: healthCheck,
    timers,
    random: options.random,
    onChange: options.onHealthChange,
    probe: async (upstream, signal) => {
      const client = probes[upstreams.indexOf(upstream)];
      const response = await client.request({
        method: 'GET',
        path: upstream.basePath + healthCheck.path,
        headers: { host: healthCheck.host ?? new URL(upstream.name).host, 'user-agent': 'outpost-health-check' },
        signal,
      });
      await response.body.dump();
      return response.statusCode;
    },
  });

  return {
    upstreams,
    keyed: balance === 'hash',
    choose(key, exclude) {
      now = timers.now();
      tried = exclude;
      try {
        for (const [group, picker] of pickers) {
          const chosen = group.length > 0 ? picker.pick(usable, key) : undefined;
          if (chosen !== undefined) return chosen;
        }
        return undefined;
      } finally {
        tried = undefined;
      }
    },
    begin(upstream) {
      upstream.inFlight++;
      upstream.requests++;
    },
    responded(upstream, ms) {
      upstream.latencyMs = upstream.latencyMs === 0 ? ms : upstream.latencyMs + LATENCY_ALPHA * (ms - upstream.latencyMs);
    },
    end(upstream) {
      upstream.inFlight--;
    },
    failed(upstream, error, connect) {
      upstream.failures++;
      upstream.lastError = error;
      if (connect) upstream.downUntil = timers.now() + options.failTimeout;
    },
    stats() {
      const at = timers.now();
      return {
        balance,
        healthChecks: checker !== null,
        upstreams: upstreams.map((u) => ({
          url: u.name + u.basePath,
          weight: u.weight,
          backup: u.backup,
          http2: u.http2,
          healthy: u.checkedUp && (!passive || u.downUntil <= at),
          checks: checker === null ? 'off' : u.checkedUp ? 'up' : 'down',
          failing: u.consecutiveFails,
          lastCheck: u.lastCheck,
          benchedMs: passive ? Math.max(0, Math.round(u.downUntil - at)) : 0,
          recentlyFailed: u.downUntil > at,
          inFlight: u.inFlight,
          requests: u.requests,
          failures: u.failures,
          latencyMs: Math.round(u.latencyMs * 10) / 10,
          lastError: u.lastError,
        })),
      };
    },
    probesSettled: () => checker?.settled() ?? Promise.resolve(),
    async close() {
      checker?.close();
      const all = [...upstreams.map((u) => u.dispatcher), ...probes];
      await Promise.all(all.map((d) => d.close().catch(() => d.destroy())));
    },
  };
}
