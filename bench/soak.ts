import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { prng } from './fixtures.ts';
import { type Child, cpuSeconds, rssBytes, startChild, warmCompileCache } from './procs.ts';
import { allocatorOf, type Allocator } from '../src/runtime/allocator.ts';

/**
 * `npm run bench -- --soak [--seconds N]`: memory under a long mixed load (issue #12). Outpost
 * alone, with config/bench.yaml's cache, in front of bench/soak-origin.ts: 2,000 URLs of 1-15 KB
 * that expire every 5 s (max-age=5, revalidated with their ETag), every tenth `no-store`; the
 * clients ask for URLs at random, half sending `Accept-Encoding: gzip, deflate, br` and half
 * `gzip`, so both codings are made and kept. Bounded in time (`seconds`, 5 minutes by default)
 * and in count (`MAX_RATE` per second); loopback only.
 *
 * Every few seconds it samples Outpost's RSS and what its cache says it holds (the admin API's
 * /metrics: outpost_cache_size_bytes, outpost_cache_entries; the admin listener is on loopback
 * with a generated token). The target: RSS ≤ 2 × the cache's bytes + 150 MiB once the load has
 * settled (the second half of the run).
 */

export interface SoakOptions {
  readonly seconds: number;
  readonly connections: number;
  readonly cert: string;
  readonly key: string;
  readonly tmp: string;
  readonly root: string;
  /** Prefixes for the server under test and for the origin (CPU pinning). */
  readonly serverWrap: readonly string[];
  readonly loaderWrap: readonly string[];
  /** Runtime flags for Outpost's process: the serving flags (withServingFlags) plus any --node-flags, as the main bench runs it. */
  readonly nodeFlags: readonly string[];
  readonly freePort: () => Promise<number>;
  /** Adds the child to the runner's list, so it is stopped whatever happens. */
  readonly track: (child: Child) => void;
}

export interface SoakSample {
  /** Seconds since the load started. */
  readonly t: number;
  readonly requests: number;
  readonly rssBytes: number;
  /** What the cache store reports holding (bodies, variants, per-record allowance), and its records. */
  readonly cacheBytes?: number;
  readonly cacheEntries?: number;
  /** Outpost's own view (prom-client's default metrics): V8 heap used and total, and memory outside the V8 heap (Buffers, ArrayBuffers). */
  readonly heapUsedBytes?: number;
  readonly heapTotalBytes?: number;
  /** Of heap total, the young generation (V8's new space, both semi-spaces): sized by --max-semi-space-size, not by what is live. */
  readonly youngBytes?: number;
  /** V8's freed pages kept pooled and resident, as memory.pressure estimates them (outpost_memory_v8_pooled_bytes). */
  readonly pooledBytes?: number;
  readonly externalBytes?: number;
  /** Where the rest goes: the memory store's slabs mapped for bodies, the spares among them (outpost_cache_slab_bytes), glibc's heap in use and free (outpost_malloc_bytes). */
  readonly slabBytes?: number;
  readonly spareBytes?: number;
  readonly mallocInUseBytes?: number;
  readonly mallocFreeBytes?: number;
  /** Memory-reducing collections memory.pressure asked V8 for so far (outpost_memory_pressure_collections_total). */
  readonly pressures?: number;
}

export interface SoakResult {
  readonly seconds: number;
  readonly urls: number;
  readonly connections: number;
  readonly requests: number;
  readonly rps: number;
  /** Socket errors, timeouts and answers other than 200 and 304. */
  readonly errors: number;
  readonly samples: readonly SoakSample[];
  /** The second half of the run: highest RSS, highest cache bytes, and the target they give. */
  readonly plateau: { readonly rssBytes: number; readonly cacheBytes: number; readonly limitBytes: number; readonly within: boolean };
  readonly rssStartBytes: number;
  readonly rssAfterBytes: number;
  /**
   * What the memory cost in work, for comparing runtime flags: Outpost's CPU (user + system, every
   * thread, V8's concurrent marking included) per request over the load, and V8's collections
   * during it by kind (prom-client's nodejs_gc_duration_seconds: count and pause seconds).
   */
  readonly cpuMicrosPerRequest: number;
  readonly collections: Readonly<Record<string, { readonly count: number; readonly seconds: number }>>;
  readonly nodeFlags: readonly string[];
  /** The malloc Outpost's process had loaded (bin/pinned-node preloads jemalloc when installed). */
  readonly allocator: Allocator;
  /** glibc's arena cap Outpost's process inherited from the runner (bin/pinned-node sets 2), if any. */
  readonly mallocArenaMax?: string;
  readonly config: string;
}

