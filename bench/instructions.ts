import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './load.ts';
import { quietAfter, type Child } from './procs.ts';
import { RESPONSE_MARKS, apartFromServing, callsTo } from './callgrind.ts';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * `npm run bench -- --instructions [--scenarios a,b]`: machine instructions per response, counted by
 * valgrind's callgrind in Outpost and in the ceiling for the same requests. Requests per second
 * and CPU time drift with the host (the README's machine: up to 2x between two rounds of one
 * run); an instruction count does not drift with the host, only with the work. What still moves
 * it is garbage collection: one full collection of the heap costs ~145M instructions (2 in a
 * window of 400 uploads added 0.7M per upload), a window of 1,000 hits ~200M, so a window that
 * held one read up to twice another (seen: 183k, 396k and 277k per Brotli hit over HTTP/2 in
 * one row), which is why full collections are now left out of the counts (below). The table
 * gives the median window and the range; the same command twice gave
 * 198.9k and 198.5k per gzip hit over HTTP/1.1 (the ceiling 175.9k and 175.2k), and 404k and
 * 423k per pass-through response (the relaying ceiling 284k and 385k). Read a row against its
 * range and over runs. It counts every thread of the process (collection and the optimizing
 * compiler's background work included), but not the kernel's part of a system call, and it says
 * nothing about waiting: a row here is work, not speed.
 *
 * The optimizing compilers (Turbofan, Maglev) run on background threads and are counted too, but
 * their share of a window says how recently V8 threw optimized code away, not what a request
 * costs: a full collection clears the weak references optimized code holds and the functions
 * concerned are compiled again (--trace-deopt: "embedded weak objects cleared"), and under
 * valgrind's 20-50x slowdown the collections V8 starts on timers (its memory reducer) most likely
 * come far more often per request than at speed (at speed, --trace-opt: 3 compilations in 30,000
 * pass-through requests once warm).
 * Seen: 0 to 26 % of a window of Outpost's pass-through after 9,000 to 57,000 requests (356k
 * instructions per response with 26 %, 240k with none), and 0 to 11 % in the ceiling's, however
 * long the warm-up. So each row also gives the compilers' share of its median window (their jobs'
 * inclusive cost, read with callgrind_annotate), and the table's counts and ratio leave it out.
 * Full collections the same (callgrind.ts says which functions): under valgrind most are the ones
 * V8 starts on timers, and one in a window added ~130k per response to a Brotli hit's ~175k.
 *
 * Each system runs under callgrind with counting off; per scenario and protocol the runner sends
 * `warm` requests (the JIT tiers up), waits once for the process to go idle, then starts one load
 * that spans every window: after 5 s or more to settle (where the rate while counting is read),
 * `windows` windows back to back (zeroing the counters, reading each total from a dump), each as
 * long as `measured` responses take at that rate, its responses counted by the calls to a function
 * every response runs once (callgrind.ts RESPONSE_MARKS); it keeps the median window, with all of
 * them in the row. One load, because a new set of connections is not free for V8: at speed the
 * first streams of the second set deoptimize the stream code ("wrong map", 20-40 bailouts with
 * `--trace-deopt`, in both servers) and V8 compiles it again; under valgrind every new set kept
 * Outpost's compilers busy (5-15 % of its windows) and its code a tier lower. Until 2026-12-05
 * every window was a load of its own, on connections of its own: a Brotli hit over HTTP/2 read
 * 145k per response in Outpost and 128k in the ceiling then, 130k and 118-127k with one load;
 * pass-through 241-245k against the relay's 180-195k then, 202-204k against 186-205k with one
 * load. Load: h2load, HTTP/2 (2 connections x 8 streams) and HTTP/1.1 (`--h1`, 16 connections).
 * Valgrind runs a process 20-50x slower, so counts are few and the run takes minutes.
 */

export interface InstructionScenario {
  readonly id: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly unique?: boolean;
  /** Requests in flight other than 16 (HTTP/1.1 connections; HTTP/2 connections x streams). */
  readonly crowd?: Crowd;
}

/** A load shape with more requests in flight than the default 16 (run.ts `pass-crowd`). */
export interface Crowd {
  readonly connections: number;
  readonly h2Connections: number;
  readonly h2Streams: number;
}

