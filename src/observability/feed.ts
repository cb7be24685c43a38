import { errorChannel, responseEndChannel, type ErrorEvent, type ResponseEndEvent } from './channels.ts';
import { isOutpostError } from '../errors.ts';
import { below, count, leaves, type Tally } from './tally.ts';

/**
 * The dashboard's data, per process: a ring of one-second buckets over the last minutes
 * (requests, cache hits and misses, bytes, bytes saved, a latency histogram), the most missed
 * URLs and the latest errors. Every part adds up across processes (mergeSnapshots), so the
 * primary of a cluster shows the node's figures. Memory is bounded: SECONDS buckets, MAX_URLS
 * URLs, MAX_ERRORS errors.
 */

export const SECONDS = 300;
const MAX_URLS = 1000;
const TOP_URLS = 10;
const MAX_ERRORS = 20;
/** Latency bucket upper bounds in ms (log scale); one more bucket for anything slower. */
export const LATENCY_BOUNDS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000];

export interface Second {
  /** Unix time in whole seconds. */
  t: number;
  requests: number;
  hits: number;
  misses: number;
  errors: number;
  bytesSent: number;
  /** Bytes of responses served from the cache: not fetched from the origin. */
  savedByCache: number;
  /** Identity bytes minus the encoded bytes sent. */
  savedByCompression: number;
  /** Counts per LATENCY_BOUNDS_MS bucket (+1 for slower). */
  latency: number[];
}

export interface RecentError { time: string; what: string }

export interface FeedSnapshot {
  seconds: Second[];
  missed: Array<[string, number]>;
  errors: RecentError[];
}

export interface Feed {
  snapshot(): FeedSnapshot;
  close(): void;
}

const HIT_LIKE = new Set(['hit', 'stale']);
const MISS_LIKE = new Set(['miss', 'revalidated', 'collapsed', 'bypass']);

export function latencyBucket(ms: number): number {
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) if (ms <= LATENCY_BOUNDS_MS[i]) return i;
  return LATENCY_BOUNDS_MS.length;
}

/** The latency (ms, a bucket's upper bound) below which `fraction` of the counted responses fall. */
export function percentile(latency: readonly number[], fraction: number): number | null {
  const total = latency.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  let seen = 0;
  for (let i = 0; i < latency.length; i++) {
    seen += latency[i];
    if (seen >= fraction * total) return LATENCY_BOUNDS_MS[i] ?? LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] * 2;
  }
  return null;
}

export function createFeed(now: () => number = Date.now): Feed {
  const ring: Second[] = [];
  // Missed URLs by host, then target (tally.ts: no joined key per miss).
  const missed: Tally = new Map();
  let missedUrls = 0;
  const errors: RecentError[] = [];
  const missedList = (): Array<[string, number]> => {
    const urls = new Map<string, number>();
    for (const [[host, target], n] of leaves(missed, 2)) {
      const url = `${host}${target}`.slice(0, 200);
      urls.set(url, (urls.get(url) ?? 0) + n);
    }
    return [...urls];
  };
  /** Full: forget the least missed half (rarely; keeps the frequent ones). */
  const forgetLeastMissed = () => {
    const order = [...leaves(missed, 2)].sort((x, y) => x[1] - y[1]);
    for (const [[host, target]] of order.slice(0, MAX_URLS / 2)) {
      const targets = missed.get(host) as Tally;
      targets.delete(target);
      if (targets.size === 0) missed.delete(host);
    }
    missedUrls -= MAX_URLS / 2;
  };
  const countMiss = (host: string, target: string) => {
    if (missedUrls >= MAX_URLS && (missed.get(host) as Tally | undefined)?.has(target) !== true) forgetLeastMissed();
    const targets = below(missed, host);
    if (!targets.has(target)) missedUrls++;
    count(targets, target);
  };

  const bucket = (): Second => {
    const t = Math.floor(now() / 1000);
    const last = ring[ring.length - 1];
    if (last !== undefined && last.t === t) return last;
    const fresh: Second = { t, requests: 0, hits: 0, misses: 0, errors: 0, bytesSent: 0, savedByCache: 0, savedByCompression: 0, latency: new Array(LATENCY_BOUNDS_MS.length + 1).fill(0) };
    ring.push(fresh);
    while (ring.length > 0 && ring[0].t <= t - SECONDS) ring.shift();
    return fresh;
  };

  const remember = (what: string) => {
    errors.push({ time: new Date(now()).toISOString(), what: what.slice(0, 300) });
    if (errors.length > MAX_ERRORS) errors.shift();
  };

  const onEnd = (message: unknown) => {
    const event = message as ResponseEndEvent;
    const second = bucket();
    const cache = event.cache;
    second.requests++;
    second.bytesSent += event.bytes;
    second.latency[latencyBucket(event.durationMs)]++;
    if (HIT_LIKE.has(cache)) {
      second.hits++;
      second.savedByCache += event.bytes;
    } else if (MISS_LIKE.has(cache)) {
      second.misses++;
      const { host, target } = event.request;
      countMiss(host.length > 200 ? host.slice(0, 200) : host, target.length > 200 ? target.slice(0, 200) : target);
    }
    const identity = event.request.notes?.get('identity-length');
    if (identity !== undefined && event.outcome === 'ok' && event.bytes > 0) second.savedByCompression += Math.max(0, Number(identity) - event.bytes);
    if (event.status >= 500) {
      second.errors++;
      remember(`${event.status} ${event.request.method} ${event.request.host}${event.request.target.slice(0, 100)}${event.request.notes?.get('error') ? ` (${event.request.notes.get('error')})` : ''}`);
    }
  };
  const onError = (message: unknown) => {
    const { error, where } = message as ErrorEvent;
    // Request failures already show as their 5xx response; the rest (stores, TLS, reloads) here.
    if ((message as ErrorEvent).ctx !== null) return;
    const code = isOutpostError(error) ? error.code : (error as { code?: string })?.code;
    remember(`${where}: ${code ? `${code}: ` : ''}${(error as Error)?.message ?? String(error)}`);
  };
  responseEndChannel.subscribe(onEnd);
  errorChannel.subscribe(onError);

  return {
    snapshot() {
      bucket();
      return {
        seconds: ring.map((s) => ({ ...s, latency: [...s.latency] })),
        missed: missedList().sort((a, b) => b[1] - a[1]).slice(0, TOP_URLS * 5),
        errors: [...errors],
      };
    },
    close() {
      responseEndChannel.unsubscribe(onEnd);
      errorChannel.unsubscribe(onError);
    },
  };
}

