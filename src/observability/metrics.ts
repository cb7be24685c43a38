import diagnostics from 'node:diagnostics_channel';
import type { Http2SecureServer, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Server as HttpServer } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { responseEndChannel, type ResponseEndEvent } from './channels.ts';
import type { CacheStats } from '../cache/engine.ts';
import type { StoreUsage } from '../cache/store/contract.ts';
import type { MallocInfo, TrimStats } from '../runtime/malloc-trim.ts';
import type { HeapBudgetStats } from '../runtime/heap-budget.ts';
import { spareSlabBytes } from '../cache/store/slab-memory.ts';
import { below, count, leaves, type Tally } from './tally.ts';
import { tempSpace } from '../origin/temp-file.ts';
import { openTunnels } from '../server/upgrade.ts';

/**
 * Prometheus metrics (prom-client), served by the admin API at GET /metrics. Every label comes
 * from a small fixed set or from the config (site, route, upstream): no URLs, no client values,
 * so the number of series is bounded by the config.
 *
 * Sources: the response writer's end report (requests, durations, bytes sent, compression), the
 * cache engine's counters (read when scraped), undici's own diagnostics channels for the origin
 * side (requests, errors, bytes fetched, per upstream), the listeners (handshakes, connections,
 * sessions, streams), and prom-client's default process metrics (event-loop lag among them).
 */

export interface MetricsSources {
  /** The cache engine's counters and its store's usage, read at scrape time (the engine may change on reload). */
  cache(): { stats: CacheStats; usage: StoreUsage | undefined } | undefined;
  /** Passive health per upstream (1 up, 0 skipped after a failed connect). */
  upstreams(): Array<{ upstream: string; up: boolean }>;
  /** glibc's heap and what `memory.trim` gave back, when the trimmer runs in this process. */
  malloc?(): { info: MallocInfo; stats: TrimStats };
  /** memory.limit's state, when it is on in this process. */
  heapBudget?(): HeapBudgetStats;
}

export interface Metrics {
  /** Every metric as prom-client's JSON (a cluster worker's answer, aggregated by the primary). */
  json(): Promise<Array<MetricObjectWithValues<MetricValue<string>>>>;
  /** Counts handshakes, connections, sessions and streams on these listeners. */
  watch(servers: { https: Http2SecureServer; http: HttpServer | null }): void;
  text(): Promise<string>;
  close(): void;
}

const STATUS_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'];
/** A status's class label, from a table: no string made per response. */
const statusClass = (status: number) => (status >= 100 && status < 600 ? STATUS_CLASSES[Math.floor(status / 100)] : 'other');
/** A site's label: its first host pattern; a route's: its path prefix ("/" for the site's root). */
const siteLabel = (event: ResponseEndEvent) => event.request.site?.hosts[0] ?? 'none';
const routeLabel = (event: ResponseEndEvent) => event.request.route?.path ?? (event.request.site ? '/' : 'none');
/** Error codes from undici and the socket layer: a bounded vocabulary; anything else is "other". */
const errorCode = (error: unknown) => {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code) ? code : 'other';
};

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const DURATION = 'outpost_request_duration_seconds';

/**
 * The request duration histogram by cache result, kept in arrays and exported in prom-client's
 * metric shape (what Registry and AggregatorRegistry read), without per-observation label hashing.
 */
function durationHistogram(registry: Registry) {
  const series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  const help = 'From the request\'s arrival to the last byte of the response';
  const get = async () => {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const [cache, s] of series) {
      let cumulative = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += s.buckets[i];
        values.push({ labels: { le, cache }, value: cumulative, metricName: `${DURATION}_bucket` });
      });
      values.push({ labels: { le: '+Inf', cache }, value: s.count, metricName: `${DURATION}_bucket` });
      values.push({ labels: { cache }, value: s.sum, metricName: `${DURATION}_sum` });
      values.push({ labels: { cache }, value: s.count, metricName: `${DURATION}_count` });
    }
    return { name: DURATION, help, type: 'histogram' as const, values, aggregator: 'sum' as const };
  };
  registry.registerMetric({ name: DURATION, help, type: 'histogram', aggregator: 'sum', get, reset: () => series.clear() } as unknown as Parameters<Registry['registerMetric']>[0]);
  return {
    observe(cache: string, seconds: number) {
      let s = series.get(cache);
      if (s === undefined) series.set(cache, s = { buckets: new Array(DURATION_BUCKETS.length).fill(0), sum: 0, count: 0 });
      s.sum += seconds;
      s.count++;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) if (seconds <= DURATION_BUCKETS[i]) { s.buckets[i]++; break; }
    },
  };
}