const URLS = 2000;
/** Requests per second the count bound allows (the loader on one core stays well under it). */
const MAX_RATE = 40_000;
const HEADROOM = 150 * 1024 * 1024;
const ENCODINGS = ['gzip, deflate, br', 'gzip'];

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const origin = await startChild('soak-origin', [...o.loaderWrap, process.execPath, join(o.root, 'bench/soak-origin.ts'), '--urls', String(URLS)],
    /soak-origin (http:\/\/\S+)/, 15_000);
  o.track(origin.child);
  const adminPort = await o.freePort();
  const token = `soak-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
  const raw = parseYaml(readFileSync(join(o.root, 'config/bench.yaml'), 'utf8')) as Record<string, any>;
  raw.listen = { ...raw.listen, host: '127.0.0.1', https: 0, http: null };
  raw.tls = { ...raw.tls, certificates: [{ hosts: ['localhost', '127.0.0.1'], cert: o.cert, key: o.key }] };
  raw.admin = { listen: `127.0.0.1:${adminPort}`, token };
  raw.sites = [{ hosts: ['*'], routes: [{ path: '/soak/', origin: origin.match![1] }] }];
  const config = stringifyYaml(raw);
  const file = join(o.tmp, 'outpost-soak.yaml');
  writeFileSync(file, config);
  warmCompileCache(o.nodeFlags, file, o.root);
  const { child, match } = await startChild('outpost', [...o.serverWrap, process.execPath, ...o.nodeFlags, 'src/main.ts', '--config', file], /listening on (https:\/\/[^\s'"]+)/, 20_000, o.root);
  o.track(child);
  const base = `https://127.0.0.1:${new URL(match![1]).port}`;
  const rssStartBytes = rssBytes(child.pid);
  const allocator = allocatorOf(child.pid);

  type Usage = { bytes?: number; entries?: number; heapUsed?: number; heapTotal?: number; young?: number; pooled?: number; external?: number; slabs?: number; spare?: number; mallocInUse?: number; mallocFree?: number; pressures?: number };
  const metricsText = async (): Promise<string> => {
    const r = await request(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${token}` }, headersTimeout: 5000, bodyTimeout: 5000 });
    return r.body.text();
  };
  const cacheUsage = async (): Promise<Usage> => {
    try {
      const text = await metricsText();
      const metric = (name: string, state?: string, label = 'state') => {
        const labels = state === undefined ? '(?:\\{[^}]*\\})?' : `\\{${label}="${state}"\\}`;
        const m = new RegExp(`^${name}${labels} (\\S+)$`, 'm').exec(text);
        return m ? Number(m[1]) : undefined;
      };
      return {
        bytes: metric('outpost_cache_size_bytes'), entries: metric('outpost_cache_entries'),
        heapUsed: metric('nodejs_heap_size_used_bytes'), heapTotal: metric('nodejs_heap_size_total_bytes'),
        young: metric('nodejs_heap_space_size_total_bytes', 'new', 'space'), pooled: metric('outpost_memory_v8_pooled_bytes'),
        external: metric('nodejs_external_memory_bytes'),
        slabs: metric('outpost_cache_slab_bytes', 'allocated'), spare: metric('outpost_cache_slab_bytes', 'spare'),
        mallocInUse: metric('outpost_malloc_bytes', 'in_use'), mallocFree: metric('outpost_malloc_bytes', 'free'),
        pressures: metric('outpost_memory_pressure_collections_total'),
      };
    } catch {
      return {};
    }
  };

  let requests = 0;
  let sent = 0;
  let errors = 0;
  const rand = prng(12);
  const limit = Math.ceil(o.seconds * MAX_RATE);
  const instance = autocannon({
    url: `${base}/soak/0`,
    connections: o.connections,
    duration: o.seconds,
    timeout: 10,
    servername: 'localhost',
    tlsOptions: { rejectUnauthorized: false },
    requests: [{
      setupRequest: (req) => ({
        ...req,
        path: `/soak/${Math.floor(rand() * URLS)}`,
        headers: { ...req.headers, 'accept-encoding': ENCODINGS[sent++ & 1] },
      }),
    }],
  });
  instance.on('response', (_client, status) => {
    if (status !== 200 && status !== 304) errors++;
    if (++requests >= limit) instance.stop();
  });

  const samples: SoakSample[] = [];
  // V8's collections so far ({} when the admin API does not answer: the table says so).
  const collectionsNow = () => metricsText().then(collectionsIn, () => ({}));
  const gcBefore = await collectionsNow();
  const cpuBefore = cpuSeconds(child.pid);
  const started = performance.now();
  const every = Math.min(5, Math.max(1, o.seconds / 60)) * 1000;
  const sample = async () => {
    const t = (performance.now() - started) / 1000;
    const rss = rssBytes(child.pid);
    const usage = await cacheUsage();
    samples.push({ t: Math.round(t * 10) / 10, requests, rssBytes: rss, cacheBytes: usage.bytes, cacheEntries: usage.entries,
      heapUsedBytes: usage.heapUsed, heapTotalBytes: usage.heapTotal, youngBytes: usage.young, pooledBytes: usage.pooled, externalBytes: usage.external,
      slabBytes: usage.slabs, spareBytes: usage.spare, mallocInUseBytes: usage.mallocInUse, mallocFreeBytes: usage.mallocFree, pressures: usage.pressures });
  };
  const timer = setInterval(() => { void sample(); }, every);
  const result = await instance;
  clearInterval(timer);
  const cpu = cpuSeconds(child.pid) - cpuBefore;
  const collections = collectionsSince(gcBefore, await collectionsNow());
  await sample();
  const loadSeconds = (performance.now() - started) / 1000;
  // A few seconds idle: what stays once the load is gone (the cache entries have expired by then).
  await new Promise((resolve) => setTimeout(resolve, 6000));
  const rssAfterBytes = rssBytes(child.pid);
  await child.stop();
  await origin.child.stop();

  const late = samples.filter((s) => s.t >= loadSeconds / 2);
  const rss = Math.max(...late.map((s) => s.rssBytes));
  const cache = Math.max(...late.map((s) => s.cacheBytes ?? 0));
  const limitBytes = 2 * cache + HEADROOM;
  return {
    seconds: Math.round(loadSeconds * 10) / 10,
    urls: URLS,
    connections: o.connections,
    requests,
    rps: requests / loadSeconds,
    errors: errors + result.errors + result.timeouts,
    samples,
    plateau: { rssBytes: rss, cacheBytes: cache, limitBytes, within: rss <= limitBytes },
    rssStartBytes,
    rssAfterBytes,
    cpuMicrosPerRequest: requests > 0 ? (cpu * 1e6) / requests : 0,
    collections,
    nodeFlags: o.nodeFlags,
    allocator,
    mallocArenaMax: process.env.MALLOC_ARENA_MAX,
    config,
  };
}

type Collections = Record<string, { count: number; seconds: number }>;

/** V8's collections so far by kind (major, minor, incremental, weakcb), from prom-client's gc histogram. */
function collectionsIn(metrics: string): Collections {
  const found: Collections = {};
  for (const m of metrics.matchAll(/^nodejs_gc_duration_seconds_(count|sum)\{kind="(\w+)"\} (\S+)$/gm)) {
    const kind = (found[m[2]] ??= { count: 0, seconds: 0 });
    if (m[1] === 'count') kind.count = Number(m[3]);
    else kind.seconds = Number(m[3]);
  }
  return found;
}

function collectionsSince(before: Collections, after: Collections): Collections {
  return Object.fromEntries(Object.entries(after).map(([kind, a]) => [kind, { count: a.count - (before[kind]?.count ?? 0), seconds: a.seconds - (before[kind]?.seconds ?? 0) }]));
}

const mib = (bytes: number | undefined) => (bytes === undefined ? '-' : (bytes / (1 << 20)).toFixed(1));

export function soakTable(r: SoakResult): string {
  const lines = [
    `soak: ${r.seconds} s, ${r.urls.toLocaleString('en-US')} URLs of 1-15 KB (max-age=5, every tenth no-store), clients sending br and gzip, ${r.connections} HTTP/1.1 connections`,
    `${r.requests.toLocaleString('en-US')} requests (${Math.round(r.rps).toLocaleString('en-US')}/s), ${r.errors} errors`,
    '',
    '     t s    requests   RSS MiB   cache MiB   entries   2 x cache + 150 MiB   heap used   heap total   young   pooled   external   slabs   spare   malloc used   malloc free',
    '  ------  ----------  --------  ----------  --------  --------------------  ----------  -----------  ------  ------  ---------  ------  ------  ------------  -----------',
  ];
  for (const s of r.samples) {
    const limit = s.cacheBytes === undefined ? undefined : 2 * s.cacheBytes + HEADROOM;
    lines.push(`  ${s.t.toFixed(0).padStart(6)}  ${s.requests.toLocaleString('en-US').padStart(10)}  ${mib(s.rssBytes).padStart(8)}  ${mib(s.cacheBytes).padStart(10)}  ${(s.cacheEntries?.toLocaleString('en-US') ?? '-').padStart(8)}  ${mib(limit).padStart(20)}  ` +
      `${mib(s.heapUsedBytes).padStart(10)}  ${mib(s.heapTotalBytes).padStart(11)}  ${mib(s.youngBytes).padStart(6)}  ${mib(s.pooledBytes).padStart(6)}  ${mib(s.externalBytes).padStart(9)}  ${mib(s.slabBytes).padStart(6)}  ${mib(s.spareBytes).padStart(6)}  ` +
      `${mib(s.mallocInUseBytes).padStart(12)}  ${mib(s.mallocFreeBytes).padStart(11)}`);
  }
  lines.push('');
  const arenas = r.allocator === 'system' && r.mallocArenaMax ? ` (MALLOC_ARENA_MAX=${r.mallocArenaMax})` : '';
  lines.push(`Outpost ran with ${r.nodeFlags.length > 0 ? r.nodeFlags.join(' ') : 'no runtime flags'}, malloc: ${r.allocator}${arenas}`);
  lines.push(`RSS at start ${mib(r.rssStartBytes)} MiB, 6 s after the load ${mib(r.rssAfterBytes)} MiB`);
  const gc = Object.entries(r.collections).map(([kind, c]) => `${kind} ${c.count} (${(c.seconds * 1000).toFixed(0)} ms)`).join(', ');
  lines.push(`CPU ${r.cpuMicrosPerRequest.toFixed(0)} µs per request (all threads); V8 collections during the load: ${gc || 'not reported'}`);
  // When memory.pressure asked V8 to give its pooled pages back: the samples whose count rose.
  const asked = r.samples.filter((s, i) => i > 0 && (s.pressures ?? 0) > (r.samples[i - 1].pressures ?? 0)).map((s) => `${s.t} s`);
  lines.push(`memory-reducing collections asked for (memory.pressure): ${asked.length > 0 ? `by ${asked.join(', ')}` : 'none'}`);
  lines.push(`second half: RSS up to ${mib(r.plateau.rssBytes)} MiB, cache up to ${mib(r.plateau.cacheBytes)} MiB: ` +
    `${r.plateau.within ? 'within' : 'OVER'} the target of ${mib(r.plateau.limitBytes)} MiB (2 x cache + 150 MiB)`);
  return lines.join('\n');
}
