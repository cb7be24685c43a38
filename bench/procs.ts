import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * Child processes the runner starts (and only those it stops, by PID), plus what /proc says about
 * them: CPU seconds and resident memory, summed over the process and its descendants (nginx's
 * master and worker; Outpost's workers if it ever runs a cluster).
 */

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly proc: ChildProcess;
  /** The last lines it printed, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

const started = new Set<ChildProcess>();

// Whatever happens to the runner, the servers it started (and their children, such as nginx's
// worker) do not outlive it: Ctrl-C stops them in order; the exit hook is the last resort.
process.on('exit', () => {
  for (const proc of started) {
    if (proc.exitCode !== null || proc.signalCode !== null || !proc.pid) continue;
    for (const pid of processTree(proc.pid).reverse()) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`\n${signal}: stopping the servers`);
    void Promise.all([...started].map((proc) => stopProcess(proc, 2000))).finally(() => process.exit(130));
  });
}

/**
 * The environment for a child: Node processes (Outpost, the ceiling, the origin) share the runner's,
 * and with it the allocator and malloc settings bin/pinned-node chose; other programs (nginx,
 * h2load, wrk) run as installed, with their own malloc as it comes.
 */
export function envFor(cmd: readonly string[]): NodeJS.ProcessEnv {
  if (cmd.includes(process.execPath)) return process.env;
  const { LD_PRELOAD: _preload, MALLOC_CONF: _conf, MALLOC_ARENA_MAX: _arenas, ...env } = process.env;
  return env;
}

/**
 * `outpost check` with Outpost's runtime flags, before a measured start: that start then finds
 * every module in Node's compile cache (src/runtime/compile-cache.ts: V8's flags are part of its
 * key), as a restarted server does. A start right after a change to the code loads Node's
 * TypeScript stripper and keeps it: 114.8 MiB of RSS once listening against 94.8 (2026-12-05),
 * which moved the soak's RSS and the bench's memory line by as much from one run to the next.
 */
export function warmCompileCache(nodeFlags: readonly string[], config: string, cwd?: string): void {
  const cmd = [process.execPath, ...nodeFlags, 'src/main.ts', 'check', '--config', config];
  spawnSync(cmd[0], cmd.slice(1), { cwd, env: envFor(cmd), stdio: 'ignore', timeout: 60_000 });
}

/**
 * Starts `cmd` and resolves once its output matches `ready` (with the match) or, for a function, once
 * it returns true (polled every 100 ms); rejects with its last output when the process exits first or
 * `timeoutMs` passes.
 */
export function startChild(name: string, cmd: readonly string[], ready: RegExp | (() => Promise<boolean>), timeoutMs: number, cwd?: string): Promise<{ child: Child; match?: RegExpExecArray }> {
  const proc = spawn(cmd[0], cmd.slice(1), { cwd, env: envFor(cmd), stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(proc);
  let tail = '';
  const keep = (chunk: Buffer) => { tail = (tail + chunk.toString()).slice(-4000); };
  const child: Child = {
    name,
    pid: proc.pid ?? -1,
    proc,
    output: () => tail.trim().split('\n').slice(-8).join('\n'),
    stop: () => stopProcess(proc),
  };
  return new Promise((resolve, reject) => {
    let buffer = '';
    let done = false;
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs / 1000} s`), timeoutMs);
    const finish = (match?: RegExpExecArray) => {
      done = true;
      clearTimeout(timer);
      proc.off('exit', onExit);
      resolve({ child, match });
    };
    const fail = (why: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void stopProcess(proc).then(() => reject(new Error(`${name}: ${why}${tail.trim() ? `\n${child.output()}` : ''}`)));
    };
    const onData = (chunk: Buffer) => {
      if (done || typeof ready === 'function') return;
      buffer += chunk.toString();
      const match = ready.exec(buffer);
      if (match) finish(match);
      if (buffer.length > 65_536) buffer = buffer.slice(-4096);
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (${signal ?? `code ${code}`}) before it was ready`);
    proc.stdout!.on('data', keep).on('data', onData);
    proc.stderr!.on('data', keep).on('data', onData);
    proc.once('exit', onExit);
    proc.once('error', (err) => fail(err.message));
    if (typeof ready === 'function') {
      const poll = async () => {
        if (done) return;
        if (await ready().catch(() => false)) finish();
        else setTimeout(poll, 100);
      };
      setTimeout(poll, 100);
    }
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export function stopProcess(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || !proc.pid) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => { try { process.kill(proc.pid!, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
    proc.once('exit', () => { clearTimeout(timer); started.delete(proc); resolve(); });
    try { process.kill(proc.pid!, 'SIGTERM'); } catch { clearTimeout(timer); resolve(); }
  });
}

const CLK_TCK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; }
})();

/** Fields of /proc/PID/stat after the command name (which may contain spaces); field 3 is index 0. */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The process and all its descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const ppid = Number(statFields(pid)?.[1]);
    if (ppid) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

/** User + system CPU seconds of a process tree (utime and stime, fields 14 and 15). */
export function cpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

/** Resident set size of a process tree in bytes (VmRSS). */
export function rssBytes(root: number): number {
  let kb = 0;
  for (const pid of processTree(root)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch { /* exited */ }
  }
  return kb * 1024;
}

/**
 * Waits until a process tree uses less than `share` of one core over a second (or `maxMs` passed);
 * answers how long it waited. A server may go on working after its load stops (Outpost's background
 * Brotli 11 upgrades), so "after the load" starts here.
 */
export async function quietAfter(root: number, { share = 0.1, maxMs = 60_000 } = {}): Promise<number> {
  const started = Date.now();
  let last = cpuSeconds(root);
  while (Date.now() - started < maxMs) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuSeconds(root);
    if (now - last < share) break;
    last = now;
  }
  return Date.now() - started;
}