export interface InstructionRow {
  readonly scenario: string;
  readonly load: 'h1' | 'h2';
  readonly system: string;
  /** Responses counted, and the instructions their process ran meanwhile (all threads), in the median window. */
  readonly responses: number;
  readonly instructions: number;
  /** Each window's instruction count ... */
  readonly windows: readonly number[];
  /** ... and responses (results before 2026-12-05 lack it: every window had `responses`). */
  readonly windowResponses?: readonly number[];
  /** Of the median window's instructions, those the optimizing compilers' background jobs ran ... */
  readonly compiler?: number;
  /** ... and of each window's. */
  readonly compilers?: readonly number[];
  /** Of the median window's instructions, those full collections ran (marking and sweeping, all threads) ... */
  readonly fullCollection?: number;
  /** ... and of each window's. */
  readonly fullCollections?: readonly number[];
  readonly error?: string;
}

export interface InstructionSystem {
  readonly name: string;
  /** Starts the system with `wrap` before its command; resolves once it listens. */
  readonly launch: (wrap: readonly string[]) => Promise<{ child: Child; base: string }>;
}

export interface InstructionOptions {
  readonly tmp: string;
  readonly loaderWrap: readonly string[];
  readonly warm: number;
  /** Requests counted per window, and windows per scenario and protocol. */
  readonly measured: number;
  readonly windows: number;
  readonly track: (child: Child) => void;
}

/** valgrind and callgrind_control, or why the mode cannot run. */
export function callgrindMissing(): string | undefined {
  for (const tool of ['valgrind', 'callgrind_control']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      return `${tool} is missing (apt-get install valgrind)`;
    }
  }
  return undefined;
}

/**
 * The h2load arguments for the scenario: `count` requests, or as many as `seconds` allow (then
 * `count` is the length of a unique scenario's URL list, which must outlast the run: h2load would
 * start it again, and those requests would be hits).
 */
function loadArgs(s: InstructionScenario, base: string, load: 'h1' | 'h2', count: number, tag: string, tmp: string, seconds?: number): string[] {
  const { connections, h2Connections, h2Streams } = s.crowd ?? { connections: 16, h2Connections: 2, h2Streams: 8 };
  const headers = Object.entries(s.headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`]);
  const amount = seconds === undefined ? ['-n', String(count)] : ['-D', String(seconds)];
  if (!s.unique) {
    const shape = load === 'h1' ? ['--h1', '-c', String(connections)] : ['-c', String(h2Connections), '-m', String(h2Streams)];
    return ['h2load', ...amount, ...shape, ...headers, `${base}${s.path}`];
  }
  // h2load gives every client the URI list from its start: with several connections each URL
  // would be asked once per connection, a miss and then hits. One connection asks each once
  // (over HTTP/1.1 one request at a time; over HTTP/2 with all the streams).
  const shape = load === 'h1' ? ['--h1', '-c', '1'] : ['-c', '1', '-m', String(h2Connections * h2Streams)];
  const list = join(tmp, `uris-${tag}.txt`);
  writeFileSync(list, Array.from({ length: count }, (_, i) => `${base}${s.path}?n=${tag}-${i}`).join('\n'));
  return ['h2load', ...amount, ...shape, ...headers, '-i', list];
}

/** The instructions counted since the last zeroing: the total of the newest dump of process `pid`, and that dump. */
function dumped(pid: number, dir: string): { total: number; file: string; text: string } {
  execFileSync('callgrind_control', ['-d', String(pid)], { stdio: 'ignore' });
  // callgrind.<pid>.<n>: the n-th dump (callgrind.<pid> itself is written at exit).
  const part = new RegExp(`^callgrind\\.${pid}\\.(\\d+)$`);
  const dumps = readdirSync(dir).flatMap((f) => { const m = part.exec(f); return m ? [{ f, n: Number(m[1]) }] : []; }).sort((a, b) => a.n - b.n);
  if (dumps.length === 0) throw new Error(`callgrind wrote no dump for process ${pid}`);
  const text = readFileSync(join(dir, dumps.at(-1)!.f), 'utf8');
  // `totals:` sums the cost lines of this dump (its `summary:` line reads 0 with --instr-atstart=no).
  const total = /^totals: (\d+)/m.exec(text);
  if (!total) throw new Error(`no total in callgrind's dump ${dumps.at(-1)!.f}`);
  return { total: Number(total[1]), file: join(dir, dumps.at(-1)!.f), text };
}

/** What a dump between two windows may take under valgrind (the load goes on meanwhile, counted in no window). */
const DUMP_ALLOWANCE_MS = 5000;
/** The least time a load runs before its first window (its connections open, its first streams served). */
const SETTLE_MS = 5000;

/**
 * Window `i`'s instructions per response, less the compilers' jobs and full collections (older
 * results lack either: less what they have; and the window's own responses, which they lack too:
 * every window had `responses`).
 */
const servingPerResponse = (r: Pick<InstructionRow, 'windows' | 'compilers' | 'fullCollections' | 'windowResponses' | 'responses'>, i: number): number =>
  (r.windows[i] - (r.compilers?.[i] ?? 0) - (r.fullCollections?.[i] ?? 0)) / (r.windowResponses?.[i] ?? r.responses);

/** What a dump's instructions hold apart from serving (apartFromServing). */
function notServing(file: string): { compilers: number; fullCollections: number } {
  return apartFromServing(execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }));
}

