import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { envFor } from './procs.ts';

/**
 * Load generators behind one shape: autocannon (HTTP/1.1, in this process, programmatic API),
 * h2load (HTTP/2, a child process; latency percentiles from its per-request log) and wrk (HTTP/1.1,
 * a child process, C: a second opinion where autocannon itself is the bottleneck).
 */

export type Tool = 'autocannon' | 'h2load' | 'wrk';

export interface LoadSpec {
  /** https://127.0.0.1:PORT */
  readonly base: string;
  readonly path: string;
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  /** Append ?miss=<tag>-<n> so that every request is a URL the server has never seen. */
  readonly unique?: string;
  readonly seconds: number;
  /** HTTP/1.1 connections; for HTTP/2 `h2Connections` × `h2Streams` requests are in flight. */
  readonly connections: number;
  readonly h2Connections: number;
  readonly h2Streams: number;
  /** Prefix for child processes, e.g. ['taskset', '-c', '0'] to keep the loader off the server's core. */
  readonly wrap: readonly string[];
  /** Scratch directory for h2load's URI lists, bodies and logs. */
  readonly tmp: string;
}

export interface LoadResult {
  readonly tool: Tool;
  readonly responses: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Socket errors, timeouts and non-2xx answers. */
  readonly errors: number;
  readonly note?: string;
}

export async function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  let n = 0;
  // autocannon's own histogram has 1 ms resolution; keep every response time (float ms) instead.
  const times: number[] = [];
  const instance = autocannon({
    url: spec.base + spec.path,
    method: spec.method,
    headers: spec.headers,
    body: spec.body,
    connections: spec.connections,
    duration: spec.seconds,
    timeout: 10,
    servername: 'localhost',
    tlsOptions: { rejectUnauthorized: false },
    requests: spec.unique ? [{ setupRequest: (req) => ({ ...req, path: `${spec.path}?miss=${spec.unique}-${n++}` }) }] : undefined,
  });
  instance.on('response', (_client, _status, _bytes, ms) => { times.push(ms); });
  const r = await instance;
  const sorted = Float64Array.from(times).sort();
  return {
    tool: 'autocannon',
    responses: r.requests.total,
    seconds: r.duration,
    rps: r.requests.total / r.duration,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    errors: r.errors + r.timeouts + r.non2xx,
  };
}

/** Runs a command with a deadline; resolves with stdout even on a non-zero exit (wrk -v exits 1). */
export function run(cmd: readonly string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd[0], cmd.slice(1), { env: envFor(cmd), timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

let logs = 0;

/** h2load's per-request log: start (µs since epoch), status, µs until the end of the response. */
function readLog(file: string): string[][] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t'));
  rmSync(file);
  return lines;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * h2load counts each client's URI list from the start, so with several connections every unique URL
 * would be asked once per connection: the unique-URL scenario therefore runs one connection carrying
 * all the streams.
 */
export async function runH2load(spec: LoadSpec): Promise<LoadResult> {
  // h2load appends to its log: a fresh file per run.
  const log = join(spec.tmp, `h2load-${++logs}.log`);
  const args = ['h2load', '-D', String(spec.seconds), '--log-file', log];
  for (const [k, v] of Object.entries(spec.headers)) args.push('-H', `${k}: ${v}`);
  if (spec.body) {
    const file = join(spec.tmp, 'body.bin');
    writeFileSync(file, spec.body);
    args.push('-d', file);
  }
  let note: string | undefined;
  if (spec.unique) {
    // Enough distinct URLs for 25k req/s; past that h2load wraps around and repeats would be hits.
    const count = Math.ceil(spec.seconds * 25_000);
    const lines = new Array<string>(count);
    for (let i = 0; i < count; i++) lines[i] = `${spec.base}${spec.path}?miss=${spec.unique}-${i}`;
    const file = join(spec.tmp, 'uris.txt');
    writeFileSync(file, lines.join('\n') + '\n');
    args.push('-c', '1', '-m', String(spec.h2Connections * spec.h2Streams), '-i', file);
    note = `1 connection x ${spec.h2Connections * spec.h2Streams} streams`;
  } else {
    args.push('-c', String(spec.h2Connections), '-m', String(spec.h2Streams), spec.base + spec.path);
  }
  const out = await run([...spec.wrap, ...args], (spec.seconds + 30) * 1000);
  const text = out.stdout;
  const finished = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(text);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(text);
  const statuses = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  if (!finished || !requests || !statuses) {
    throw new Error(`h2load gave no result (exit ${out.code}): ${(out.stderr || text).trim().split('\n').slice(-3).join(' | ')}`);
  }
  const seconds = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1);
  const done = Number(requests[3]);
  const durations = Float64Array.from(readLog(log).map((l) => Number(l[2]) / 1000)).sort();
  const non2xx = Number(statuses[2]) + Number(statuses[3]) + Number(statuses[4]);
  return {
    tool: 'h2load',
    responses: done,
    seconds,
    rps: Number(finished[3]),
    p50Ms: percentile(durations, 50),
    p99Ms: percentile(durations, 99),
    errors: Number(requests[5]) + Number(requests[6]) + Number(requests[7]) + non2xx,
    note,
  };
}

function wrkMs(value: string, unit: string): number {
  return Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 1);
}

