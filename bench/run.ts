import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { availableParallelism, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool, request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { PATHS, BURST_DELAY_MS, RELAYED_PATHS, fixtures, writeSite } from './fixtures.ts';
import { burstH1, burstH2, run, runAutocannon, runH2load, runWrk, type LoadResult, type LoadSpec, type Tool } from './load.ts';
import { brotliAvailable, brotliStaticAvailable, nginxConfig } from './nginx.ts';
import { withServingFlags } from '../src/runtime/node-flags.ts';
import { allocatorOf } from '../src/runtime/allocator.ts';
import { type Child, cpuSeconds, machineBusy, pageFaultMicros, pageFaultWarning, quietAfter, rssBytes, rssSampler, startChild, warmCompileCache } from './procs.ts';
import { burstTable, combineRounds, fmt, formatBytes, resultsTable, type Burst, type Row, type SystemName } from './report.ts';
import { runSoak, soakTable } from './soak.ts';
import { callgrindMissing, instructionTable, runInstructions, type Crowd } from './instructions.ts';

/**
 * `npm run bench [-- --quick]`: Outpost, the ceiling (a bare node:http2 server answering from memory)
 * and nginx, side by side in one run, on loopback. See bench/README.md for what each scenario measures.
 */

const ROOT = resolve(import.meta.dirname, '..');
process.chdir(ROOT);

const FLAG_OPTIONS = {
  quick: { type: 'boolean', default: false },
  seconds: { type: 'string' },
  scenarios: { type: 'string' },
  systems: { type: 'string' },
  'no-pin': { type: 'boolean', default: false },
  workers: { type: 'string' },
  'node-flags': { type: 'string' },
  log: { type: 'string' },
  soak: { type: 'boolean', default: false },
  instructions: { type: 'boolean', default: false },
  rounds: { type: 'string' },
  warm: { type: 'string' },
  help: { type: 'boolean', default: false },
} as const;

/** The command line, or a one-line error and exit code 2 (an unknown flag, a missing value). */
function parseFlags() {
  try {
    return parseArgs({ options: FLAG_OPTIONS }).values;
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
}

const flags = parseFlags();
if (flags.help) {
  console.log(`usage: npm run bench -- [--quick] [--seconds N] [--scenarios a,b] [--systems ceiling,outpost,nginx] [--no-pin] [--log off|text|json] [--workers N] [--node-flags="..."] [--rounds N] [--warm N] [--soak] [--instructions]`);
  console.log(`  --node-flags="...": runtime flags for Outpost's process only (e.g. --node-flags="--max-semi-space-size=16 --trace-gc"; the serving flags it leaves out are added)`);
  console.log(`  --workers N: Outpost with N worker processes and nginx with N worker_processes (default 1); the ceiling stays one process`);
  console.log(`  --log text|json: Outpost writes its access log in that format to a file in the temp directory (default: off)`);
  console.log(`  --rounds N: every run N times, the systems in a different order each round, figures combined (for a noisy machine; N times as long)`);
  console.log(`  --warm N: requests per scenario and system before anything is measured (default 200 with --quick, else 1000; --instructions: 10000 / 20000)`);
  console.log(`  --soak: only the memory soak (bench/soak.ts): Outpost under a mixed load for --seconds (default 300), RSS sampled`);
  console.log(`  --instructions: instructions per response under valgrind's callgrind, Outpost and the ceiling (bench/instructions.ts): a count that moves with the work and with garbage collection, not with the host`);
  process.exit(0);
}

const QUICK = flags.quick;
if (flags.log !== undefined && !['off', 'text', 'json'].includes(flags.log)) {
  console.error(`--log: expected off, text or json, got ${JSON.stringify(flags.log)}`);
  process.exit(2);
}
/** A flag that must be a whole number from `min` to `max`, when given. */
function checkWholeNumber(name: string, value: string | undefined, min: number, max: number): void {
  if (value === undefined || (Number.isInteger(Number(value)) && Number(value) >= min && Number(value) <= max)) return;
  console.error(`--${name}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  process.exit(2);
}
checkWholeNumber('workers', flags.workers, 1, 64);
if (flags.seconds !== undefined && !(Number(flags.seconds) > 0)) {
  console.error(`--seconds: expected a positive number, got ${JSON.stringify(flags.seconds)}`);
  process.exit(2);
}
checkWholeNumber('warm', flags.warm, 0, 1_000_000);
checkWholeNumber('rounds', flags.rounds, 1, 10);
const SETTINGS = {
  /**
   * Each run is made this many times, the systems' order rotated every round, and combined
   * (combineRounds): on a shared or throttled machine the speed drifts over minutes, and one run
   * per system measures each at a different moment of that drift.
   */
  rounds: Number(flags.rounds ?? 1),
  /** Seconds of load per scenario, system, load generator and round. */
  seconds: Number(flags.seconds ?? (QUICK ? 3 : 10)),
  /** HTTP/1.1 connections, one request in flight on each (browsers open up to 6 per host; a CDN sees many). */
  connections: 16,
  /** HTTP/2: 2 connections x 8 streams, the same 16 requests in flight as HTTP/1.1. */
  h2Connections: 2,
  h2Streams: 8,
  /** Requests per scenario and system before anything is measured: JIT warm, caches primed. */
  warmRequests: flags.warm !== undefined ? Number(flags.warm) : QUICK ? 200 : 1000,
  /** The cold-URL burst. */
  burst: 200,
} as const;
/**
 * The last RSS reading is taken this long after Outpost's CPU went quiet: memory.trim gives glibc's
 * pages back after 30 quiet seconds and V8's after two minutes (a collection at the 120th check,
 * the trim at the 121st).
 */
const IDLE_MS = 124_000;

// --- machine and tools -----------------------------------------------------------------------------

function version(cmd: string[], pattern: RegExp): string | undefined {
  // nginx -v prints on stderr; wrk -v exits 1 after printing its version: read both streams, any exit.
  const out = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', timeout: 10_000 });
  if (out.error) return undefined;
  return pattern.exec(`${out.stdout}${out.stderr}`)?.[1];
}

function packageVersion(name: string): string {
  return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
}

const tools = {
  nginx: version(['nginx', '-v'], /nginx\/(\S+)/),
  brotli: brotliAvailable(),
  brotliStatic: brotliStaticAvailable(),
  h2load: version(['h2load', '--version'], /(nghttp2\/\S+)/),
  wrk: version(['wrk', '-v'], /^wrk (\S+)/m),
  openssl: version(['openssl', 'version'], /^(OpenSSL \S+)/),
  taskset: version(['taskset', '--version'], /(util-linux \S+)/),
};

const cores = availableParallelism();
/** Outpost's worker processes and nginx's worker_processes (`--workers`). */
const WORKERS = Number(flags.workers ?? 1);
/** Server cores when pinned: one per worker, and at least one core left for the runner, origin and loaders. */
const pin = !flags['no-pin'] && tools.taskset !== undefined && cores > WORKERS;
const serverCpus = WORKERS === 1 ? String(cores - 1) : `${cores - WORKERS}-${cores - 1}`;
/** With pinning, the server under test owns the last core(s); the runner, origin and load tools the rest. */
const serverWrap = pin ? ['taskset', '-c', serverCpus] : [];
const loaderWrap = pin ? ['taskset', '-c', `0-${cores - WORKERS - 1}`] : [];
if (pin) execFileSync('taskset', ['-a', '-p', '-c', `0-${cores - WORKERS - 1}`, String(process.pid)], { stdio: 'ignore' });

const machine = {
  date: new Date().toISOString(),
  cpu: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown',
  cores,
  kernel: release(),
  node: process.version,
  nginx: tools.nginx ? `${tools.nginx}${tools.brotli ? ' + brotli' : ''}${tools.brotliStatic ? ' + brotli_static' : ''}` : 'missing',
  h2load: tools.h2load ?? 'missing',
  wrk: tools.wrk ?? 'missing',
  autocannon: packageVersion('autocannon'),
  undici: packageVersion('undici'),
  openssl: tools.openssl ?? 'missing',
  outpostCommit: version(['git', 'rev-parse', '--short', 'HEAD'], /^([0-9a-f]+)$/m) ?? 'uncommitted',
  /** Uncommitted changes under src/ when the run started (read-only git status). */
  outpostDirty: (spawnSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout ?? '').trim() !== '',
  /** Share of all cores busy in the second before start: other work on the machine makes every number noisy. */
  busyBeforeStart: Number((await machineBusy(1000)).toFixed(2)),
  /** µs per fresh 4 KiB page (procs.ts pageFaultMicros): a VM that backs memory lazily slows every row that takes new pages. */
  pageFaultMicros: Number(pageFaultMicros().toFixed(2)),
  pinning: pin ? `server on cpu ${serverCpus}, runner/origin/loaders on cpu 0-${cores - WORKERS - 1}`
    : WORKERS >= cores ? `off: ${WORKERS} server workers on ${cores} cores share them with the runner, origin and load tools` : 'off',
  workers: WORKERS,
  outpostNodeFlags: flags['node-flags'] ?? '',
  /**
   * The scenarios the ceiling answers by relaying to the origin (bench/ceiling.ts), not from memory:
   * the pass rows, and since 2026-12-06 the miss row (fetched, encoded once and kept: the floor of a miss).
   * A getter: SCENARIOS is defined further down, and this is read only when the results are written.
   */
  get ceilingRelays() { return SCENARIOS.filter((s) => RELAYED_PATHS.includes(s.path) || s.unique).map((s) => s.id); },
  /** The malloc Outpost (and the ceiling) run on: bin/pinned-node's choice, which their processes inherit from the runner. */
  outpostAllocator: allocatorOf(),
  /** glibc's arena cap they inherit (bin/pinned-node sets 2 unless MALLOC_ARENA_MAX was set), if any. */
  outpostMallocArenaMax: process.env.MALLOC_ARENA_MAX ?? null,
  mode: flags.soak ? 'soak' : flags.instructions ? 'instructions' : QUICK ? 'quick' : 'full',
  accessLog: flags.log ?? 'off',
  ...SETTINGS,
};

function missingTools(): string[] {
  const lines: string[] = [];
  if (!tools.nginx) lines.push('nginx    missing: no nginx rows');
  else if (!tools.brotli) lines.push('nginx    has no Brotli module: its "br" requests get gzip or identity (apt-get install libnginx-mod-http-brotli-filter)');
  if (tools.nginx && !tools.brotliStatic) lines.push('nginx    has no brotli_static module: its static-br row compresses on the fly (apt-get install libnginx-mod-http-brotli-static)');
  if (!tools.h2load) lines.push('h2load   missing: no HTTP/2 rows');
  if (!tools.wrk) lines.push('wrk      missing: no wrk rows (HTTP/1.1 second opinion where autocannon is the bottleneck)');
  if (lines.length > 0) lines.push('install with: apt-get install nginx nghttp2-client wrk libnginx-mod-http-brotli-filter');
  return lines;
}

if (!tools.openssl) {
  console.error('openssl is needed to make the benchmark certificate: apt-get install openssl');
  process.exit(1);
}

// --- scenarios -----------------------------------------------------------------------------------------

interface Scenario {
  readonly id: string;
  readonly what: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** Every request a URL never seen before (query-string counter). */
  readonly unique?: boolean;
  /**
   * Also measured with wrk (plain GETs): 'always', or 'full' for full runs only (time). static-1mb is
   * 'always' because autocannon's own parser caps it near 80 MiB/s whatever the server.
   */
  readonly wrk?: 'always' | 'full';
  /** Sample Outpost's RSS during this one (large bodies). */
  readonly memory?: boolean;
  /** Requests in flight other than SETTINGS' 16 (HTTP/1.1 connections; HTTP/2 connections x streams). */
  readonly crowd?: Crowd;
}

/**
 * Many requests in flight, as users run the load tools (`h2load -c100 -m10`, `autocannon -c200`):
 * each request lives longer, through more of V8's young collections. 200 HTTP/1.1 connections stay
 * under `limits.connectionsPerClient` (256), which counts the runner's own probe connections too.
 */
const CROWD: Crowd = { connections: 200, h2Connections: 100, h2Streams: 10 };

const SCENARIOS: readonly Scenario[] = [
  { id: 'static-small', what: '1 KB JSON from disk', method: 'GET', path: PATHS.small, headers: {}, wrk: 'full' },
  { id: 'static-crowd', what: `the same file with ${CROWD.connections} HTTP/1.1 connections, HTTP/2 ${CROWD.h2Connections} x ${CROWD.h2Streams} streams`, method: 'GET', path: PATHS.small, headers: {}, wrk: 'full', crowd: CROWD },
  { id: 'static-br', what: '30 KB HTML from disk with a precompressed .br sibling, Accept-Encoding: br', method: 'GET', path: PATHS.staticPage, headers: { 'accept-encoding': 'br' }, wrk: 'full' },
  { id: 'static-1mb', what: '1 MiB incompressible file from disk', method: 'GET', path: PATHS.large, headers: {}, wrk: 'always', memory: true },
  { id: 'hit-br', what: 'cached 30 KB HTML, Accept-Encoding: br', method: 'GET', path: PATHS.page, headers: { 'accept-encoding': 'br' }, wrk: 'full' },
  { id: 'hit-gzip', what: 'cached 30 KB HTML, Accept-Encoding: gzip', method: 'GET', path: PATHS.page, headers: { 'accept-encoding': 'gzip' }, wrk: 'full' },
  { id: 'hit-identity', what: 'cached 30 KB HTML, Accept-Encoding: identity', method: 'GET', path: PATHS.page, headers: { 'accept-encoding': 'identity' }, wrk: 'full' },
  { id: 'miss', what: 'unique URL each time: origin answers every request', method: 'GET', path: PATHS.page, headers: { 'accept-encoding': 'br, gzip' }, unique: true },
  { id: 'pass', what: 'uncacheable API (no-store) passed through', method: 'GET', path: PATHS.api, headers: {}, wrk: 'full' },
  { id: 'pass-crowd', what: `the same API with ${CROWD.connections} HTTP/1.1 connections, HTTP/2 ${CROWD.h2Connections} x ${CROWD.h2Streams} streams`, method: 'GET', path: PATHS.api, headers: {}, wrk: 'full', crowd: CROWD },
  { id: 'pass-pool', what: 'the same API through a pool of two upstreams (round-robin)', method: 'GET', path: PATHS.apiPool, headers: {}, wrk: 'full' },
  { id: 'pass-h2', what: 'the same API with HTTP/2 (h2c) to the origin', method: 'GET', path: PATHS.apiH2, headers: {}, wrk: 'full' },
  { id: 'pass-gzip', what: 'an uncacheable 12 KB JSON API that gzips its answers, Accept-Encoding: br, gzip', method: 'GET', path: PATHS.feed, headers: { 'accept-encoding': 'br, gzip' }, wrk: 'full' },
  { id: 'pass-1mb', what: 'an uncacheable 1 MiB download passed through', method: 'GET', path: PATHS.download, headers: {}, wrk: 'always', memory: true },
  { id: 'post-1mb', what: 'POST with a 1 MiB body passed through', method: 'POST', path: PATHS.upload, headers: { 'content-type': 'application/octet-stream' }, body: fixtures.large.body, memory: true },
];

const selected = flags.scenarios ? SCENARIOS.filter((s) => flags.scenarios!.split(',').includes(s.id)) : SCENARIOS;
for (const [flag, given, known] of [
  ['--scenarios', flags.scenarios, SCENARIOS.map((s) => s.id)],
  ['--systems', flags.systems, ['ceiling', 'outpost', 'nginx']],
] as const) {
  const unknown = given?.split(',').filter((id) => !(known as readonly string[]).includes(id)) ?? [];
  if (unknown.length > 0) {
    console.error(`${flag}: unknown ${unknown.join(', ')}; expected some of ${known.join(', ')}`);
    process.exit(2);
  }
}
const wrkIds = new Set(SCENARIOS.filter((s) => s.wrk === 'always' || (s.wrk === 'full' && !QUICK)).map((s) => s.id));

// --- systems -----------------------------------------------------------------------------------------

interface Launched { readonly child: Child; readonly base: string }
interface System {
  readonly name: SystemName;
  readonly launch: () => Promise<Launched>;
  child: Child;
  base: string;
  pool: Pool;
  /** Times it had to be started again after it died during a run. */
  restarts: number;
  readonly rss: { start: number; warm?: number; peakLarge?: number; end?: number; idle?: number };
}

const tmp = mkdtempSync(join(tmpdir(), 'outpost-bench-'));
chmodSync(tmp, 0o755); // nginx workers run as nobody and must reach their cache directory
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
const children: Child[] = [];
/** The generated configs, kept in the results file. */
const configs: Record<string, string> = {};

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer().once('error', rej).listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect(port, '127.0.0.1').once('connect', () => { socket.destroy(); res(true); }).once('error', () => res(false));
  });
}

/** HTTP/1.1 client for warm-up and probes (undici would pick HTTP/2 through ALPN otherwise). */
function pool(base: string): Pool {
  return new Pool(base, { connections: 8, allowH2: false, connect: { rejectUnauthorized: false, servername: 'localhost' } });
}

/** Starts the process and waits until it answers over TLS, not just listens. */
async function launchAndWait(name: SystemName, launch: () => Promise<Launched>): Promise<Launched & { pool: Pool }> {
  const { child, base } = await launch();
  children.push(child);
  const p = pool(base);
  for (let i = 0; ; i++) {
    try {
      const r = await p.request({ path: PATHS.small, method: 'GET', headersTimeout: 2000 });
      await r.body.dump();
      return { child, base, pool: p };
    } catch (err) {
      if (i >= 50) {
        await p.destroy();
        await child.stop();
        throw new Error(`${name} does not answer on ${base}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function bringUp(name: SystemName, launch: () => Promise<Launched>): Promise<System> {
  const up = await launchAndWait(name, launch);
  return { name, launch, ...up, restarts: 0, rss: { start: rssBytes(up.child.pid) } };
}

/** A system that died during a run is started again, so one crash does not hide the other scenarios. */
async function restart(system: System): Promise<void> {
  await system.pool.destroy();
  const up = await launchAndWait(system.name, system.launch);
  Object.assign(system, up);
  system.restarts++;
  console.log(`  ${system.name} restarted (pid ${system.child.pid})`);
}

/** `wrap`: what the command runs under (taskset, or valgrind for --instructions, which starts it much slower). */
async function launchCeiling(cert: string, key: string, origins: readonly [string, string, string], wrap: readonly string[] = serverWrap, timeoutMs = 15_000): Promise<Launched> {
  const relay = ['--origin', origins[0], '--origin2', origins[1], '--origin-h2', origins[2]];
  const { child, match } = await startChild('ceiling', [...wrap, process.execPath, 'bench/ceiling.ts', '--cert', cert, '--key', key, ...relay], /ceiling (https:\/\/\S+)/, timeoutMs);
  return { child, base: match![1] };
}

/**
 * Outpost with config/bench.yaml, the origin, certificate, static root and port filled in. Origin
 * URLs name the fixture origin's ports as a hand run would (9000, 9001, 9002 for h2c); each becomes
 * the port the origin really listens on.
 */
/** Outpost's runtime flags as `npm start` runs it: the serving runtime flags, plus any given with --node-flags. */
function outpostNodeFlags(): string[] {
  return withServingFlags(flags['node-flags']?.split(' ').filter((f) => f !== '') ?? []);
}

async function launchOutpost(cert: string, key: string, origins: readonly [string, string, string], site: string, wrap: readonly string[] = serverWrap, timeoutMs = 20_000): Promise<Launched> {
  const byPort: Record<string, string> = { 9000: origins[0], 9001: origins[1], 9002: origins[2] };
  const fill = (url: string) => byPort[new URL(url).port] ?? origins[0];
  const fillSpec = (spec: any): any => typeof spec === 'string' ? fill(spec)
    : Array.isArray(spec) ? spec.map(fillSpec)
    : spec?.upstreams ? { ...spec, upstreams: spec.upstreams.map(fillSpec) }
    : spec?.url ? { ...spec, url: fill(spec.url) }
    : spec;
  if (!existsSync('src/main.ts')) throw new Error('src/main.ts does not exist yet');
  const raw = parseYaml(readFileSync('config/bench.yaml', 'utf8')) as Record<string, any>;
  raw.listen = { ...raw.listen, host: '127.0.0.1', https: 0, http: null };
  raw.workers = WORKERS;
  raw.tls = { ...raw.tls, certificates: [{ hosts: ['localhost', '127.0.0.1'], cert, key }] };
  // --log: the access log to a file, to measure what it costs against the default (off).
  if (flags.log !== undefined && flags.log !== 'off') raw.log = { access: join(tmp, 'access.log'), format: flags.log };
  for (const s of raw.sites ?? []) {
    if (typeof s.static === 'string') s.static = site;
    else if (s.static) s.static.root = site;
    if (s.origin) s.origin = fillSpec(s.origin);
    for (const r of s.routes ?? []) if (r.origin) r.origin = fillSpec(r.origin);
  }
  const config = join(tmp, 'outpost.yaml');
  configs.outpost = stringifyYaml(raw);
  writeFileSync(config, configs.outpost);
  const nodeFlags = outpostNodeFlags();
  warmCompileCache(nodeFlags, config, ROOT);
  const { child, match } = await startChild('outpost', [...wrap, process.execPath, ...nodeFlags, 'src/main.ts', '--config', config],
    /https:\/\/[^\s'"]+/, timeoutMs, ROOT);
  return { child, base: `https://127.0.0.1:${new URL(match![0]).port}` };
}

async function launchNginx(cert: string, key: string, originPorts: readonly [number, number], site: string): Promise<Launched> {
  const dir = join(tmp, 'nginx');
  mkdirSync(dir, { mode: 0o755, recursive: true });
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  configs.nginx = nginxConfig({ dir, port, originPort: originPorts[0], originPort2: originPorts[1], siteRoot: site, cert, key, brotli: tools.brotli, brotliStatic: tools.brotliStatic, staticPage: PATHS.staticPage, workers: WORKERS });
  writeFileSync(conf, configs.nginx);
  const { child } = await startChild('nginx', [...serverWrap, 'nginx', '-p', dir, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'],
    () => portOpen(port), 15_000);
  return { child, base: `https://127.0.0.1:${port}` };
}

// --- measuring ---------------------------------------------------------------------------------------

let originBase = '';
async function originCounts(): Promise<{ total: number; paths: Record<string, number> }> {
  const r = await request(`${originBase}/__counts`);
  return (await r.body.json()) as { total: number; paths: Record<string, number> };
}

/**
 * Origin counts once requests still on their way through the edge have arrived (the load tool stops
 * with up to 16 requests in flight), so none is counted in the next system's run.
 */
async function settledCounts(before: number): Promise<{ total: number; paths: Record<string, number> }> {
  let counts = await originCounts();
  if (counts.total === before) return counts;
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const next = await originCounts();
    if (next.total === counts.total) return next;
    counts = next;
  }
  return counts;
}

/** Sends `count` requests, `concurrency` at a time, ignoring the answers. */
async function hammer(p: Pool, count: number, concurrency: number, make: (i: number) => Parameters<Pool['request']>[0]): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const r = await p.request(make(next++));
      await r.body.dump({ limit: Infinity });
    }
  }));
}

function requestFor(s: Scenario, tag: string, i: number): Parameters<Pool['request']>[0] {
  return {
    method: s.method,
    path: s.unique ? `${s.path}?miss=${tag}-${i}` : s.path,
    headers: s.headers,
    body: s.body,
  };
}

/**
 * Uploads and the 1 MiB file are warmed with half as many requests as the others (a MiB each), over
 * both protocols: with a tenth over HTTP/1.1 only, Outpost's upload path was still being compiled
 * when its rows ran (figures in bench/README.md). nginx and the ceiling get the same.
 */
const warmCount = (s: Scenario) => (s.body || s.path === PATHS.large || s.path === PATHS.download ? Math.ceil(SETTINGS.warmRequests / 2) : SETTINGS.warmRequests);

async function warm(system: System): Promise<void> {
  for (const s of selected) {
    await hammer(system.pool, warmCount(s), 8, (i) => requestFor(s, `warm-${system.name}`, i));
  }
  if (tools.h2load && SETTINGS.warmRequests > 0) {
    // The HTTP/2 code paths get their own warm-up: each scenario's requests that repeat, as h2load
    // will send them (a new URL each time only over HTTP/1.1 above: they would fill the cache).
    for (const s of selected) {
      if (s.unique) continue;
      const headers = Object.entries(s.headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
      const body = s.body === undefined ? [] : ['-d', warmBodyFile(s.body)];
      await run([...loaderWrap, 'h2load', '-n', String(warmCount(s)), '-c', '2', '-m', '8', ...headers, ...body, system.base + s.path], 120_000);
    }
  }
}

/** The request body as a file for h2load's -d (as load.ts writes it for the measured runs). */
function warmBodyFile(body: Buffer): string {
  const file = join(tmp, 'warm-body.bin');
  writeFileSync(file, body);
  return file;
}

/** What one request of the scenario gets: status, encoding, size; shows what the numbers are made of. */
async function probe(system: System, s: Scenario): Promise<string> {
  const down = await revive(system);
  if (down) return '';
  lastStep.set(system.name, `${s.id} probe`);
  try {
    const r = await system.pool.request({ ...requestFor(s, `probe-${system.name}`, 0), headersTimeout: 10_000, bodyTimeout: 10_000 });
    const body = Buffer.from(await r.body.arrayBuffer());
    const enc = String(r.headers['content-encoding'] ?? 'identity');
    return `${r.statusCode} ${enc} ${formatBytes(body.length)}`;
  } catch (err) {
    return `probe failed: ${(err as Error).message}`;
  }
}

/** Why the system's process is gone, or undefined while it runs. */
function exited(system: System): string | undefined {
  const p = system.child.proc;
  return p.exitCode === null && p.signalCode === null ? undefined : `${system.name} exited (${p.signalCode ?? `code ${p.exitCode}`})`;
}

interface Crash { system: SystemName; after: string; why: string; output: string }
const crashes: Crash[] = [];
const recorded = new Set<number>();
/** What each system did last, to say when it crashed. */
const lastStep = new Map<SystemName, string>();

/**
 * A system that died is recorded (once per process, with its last output) and started again, so one
 * crash does not hide the other scenarios. Returns why it is still down, if it could not be restarted.
 */
async function revive(system: System): Promise<string | undefined> {
  const why = exited(system);
  if (!why) return undefined;
  if (!recorded.has(system.child.pid)) {
    recorded.add(system.child.pid);
    const after = lastStep.get(system.name) ?? 'start';
    crashes.push({ system: system.name, after, why, output: system.child.output() });
    console.log(`  ${why} during or after: ${after}; its last output:\n    ${system.child.output().replace(/\n/g, '\n    ')}`);
  }
  try {
    await restart(system);
    return undefined;
  } catch (err) {
    return `${why}; restart failed: ${(err as Error).message.split('\n')[0]}`;
  }
}

async function measure(system: System, s: Scenario, tool: Tool, runTag: string, response: string): Promise<Row> {
  const protocol = tool === 'h2load' ? 'h2' : 'h1';
  const row: Row = { scenario: s.id, tool, protocol, system: system.name, response };
  const down = await revive(system);
  if (down) return { ...row, error: down };
  lastStep.set(system.name, `${s.id} ${tool}`);
  const spec: LoadSpec = {
    base: system.base, path: s.path, method: s.method, headers: s.headers, body: s.body,
    unique: s.unique ? `${runTag}-${system.name}-${tool}` : undefined,
    seconds: SETTINGS.seconds, connections: SETTINGS.connections,
    h2Connections: SETTINGS.h2Connections, h2Streams: SETTINGS.h2Streams,
    ...s.crowd,
    wrap: loaderWrap, tmp,
  };
  const sampler = s.memory && system.name === 'outpost' ? rssSampler(system.child.pid) : undefined;
  try {
    const before = await originCounts();
    const cpu0 = cpuSeconds(system.child.pid);
    const result: LoadResult = tool === 'autocannon' ? await runAutocannon(spec) : tool === 'h2load' ? await runH2load(spec) : await runWrk(spec);
    const cpu = cpuSeconds(system.child.pid) - cpu0;
    const after = await settledCounts(before.total);
    Object.assign(row, {
      responses: result.responses,
      rps: result.rps,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      errors: result.errors,
      originRequests: system.name === 'ceiling' ? undefined : after.total - before.total,
      cpuUsPerResponse: result.responses > 0 ? (cpu / result.responses) * 1e6 : undefined,
      note: result.note ?? (s.crowd ? (protocol === 'h2' ? `${spec.h2Connections} connections x ${spec.h2Streams} streams` : `${spec.connections} connections`) : undefined),
    });
  } catch (err) {
    row.error = (err as Error).message;
  } finally {
    const gone = exited(system);
    if (gone) row.error = `${gone} during this run`;
    if (sampler) system.rss.peakLarge = Math.max(system.rss.peakLarge ?? 0, sampler.stop());
  }
  return row;
}

/** The burst's requests ask for what browsers take (since 2026-12-01; before, no Accept-Encoding). */
const BURST_HEADERS = { 'accept-encoding': 'br, gzip' };

async function burst(system: System, protocol: 'h1' | 'h2', runTag: string): Promise<Burst> {
  const path = `${PATHS.burst}${runTag}-${system.name}-${protocol}`;
  const out: Burst = { system: system.name, protocol, requests: SETTINGS.burst };
  const down = await revive(system);
  if (down) return { ...out, error: down };
  lastStep.set(system.name, `burst ${protocol}`);
  try {
    let cpu0 = cpuSeconds(system.child.pid);
    const r = protocol === 'h1'
      ? await burstH1(system.base, path, SETTINGS.burst, PATHS.small, BURST_HEADERS, () => { cpu0 = cpuSeconds(system.child.pid); })
      : await burstH2(system.base, path, SETTINGS.burst, BURST_HEADERS, tmp, loaderWrap);
    const cpuMs = (cpuSeconds(system.child.pid) - cpu0) * 1000;
    const counts = await originCounts();
    Object.assign(out, {
      ok: r.ok, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, cpuMs,
      originRequests: system.name === 'ceiling' ? undefined : counts.paths[path.replace(/^\/o/, '')] ?? 0,
    });
  } catch (err) {
    out.error = (err as Error).message;
  }
  const gone = exited(system);
  if (gone) out.error = `${gone} during this run`;
  return out;
}

// --- main --------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const t0 = performance.now();
  console.log(flags.soak ? 'Outpost benchmark (soak)' : `Outpost benchmark (${machine.mode}: ${SETTINGS.seconds} s per run, ${SETTINGS.connections} HTTP/1.1 connections, ` +
    `HTTP/2 ${SETTINGS.h2Connections}x${SETTINGS.h2Streams} streams${SETTINGS.rounds > 1 ? `, ${SETTINGS.rounds} rounds` : ''})`);
  console.log(`${machine.date}  ${machine.cpu}, ${machine.cores} cores, Linux ${machine.kernel}, Node ${machine.node}, ` +
    `Outpost ${machine.outpostCommit}${machine.outpostDirty ? ' + uncommitted changes' : ''} (malloc: ${machine.outpostAllocator}${machine.outpostAllocator === 'system' && machine.outpostMallocArenaMax ? `, MALLOC_ARENA_MAX=${machine.outpostMallocArenaMax}` : ''})`);
  console.log(`nginx ${machine.nginx}, h2load ${machine.h2load}, wrk ${machine.wrk}, autocannon ${machine.autocannon}, ${machine.openssl}; pinning: ${machine.pinning}`);
  for (const line of missingTools()) console.log(`  ${line}`);
  if (machine.busyBeforeStart > 0.1) {
    console.log(`  the machine was ${Math.round(machine.busyBeforeStart * 100)}% busy before start (other processes): expect noisy numbers`);
  }
  const slowPages = pageFaultWarning(machine.pageFaultMicros);
  if (slowPages !== undefined) console.log(`  ${slowPages}`);

  // One self-signed certificate for every system.
  const cert = join(tmp, 'cert.pem');
  const key = join(tmp, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  chmodSync(key, 0o600);
  if (flags.soak) return soak(cert, key, t0);
  const site = join(ROOT, 'bench', 'site');
  writeSite(site);

  const origin = await startChild('origin', [...loaderWrap, process.execPath, 'bench/origin.ts'], /origin (http:\/\/\S+) (http:\/\/\S+) h2c (http:\/\/\S+)/, 15_000);
  children.push(origin.child);
  originBase = origin.match![1];
  const origins = [origin.match![1], origin.match![2], origin.match![3]] as const;
  const originPorts = [Number(new URL(origins[0]).port), Number(new URL(origins[1]).port)] as const;
  if (flags.instructions) return instructions(cert, key, origins, site, t0);

  const wanted = new Set((flags.systems ?? 'ceiling,outpost,nginx').split(','));
  const systems: System[] = [];
  const unavailable: Record<string, string> = {};
  const launchers: [SystemName, () => Promise<Launched>][] = [
    ['ceiling', () => launchCeiling(cert, key, origins)],
    ['outpost', () => launchOutpost(cert, key, origins, site)],
    ['nginx', () => (tools.nginx ? launchNginx(cert, key, originPorts, site) : Promise.reject(new Error('not installed')))],
  ];
  for (const [name, launch] of launchers) {
    if (!wanted.has(name)) continue;
    try {
      systems.push(await bringUp(name, launch));
    } catch (err) {
      unavailable[name] = (err as Error).message;
      console.log(`${name}: unavailable: ${(err as Error).message.replace(/\n/g, '\n    ')}`);
    }
  }
  console.log(`running: ${systems.map((s) => `${s.name} ${s.base} (pid ${s.child.pid})`).join(', ')}`);

  for (const system of systems) {
    lastStep.set(system.name, 'warm-up');
    try {
      await warm(system);
    } catch (err) {
      console.log(`  ${system.name}: warm-up failed: ${exited(system) ?? (err as Error).message}`);
    }
    await revive(system);
    system.rss.warm = rssBytes(system.child.pid);
  }
  console.log(`warmed up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const runTag = Date.now().toString(36);
  const rows: Row[] = [];
  for (const s of selected) {
    const toolsFor: Tool[] = ['autocannon', ...(tools.h2load ? ['h2load' as const] : []), ...(tools.wrk && wrkIds.has(s.id) ? ['wrk' as const] : [])];
    const responses = new Map<SystemName, string>();
    for (const system of systems) responses.set(system.name, await probe(system, s));
    for (const tool of toolsFor) {
      const rounds = new Map<SystemName, Row[]>(systems.map((system) => [system.name, []]));
      for (let round = 0; round < SETTINGS.rounds; round++) {
        // Rotated each round, so that no system always runs first or last.
        for (const system of [...systems.slice(round % systems.length), ...systems.slice(0, round % systems.length)]) {
          const row = await measure(system, s, tool, `${runTag}-${round}`, responses.get(system.name)!);
          rounds.get(system.name)!.push(row);
          const label = SETTINGS.rounds > 1 ? ` (round ${round + 1})` : '';
          process.stdout.write(`  ${s.id.padEnd(13)} ${tool.padEnd(10)} ${system.name.padEnd(8)} ${row.error ? `error: ${row.error.split('\n')[0]}` : `${fmt.n(row.rps)} req/s`}${label}\n`);
        }
      }
      for (const system of systems) rows.push(combineRounds(rounds.get(system.name)!));
    }
  }

  const bursts: Burst[] = [];
  for (const protocol of ['h1', ...(tools.h2load ? ['h2' as const] : [])] as const) {
    for (const system of systems) bursts.push(await burst(system, protocol, runTag));
  }
  await new Promise((r) => setTimeout(r, 500)); // a crash right after the last run still counts
  for (const system of systems) {
    await revive(system);
    system.rss.end = rssBytes(system.child.pid);
  }
  // And once the work has stopped for a while: Outpost's memory.trim gives memory back about 31 s
  // after the work stops (src/runtime/malloc-trim.ts); what stays is what it holds. Its work may
  // go on after the load (background upgrades, seconds on a slow host): the clock starts when its
  // CPU goes quiet.
  const outpost = systems.find((s) => s.name === 'outpost' && exited(s) === undefined);
  const waitedMs = outpost ? await quietAfter(outpost.child.pid) : 0;
  await new Promise((r) => setTimeout(r, IDLE_MS));
  for (const system of systems) if (exited(system) === undefined) system.rss.idle = rssBytes(system.child.pid);

  // --- report
  console.log(`\n${selected.map((s) => `${s.id.padEnd(13)} ${s.what}`).join('\n')}\n`);
  console.log(resultsTable(rows));
  console.log('\nreq/s: higher is better; latency and cpu: lower is better. origin: requests that reached the origin during the run.');
  console.log(`cpu us/resp: the server's process CPU time (/proc/PID/stat utime+stime, all its processes) / responses.`);
  console.log(`\nburst: ${SETTINGS.burst} concurrent GETs for one cold URL, Accept-Encoding: ${BURST_HEADERS['accept-encoding']} (the origin holds its answer ${BURST_DELAY_MS} ms; 1 is perfect coalescing; cpu: the server's, from the first request of the burst to the last answer)`);
  console.log(burstTable(bursts));
  console.log(`\nresident memory (RSS, MiB): at start / after warm-up / peak during static-1mb, pass-1mb and post-1mb / after all runs / ${IDLE_MS / 1000} s after Outpost went quiet (${((waitedMs + IDLE_MS) / 1000).toFixed(0)} s after the runs)`);
  for (const system of systems) {
    const mb = (v?: number) => (v === undefined ? '-' : (v / (1 << 20)).toFixed(1));
    const restarts = system.restarts ? `  (restarted ${system.restarts}x after crashes: later figures are of a new process)` : '';
    console.log(`  ${system.name.padEnd(8)} ${mb(system.rss.start)} / ${mb(system.rss.warm)} / ${system.name === 'outpost' ? mb(system.rss.peakLarge) : '-'} / ${mb(system.rss.end)} / ${mb(system.rss.idle)}${restarts}`);
  }
  if (crashes.length > 0) {
    console.log(`\ncrashes (the system was started again, cold, for the next run):`);
    for (const c of crashes) {
      const last = c.output.split('\n').filter((l) => /error|Error|code:/.test(l)).slice(0, 2).map((l) => l.trim()).join(' | ');
      console.log(`  ${c.system}: ${c.why.replace(`${c.system} `, '')} during or after ${c.after}${last ? `: ${last}` : ''}`);
    }
  }
  for (const [name, reason] of Object.entries(unavailable)) console.log(`\n${name} was not measured: ${reason.split('\n')[0]}`);
  const missing = missingTools();
  if (missing.length > 0) console.log(`\n${missing.join('\n')}`);

  writeResults(t0, {
    scenarios: selected,
    systems: Object.fromEntries(systems.map((s) => [s.name, { base: s.base, rssBytes: s.rss, restarts: s.restarts, config: configs[s.name] }])),
    unavailable,
    rows,
    bursts,
    crashes,
  });

  for (const system of systems) await system.pool.close();
}

/**
 * bench/results/<date>-<mode>.json: the machine, plus what the mode measured. Every mode writes the
 * same top-level fields (other tooling reads them), empty where it has none.
 */
function writeResults(t0: number, fields: { machine?: object; scenarios?: readonly Scenario[]; systems: object; unavailable?: object; rows?: readonly Row[]; bursts?: readonly Burst[]; crashes?: readonly unknown[]; [extra: string]: unknown }): void {
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${machine.date.replace(/[:.]/g, '-')}-${machine.mode}.json`);
  const { machine: more, scenarios = [], systems, unavailable = {}, rows = [], bursts = [], crashes = [], ...rest } = fields;
  writeFileSync(file, JSON.stringify({
    machine: { ...machine, ...more },
    scenarios: scenarios.map(({ body, ...s }) => ({ ...s, bodyBytes: body?.length })),
    systems,
    unavailable,
    rows,
    bursts,
    crashes,
    ...rest,
  }, null, 2));
  console.log(`\nwrote ${file.slice(ROOT.length + 1)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

/** `--soak`: the memory soak alone; its table, and the results file with a `soak` field. */
async function soak(cert: string, key: string, t0: number): Promise<void> {
  const seconds = Number(flags.seconds ?? 300);
  console.log(`soak: Outpost only, ${seconds} s of load`);
  const result = await runSoak({
    seconds, connections: SETTINGS.connections, cert, key, tmp, root: ROOT, serverWrap, loaderWrap, freePort, nodeFlags: outpostNodeFlags(),
    track: (child) => { children.push(child); },
  });
  console.log(`\n${soakTable(result)}`);
  const { config, ...soakFields } = result;
  writeResults(t0, {
    machine: { seconds },
    systems: { outpost: { rssBytes: { start: result.rssStartBytes, end: result.rssAfterBytes }, restarts: 0, config } },
    soak: soakFields,
  });
}

/**
 * `--instructions`: instructions per response in Outpost and the ceiling (bench/instructions.ts).
 * By default the scenarios whose requests repeat, without 1 MiB bodies (slow under valgrind) and
 * without the crowd of 1,000 in flight; --scenarios picks others (`miss`, `pass-crowd` too).
 */
async function instructions(cert: string, key: string, origins: readonly [string, string, string], site: string, t0: number): Promise<void> {
  const missing = callgrindMissing();
  if (missing !== undefined) {
    console.error(`--instructions: ${missing}`);
    process.exitCode = 1;
    return;
  }
  const scenarios = flags.scenarios ? selected.filter((s) => s.method === 'GET') : selected.filter((s) => s.method === 'GET' && !s.unique && !s.crowd && s.path !== PATHS.large && s.path !== PATHS.download);
  const counts = { warm: flags.warm !== undefined ? Number(flags.warm) : QUICK ? 10000 : 20000, measured: 1000, windows: QUICK ? 1 : 3 };
  const wanted = new Set((flags.systems ?? 'ceiling,outpost').split(','));
  const launchers = [
    { name: 'outpost', launch: (wrap: readonly string[]) => launchOutpost(cert, key, origins, site, wrap, 300_000) },
    { name: 'ceiling', launch: (wrap: readonly string[]) => launchCeiling(cert, key, origins, wrap, 300_000) },
  ].filter((s) => wanted.has(s.name));
  console.log(`instructions: ${launchers.map((s) => s.name).join(' and ')} under callgrind; per scenario and protocol ${counts.warm} requests to warm, then one load: time to settle and ${counts.windows} window(s) of ~${counts.measured} responses counted (the median window kept)`);
  const rows = await runInstructions(launchers, scenarios, { tmp, loaderWrap, ...counts, track: (child) => { children.push(child); } });
  console.log(`\n${instructionTable(rows)}`);
  writeResults(t0, {
    machine: counts,
    scenarios,
    systems: Object.fromEntries(Object.entries(configs).map(([name, config]) => [name, { config }])),
    instructions: rows,
  });
}

try {
  await main();
} finally {
  for (const child of children.reverse()) await child.stop();
}