export async function runInstructions(systems: readonly InstructionSystem[], scenarios: readonly InstructionScenario[], options: InstructionOptions): Promise<InstructionRow[]> {
  const { tmp, loaderWrap, warm, measured } = options;
  const rows: InstructionRow[] = [];
  for (const system of systems) {
    const wrap = ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(tmp, 'callgrind.%p')}`];
    const t0 = performance.now();
    const { child, base } = await system.launch(wrap);
    options.track(child);
    console.log(`  ${system.name} under callgrind (pid ${child.pid}), up in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const control = (...args: string[]) => execFileSync('callgrind_control', [...args, String(child.pid)], { stdio: 'ignore' });
    for (const s of scenarios) {
      for (const load of ['h1', 'h2'] as const) {
        const tag = `${system.name}-${s.id}-${load}`;
        let loading: ReturnType<typeof run> | undefined;
        try {
          const warmStart = performance.now();
          await run([...loaderWrap, ...loadArgs(s, base, load, warm, `${tag}-warm`, tmp)], 600_000);
          const warmWindowMs = measured / warm * (performance.now() - warmStart);
          // Work the warm-up left behind (Outpost's Brotli 11 upgrade of the page, which waits for
          // a quiet loop) is not this scenario's: counting starts once the process is idle.
          await quietAfter(child.pid, { share: 0.05, maxMs: 120_000 });
          // One load for the settling and every window, on the same connections (see above), long
          // enough for them and the dumps between them (counting runs a process 2-4x slower than
          // the warm-up did), ended by its own clock, which is when its failures are known.
          const settleMs = Math.max(SETTLE_MS, 2 * warmWindowMs);
          const seconds = Math.ceil((settleMs + options.windows * (4 * warmWindowMs + DUMP_ALLOWANCE_MS)) / 1000) + 5;
          const loadStart = performance.now();
          loading = run([...loaderWrap, ...loadArgs(s, base, load, Math.ceil(measured / warmWindowMs * seconds * 1000 * 2), tag, tmp, seconds)], (seconds + 60) * 1000);
          // Settling: the new connections' first requests, and the rate while counting, by which a
          // window is made as long as `measured` responses take (within what is left of the load).
          control('-i', 'on');
          control('-z');
          await sleep(settleMs);
          const settled = callsTo(dumped(child.pid, tmp).text, RESPONSE_MARKS[load]);
          if (settled === 0) throw new Error(`no response while settling (${Math.round(settleMs)} ms)`);
          const left = seconds * 1000 - (performance.now() - loadStart) - 3000;
          const windowMs = Math.min(Math.max(1000, measured / settled * settleMs), left / options.windows - DUMP_ALLOWANCE_MS);
          const counts: number[] = [];
          const responses: number[] = [];
          const files: string[] = [];
          for (let w = 0; w < options.windows; w++) {
            control('-z');
            await sleep(windowMs);
            const { total, file, text } = dumped(child.pid, tmp);
            counts.push(total);
            responses.push(callsTo(text, RESPONSE_MARKS[load]));
            files.push(file);
          }
          control('-i', 'off');
          const out = await loading;
          loading = undefined;
          const apart = files.map(notServing);
          const compiler = apart.map((a) => a.compilers);
          const collection = apart.map((a) => a.fullCollections);
          const failed = Number(/(\d+) failed/.exec(out.stdout)?.[1] ?? 0) + Number(/(\d+) errored/.exec(out.stdout)?.[1] ?? 0);
          const short = responses.findIndex((n) => n < measured / 4);
          // Windows are ranked by what is left without the compilers' work and full collections
          // (see above); the median window is the steady cost.
          const serving = (i: number) => servingPerResponse({ windows: counts, compilers: compiler, fullCollections: collection, windowResponses: responses, responses: 0 /* unread: every window has its own */ }, i);
          const median = [...counts.keys()].sort((a, b) => serving(a) - serving(b))[Math.floor(counts.length / 2)];
          const instructions = counts[median];
          const fields = {
            scenario: s.id, load, system: system.name, responses: responses[median], instructions, windows: counts, windowResponses: responses,
            compiler: compiler[median], compilers: compiler, fullCollection: collection[median], fullCollections: collection,
          };
          const error = failed > 0 ? `${failed} requests failed`
            : short !== -1 ? `window ${short + 1} counted ${responses[short]} responses (the load ended early or stalled)` : undefined;
          const row: InstructionRow = error === undefined ? fields : { ...fields, error };
          rows.push(row);
          const share = (part: number, c: number) => Math.round(part / c * 100);
          const each = counts.map((c, i) => `${responses[i]} responses, ${Math.round(serving(i) / 1000)}k + ${share(compiler[i], c)} % compilers + ${share(collection[i], c)} % full collections`).join('; ');
          console.log(`  ${s.id.padEnd(13)} ${load} ${system.name.padEnd(8)} ${row.error ?? `${Math.round(serving(median)).toLocaleString('en-US')} instructions per response, the compilers' and full collections' work left out (windows: ${each})`}`);
        } catch (error) {
          if (loading !== undefined) {
            // Failed while the load ran: counting off, and the load ended before the next row's warm-up.
            try { control('-i', 'off'); } catch { /* the process is gone */ }
            await loading;
          }
          rows.push({ scenario: s.id, load, system: system.name, responses: 0, instructions: 0, windows: [], error: (error as Error).message.split('\n')[0] });
          console.log(`  ${s.id.padEnd(13)} ${load} ${system.name.padEnd(8)} error: ${(error as Error).message.split('\n')[0]}`);
        }
      }
    }
    await child.stop();
  }
  return rows;
}