/** wrk for plain GETs (one thread, like autocannon's one event loop). */
export async function runWrk(spec: LoadSpec): Promise<LoadResult> {
  if (spec.method !== 'GET' || spec.unique) throw new Error('wrk runs plain GET scenarios only');
  const args = ['wrk', '-t1', `-c${spec.connections}`, `-d${spec.seconds}s`, '--latency', '--timeout', '10s'];
  for (const [k, v] of Object.entries(spec.headers)) args.push('-H', `${k}: ${v}`);
  args.push(spec.base + spec.path);
  const out = await run([...spec.wrap, ...args], (spec.seconds + 30) * 1000);
  const text = out.stdout;
  const total = /(\d+) requests in ([\d.]+)(\w+),/.exec(text);
  const p50 = /50%\s+([\d.]+)(us|ms|s|m)\b/.exec(text);
  const p99 = /99%\s+([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!total || !p50 || !p99) throw new Error(`wrk gave no result (exit ${out.code}): ${(out.stderr || text).trim().split('\n').slice(-3).join(' | ')}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  const seconds = wrkMs(total[2], total[3]) / 1000;
  const responses = Number(total[1]);
  return {
    tool: 'wrk',
    responses,
    seconds,
    rps: responses / seconds,
    p50Ms: wrkMs(p50[1], p50[2]),
    p99Ms: wrkMs(p99[1], p99[2]),
    errors: (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0),
  };
}

export interface BurstResult {
  readonly tool: 'undici' | 'h2load';
  readonly requests: number;
  readonly ok: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/**
 * HTTP/1.1 burst: open `count` TLS connections first (so handshakes do not spread the burst out), then
 * send `count` GETs for one cold URL at once, one per connection.
 */
export async function burstH1(base: string, path: string, count: number, warmPath: string, headers: Record<string, string>, onWarm: () => void): Promise<BurstResult> {
  const pool = new Pool(base, { connections: count, pipelining: 1, allowH2: false, connect: { rejectUnauthorized: false, servername: 'localhost' } });
  try {
    await Promise.all(Array.from({ length: count }, () => pool.request({ path: warmPath, method: 'GET' }).then((r) => r.body.dump())));
    onWarm(); // the connections are open: what follows is the burst's own work
    const times: number[] = [];
    let ok = 0;
    await Promise.all(Array.from({ length: count }, async () => {
      const t0 = performance.now();
      try {
        const r = await pool.request({ path, method: 'GET', headers, headersTimeout: 15_000, bodyTimeout: 15_000 });
        await r.body.dump({ limit: Infinity });
        if (r.statusCode === 200) ok++;
      } catch { /* counted as not ok */ }
      times.push(performance.now() - t0);
    }));
    const sorted = Float64Array.from(times).sort();
    return { tool: 'undici', requests: count, ok, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted[sorted.length - 1] };
  } finally {
    await pool.destroy();
  }
}

/** HTTP/2 burst: one connection, `count` streams at once (the server's stream limit may queue some). */
export async function burstH2(base: string, path: string, count: number, headers: Record<string, string>, tmp: string, wrap: readonly string[]): Promise<BurstResult> {
  const log = join(tmp, `h2load-${++logs}.log`);
  const fields = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const out = await run([...wrap, 'h2load', '-n', String(count), '-c', '1', '-m', String(count), ...fields, '--log-file', log, base + path], 30_000);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded/.exec(out.stdout);
  if (!requests) throw new Error(`h2load gave no result (exit ${out.code}): ${out.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  const lines = readLog(log);
  const sorted = Float64Array.from(lines.map((l) => Number(l[2]) / 1000)).sort();
  const ok = lines.filter((l) => l[1] === '200').length;
  return { tool: 'h2load', requests: count, ok, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted[sorted.length - 1] };
}