export function createMetrics(sources: MetricsSources, options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });

  // The per-response and per-origin-request metrics are counted in tallies (tally.ts) and handed
  // to prom-client when scraped: a prom-client inc with labels hashes its label object (750 ns per
  // response for these, measured).
  const tallied = (name: string, help: string, labelNames: readonly string[]): Tally => {
    const counts: Tally = new Map();
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        for (const [values, n] of leaves(counts, labelNames.length)) {
          this.inc(Object.fromEntries(labelNames.map((label, i) => [label, values[i]])), n);
        }
      },
    });
    return counts;
  };
  const requests = tallied('outpost_requests_total', 'Responses sent, by site, route, status class and cache result', ['site', 'route', 'status_class', 'cache']);
  const bytesSent = tallied('outpost_response_bytes_total', 'Response body bytes sent to clients', ['cache']);
  const aborted = tallied('outpost_responses_aborted_total', 'Responses not completed, by outcome (client-abort, body-error)', ['outcome']);
  const compressionIn = tallied('outpost_compression_bytes_in_total', 'Identity bytes of the responses sent encoded, per coding', ['coding']);
  const compressionOut = tallied('outpost_compression_bytes_out_total', 'Encoded bytes sent for them, per coding', ['coding']);
  const duration = durationHistogram(registry);

  const originRequests = tallied('outpost_origin_requests_total', 'Requests to the origin, by upstream and response status class', ['upstream', 'status_class']);
  const originErrors = tallied('outpost_origin_errors_total', 'Origin requests that failed (connect, timeout, reset), by upstream and code', ['upstream', 'code']);
  const originBytes = tallied('outpost_origin_bytes_total', 'Response body bytes fetched from the origin, by upstream', ['upstream']);
  new Gauge({
    name: 'outpost_upstream_up', help: 'Passive health: 1 while the upstream is used, 0 while it is skipped after a failed connect', labelNames: ['upstream'], registers: [registry],
    aggregator: 'min',
    collect() {
      this.reset();
      for (const { upstream, up } of sources.upstreams()) this.set({ upstream }, up ? 1 : 0);
    },
  });

  // The cache engine keeps its own counters; they are read when scraped.
  const cacheCounter = (name: string, help: string, read: (stats: CacheStats) => number) => new Counter({
    name, help, registers: [registry],
    collect() {
      const cache = sources.cache();
      if (cache !== undefined) { this.reset(); this.inc(read(cache.stats)); }
    },
  });
  cacheCounter('outpost_cache_hits_total', 'Requests answered from the cache (fresh, or stale where allowed)', (s) => s.hits);
  cacheCounter('outpost_cache_misses_total', 'Requests the cache could not answer alone (nothing stored, stale, bypass)', (s) => s.misses);
  cacheCounter('outpost_cache_stores_total', 'Responses the store accepted', (s) => s.stores);
  cacheCounter('outpost_cache_store_errors_total', 'Store reads or writes that failed', (s) => s.storeErrors);
  cacheCounter('outpost_cache_coalesced_total', 'Requests that waited on an identical origin fetch instead of making their own', (s) => s.coalesced);
  cacheCounter('outpost_cache_revalidations_total', 'Conditional requests sent to the origin for stale responses', (s) => s.revalidations);
  cacheCounter('outpost_cache_stale_served_total', 'Stale responses served because the origin failed (stale-if-error, grace)', (s) => s.staleServed);
  new Counter({
    name: 'outpost_cache_evictions_total', help: 'Stored responses evicted to make room (memory store, near tier)', registers: [registry],
    collect() {
      const usage = sources.cache()?.usage;
      if (usage !== undefined) { this.reset(); this.inc(usage.evictions); }
    },
  });
  new Gauge({
    name: 'outpost_cache_size_bytes', help: 'Bytes held by this process\'s cache store (memory store, near tier)', registers: [registry],
    collect() { this.set(sources.cache()?.usage?.bytes ?? 0); },
  });
  new Gauge({
    name: 'outpost_cache_slab_bytes', help: 'The memory store\'s slabs: bytes allocated, and of those, bytes of the bodies it holds; spare: slabs let go and kept mapped for the next ones', labelNames: ['state'], registers: [registry],
    collect() {
      const slabs = sources.cache()?.usage?.slabs;
      this.set({ state: 'allocated' }, slabs?.bytes ?? 0);
      this.set({ state: 'held' }, slabs?.live ?? 0);
      this.set({ state: 'spare' }, spareSlabBytes());
    },
  });
  new Gauge({
    name: 'outpost_cache_entries', help: 'Records held by this process\'s cache store (responses, variants, indexes)', registers: [registry],
    collect() { this.set(sources.cache()?.usage?.entries ?? 0); },
  });

  if (sources.malloc !== undefined) {
    const malloc = sources.malloc;
    // One mallinfo2 per scrape (it walks the free lists: up to ~2 ms on a fragmented heap).
    new Gauge({
      name: 'outpost_malloc_bytes', help: 'glibc\'s heap: bytes in use and free in its arenas (free chunks keep their pages until trimmed)', labelNames: ['state'], registers: [registry],
      collect() {
        const { info } = malloc();
        this.set({ state: 'in_use' }, info.inUse);
        this.set({ state: 'free' }, info.free);
      },
    });
    const trimCounter = (name: string, help: string, read: (stats: TrimStats) => number) => new Counter({
      name, help, registers: [registry],
      collect() { this.reset(); this.inc(read(malloc().stats)); },
    });
    trimCounter('outpost_malloc_trims_total', 'malloc_trim calls (memory.trim)', (s) => s.trims);
    trimCounter('outpost_malloc_trim_seconds_total', 'Time spent in malloc_trim (it holds glibc\'s lock)', (s) => s.seconds);
    trimCounter('outpost_malloc_trim_released_bytes_total', 'Resident memory given back by malloc_trim (RSS before less after)', (s) => s.releasedBytes);
    trimCounter('outpost_memory_quiet_collections_total', 'Memory-reducing V8 collections asked for when the load stopped (memory.trim)', (s) => s.collections);
    trimCounter('outpost_memory_quiet_collection_seconds_total', 'Time those collections took (the process pauses for most of it)', (s) => s.collectionSeconds);
    trimCounter('outpost_memory_pressure_collections_total', 'Memory-reducing V8 collections asked for, to give back the pages V8 keeps pooled (memory.pressure)', (s) => s.pressures);
    new Gauge({
      name: 'outpost_memory_v8_pooled_bytes', help: 'V8\'s freed pages kept pooled and resident, as memory.pressure estimated them at its last check (0 while a reducing collection runs, or with memory.pressure off)', registers: [registry],
      collect() { this.set(malloc().stats.pooledBytes); },
    });
  }

  if (sources.heapBudget !== undefined) {
    const budget = sources.heapBudget;
    new Gauge({ name: 'outpost_memory_limit_bytes', help: 'memory.limit: the RSS this process aims to stay under', registers: [registry], collect() { this.set(budget().limit); } });
    new Gauge({
      name: 'outpost_memory_heap_growth_percent', help: 'How much V8\'s old generation may grow past what its last full collection left (0: V8\'s own choice, up to 300; lower near memory.limit)', registers: [registry],
      collect() { this.set(budget().percent); },
    });
    new Counter({
      name: 'outpost_memory_limit_near_seconds_total', help: 'Seconds during which memory.limit held V8\'s heap growth below its own choice', registers: [registry],
      collect() { this.reset(); this.inc(budget().tightSeconds); },
    });
  }

  const handshakes = new Counter({ name: 'outpost_tls_handshakes_total', help: 'TLS handshakes completed', labelNames: ['protocol'], registers: [registry] });
  const handshakeErrors = new Counter({ name: 'outpost_tls_handshake_errors_total', help: 'TLS handshakes that failed or timed out', registers: [registry] });
  let connections = 0;
  let sessions = 0;
  let streams = 0;
  new Gauge({ name: 'outpost_open_connections', help: 'Client connections open (TLS and plain HTTP)', registers: [registry], collect() { this.set(connections); } });
  new Gauge({ name: 'outpost_open_h2_sessions', help: 'HTTP/2 sessions open', registers: [registry], collect() { this.set(sessions); } });
  new Gauge({ name: 'outpost_open_h2_streams', help: 'HTTP/2 streams open (requests in progress on HTTP/2)', registers: [registry], collect() { this.set(streams); } });
  new Gauge({ name: 'outpost_open_websockets', help: 'WebSocket tunnels open (a client\'s connection joined to its origin\'s)', registers: [registry], collect() { this.set(openTunnels()); } });
  new Gauge({ name: 'outpost_proxy_temp_file_bytes', help: 'Bytes held in proxy temp files (responses read from the origin faster than their clients take them; limits.tempFileSpace)', registers: [registry], collect() { this.set(tempSpace.used); } });

  const onEnd = (message: unknown) => {
    const event = message as ResponseEndEvent;
    const cache = event.cache;
    count(below(below(below(requests, siteLabel(event)), routeLabel(event)), statusClass(event.status)), cache);
    duration.observe(cache, event.durationMs / 1000);
    count(bytesSent, cache, event.bytes);
    if (event.outcome !== 'ok') count(aborted, event.outcome);
    const coding = event.headers['content-encoding'];
    const identity = event.request.notes?.get('identity-length');
    if (typeof coding === 'string' && identity !== undefined && event.outcome === 'ok' && event.bytes > 0) {
      count(compressionIn, coding, Number(identity));
      count(compressionOut, coding, event.bytes);
    }
  };
  responseEndChannel.subscribe(onEnd);

  // undici's channels: every origin request Outpost makes goes through undici.
  const upstreamOf = (request: { origin?: unknown }) => String(request.origin ?? 'unknown');
  const undiciHandlers: Record<string, (message: unknown) => void> = {
    'undici:request:headers': (message) => {
      const { request, response } = message as { request: { origin?: unknown }; response: { statusCode: number } };
      count(below(originRequests, upstreamOf(request)), statusClass(response.statusCode));
    },
    'undici:request:error': (message) => {
      const { request, error } = message as { request: { origin?: unknown }; error: unknown };
      // A client that went away aborts its origin request: not the origin's failure.
      if ((error as { name?: string })?.name === 'AbortError' || (error as { code?: string })?.code === 'UND_ERR_ABORTED') return;
      count(below(originErrors, upstreamOf(request)), errorCode(error));
    },
    'undici:client:connectError': (message) => {
      const { connectParams, error } = message as { connectParams: { protocol: string; host: string }; error: unknown };
      count(below(originErrors, `${connectParams.protocol}//${connectParams.host}`), errorCode(error));
    },
    'undici:request:bodyChunkReceived': (message) => {
      const { request, chunk } = message as { request: { origin?: unknown }; chunk: Buffer };
      count(originBytes, upstreamOf(request), chunk.length);
    },
  };
  for (const [name, handler] of Object.entries(undiciHandlers)) diagnostics.subscribe(name, handler);

  const watched: Array<() => void> = [];
  return {
    json: () => registry.getMetricsAsJSON(),
    watch(servers) {
      const https = servers.https;
      const onSecure = (socket: { alpnProtocol?: string | false; once(event: 'close', fn: () => void): void }) => {
        handshakes.inc({ protocol: socket.alpnProtocol || 'none' });
        connections++;
        socket.once('close', () => { connections--; });
      };
      const onTlsError = () => handshakeErrors.inc();
      const onSession = (session: ServerHttp2Session) => {
        sessions++;
        session.once('close', () => { sessions--; });
      };
      // One listener function for every stream, added with `on` ('close' comes once): `once` would
      // make a wrapper and its state per stream, and a closure here one more (~300 B per request).
      const onStreamClose = () => { streams--; };
      const onStream = (stream: ServerHttp2Stream) => {
        streams++;
        stream.on('close', onStreamClose);
      };
      const onPlain = (socket: { once(event: 'close', fn: () => void): void }) => {
        connections++;
        socket.once('close', () => { connections--; });
      };
      https.on('secureConnection', onSecure);
      https.on('tlsClientError', onTlsError);
      https.on('session', onSession);
      https.on('stream', onStream);
      servers.http?.on('connection', onPlain);
      watched.push(() => {
        https.off('secureConnection', onSecure);
        https.off('tlsClientError', onTlsError);
        https.off('session', onSession);
        https.off('stream', onStream);
        servers.http?.off('connection', onPlain);
      });
    },
    text: () => registry.metrics(),
    close() {
      responseEndChannel.unsubscribe(onEnd);
      for (const [name, handler] of Object.entries(undiciHandlers)) diagnostics.unsubscribe(name, handler);
      for (const undo of watched) undo();
      registry.clear();
    },
  };
}