/**
 * Outpost's count per response next to the ceiling's (the median window and the windows' range,
 * each less the compilers' work and full collections'), their ratio, and those two shares of each
 * median window.
 */
export function instructionTable(rows: readonly InstructionRow[]): string {
  const find = (scenario: string, load: string, system: string) => {
    const r = rows.find((x) => x.scenario === scenario && x.load === load && x.system === system);
    return r === undefined || r.error !== undefined || r.responses === 0 ? undefined : r;
  };
  const k = (v: number) => `${Math.round(v / 1000)}k`;
  /** The median window less the compilers' work and full collections', per response. */
  const serving = (r: InstructionRow) => (r.instructions - (r.compiler ?? 0) - (r.fullCollection ?? 0)) / r.responses;
  /** Every window's count less the same (older results: less the compilers' work, or the raw counts). */
  const range = (r: InstructionRow) => {
    const each = r.windows.map((_, i) => servingPerResponse(r, i));
    return `${k(Math.min(...each))}-${k(Math.max(...each))}`;
  };
  const cell = (r: InstructionRow | undefined) => r === undefined ? '-'
    : `${k(serving(r))} (${range(r)})`;
  const share = (r: InstructionRow | undefined, part: number | undefined) => r === undefined || part === undefined ? '-' : `${(part / r.instructions * 100).toFixed(0)} %`;
  const lines = [['scenario', 'load', 'Outpost instr/resp (windows)', 'ceiling instr/resp (windows)', 'Outpost ÷ ceiling', 'compilers (Outpost / ceiling)', 'full collections (Outpost / ceiling)']];
  for (const key of new Set(rows.map((r) => `${r.scenario} ${r.load}`))) {
    const [scenario, load] = key.split(' ');
    const outpost = find(scenario, load, 'outpost');
    const ceiling = find(scenario, load, 'ceiling');
    const ratio = outpost !== undefined && ceiling !== undefined ? `${(serving(outpost) / serving(ceiling)).toFixed(2)}x` : '-';
    lines.push([scenario, load, cell(outpost), cell(ceiling), ratio,
      `${share(outpost, outpost?.compiler)} / ${share(ceiling, ceiling?.compiler)}`,
      `${share(outpost, outpost?.fullCollection)} / ${share(ceiling, ceiling?.fullCollection)}`]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l, j) => l.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + (j === 0 ? `\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : '')).join('\n');
}