/** Samples a tree's RSS every `everyMs` until stopped; returns the peak. */
export function rssSampler(root: number, everyMs = 100): { stop(): number } {
  let peak = rssBytes(root);
  const timer = setInterval(() => { peak = Math.max(peak, rssBytes(root)); }, everyMs);
  return { stop: () => { clearInterval(timer); return Math.max(peak, rssBytes(root)); } };
}

/** Share of the machine's CPU time that was busy over `ms` (from /proc/stat), 0..1. */
export async function machineBusy(ms: number): Promise<number> {
  const sample = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0); // idle + iowait
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
}

/** 4 KiB: the page the fault cost is given per (the usual size; with huge pages a fault covers more). */
const PAGE = 4096;

/**
 * Microseconds this machine takes to hand a process fresh memory, per 4 KiB page: the first write
 * to `bytes` of new memory less a second write of the same bytes, divided by its pages. A fraction
 * of a microsecond on bare metal; 11-18 µs on the VMs of 2026-12-05 (docs/performance.md, "what
 * fresh memory costs here"), where every row in which a system takes fresh pages (misses into a
 * filling cache, nginx's per-response compression buffers, large bodies) measures the host's memory
 * as much as the system's code. 64 MiB is above glibc's largest mmap threshold, so the allocation
 * is a new mapping whose pages nobody touched yet.
 */
export function pageFaultMicros(bytes = 64 * 1024 * 1024): number {
  const fresh = Buffer.allocUnsafeSlow(bytes);
  const t0 = process.hrtime.bigint();
  fresh.fill(1);
  const t1 = process.hrtime.bigint();
  fresh.fill(2);
  const t2 = process.hrtime.bigint();
  return Math.max(0, Number(t1 - t0 - (t2 - t1)) / 1000 / Math.ceil(bytes / PAGE));
}

/** Above this many µs per fresh page the bench says so: ten times what bare metal takes. */
export const SLOW_PAGE_FAULT_MICROS = 2;

/** The bench's warning for a machine whose fresh pages cost `micros` each, or undefined when they are cheap. */
export function pageFaultWarning(micros: number): string | undefined {
  if (!(micros > SLOW_PAGE_FAULT_MICROS)) return undefined;
  return `fresh memory costs ${micros.toFixed(1)} µs per 4 KiB page here (bare metal: under 0.5): rows where a system ` +
    'takes new pages (miss, nginx compressing per response, large bodies) measure this host as much as the code';
}