/** Several processes' snapshots as one: seconds summed by time, URLs by count, errors by time. */
export function mergeSnapshots(all: readonly FeedSnapshot[]): FeedSnapshot {
  if (all.length === 1) return all[0];
  const seconds = new Map<number, Second>();
  for (const snapshot of all) {
    for (const s of snapshot.seconds) {
      const into = seconds.get(s.t);
      if (into === undefined) { seconds.set(s.t, { ...s, latency: [...s.latency] }); continue; }
      into.requests += s.requests; into.hits += s.hits; into.misses += s.misses; into.errors += s.errors;
      into.bytesSent += s.bytesSent; into.savedByCache += s.savedByCache; into.savedByCompression += s.savedByCompression;
      s.latency.forEach((n, i) => { into.latency[i] += n; });
    }
  }
  const missed = new Map<string, number>();
  for (const snapshot of all) for (const [url, n] of snapshot.missed) missed.set(url, (missed.get(url) ?? 0) + n);
  return {
    seconds: [...seconds.values()].sort((a, b) => a.t - b.t),
    missed: [...missed].sort((a, b) => b[1] - a[1]).slice(0, TOP_URLS * 5),
    errors: all.flatMap((s) => s.errors).sort((a, b) => a.time.localeCompare(b.time)).slice(-MAX_ERRORS),
  };
}

/** What the page shows: figures over the last minutes, computed from a (merged) snapshot. */
export function dashboardView(snapshot: FeedSnapshot, extra: { stats: Record<string, unknown>; upstreams: Array<{ upstream: string; up: boolean }>; workers: number }, nowMs: number = Date.now()) {
  const t = Math.floor(nowMs / 1000);
  const within = (seconds: number) => snapshot.seconds.filter((s) => s.t > t - seconds && s.t <= t);
  const sum = (list: Second[], key: 'requests' | 'hits' | 'misses' | 'bytesSent' | 'savedByCache' | 'savedByCompression' | 'errors') => list.reduce((a, s) => a + s[key], 0);
  const latencyOf = (list: Second[]) => list.reduce((acc, s) => acc.map((n, i) => n + s.latency[i]), new Array(LATENCY_BOUNDS_MS.length + 1).fill(0) as number[]);
  const last10 = within(10);
  const lastMinute = within(60);
  const all = within(SECONDS);
  const hitsAll = sum(all, 'hits');
  const missesAll = sum(all, 'misses');
  // 10-second points for the charts, oldest first.
  const points: Array<{ t: number; rps: number; hitRatio: number | null; p99: number | null }> = [];
  for (let start = t - SECONDS + 1; start <= t; start += 10) {
    const slice = snapshot.seconds.filter((s) => s.t >= start && s.t < start + 10);
    const hits = sum(slice, 'hits');
    const misses = sum(slice, 'misses');
    points.push({ t: start, rps: sum(slice, 'requests') / 10, hitRatio: hits + misses > 0 ? hits / (hits + misses) : null, p99: percentile(latencyOf(slice), 0.99) });
  }
  return {
    time: new Date(nowMs).toISOString(),
    workers: extra.workers,
    requestsPerSecond: sum(last10, 'requests') / 10,
    hitRatio: hitsAll + missesAll > 0 ? hitsAll / (hitsAll + missesAll) : null,
    requests: sum(all, 'requests'),
    bytesSent: sum(all, 'bytesSent'),
    savedByCache: sum(all, 'savedByCache'),
    savedByCompression: sum(all, 'savedByCompression'),
    p50: percentile(latencyOf(lastMinute), 0.5),
    p99: percentile(latencyOf(lastMinute), 0.99),
    upstreams: extra.upstreams,
    topMissed: snapshot.missed.slice(0, TOP_URLS).map(([url, count]) => ({ url, count })),
    errors: [...snapshot.errors].reverse(),
    points,
    stats: extra.stats,
  };
}
