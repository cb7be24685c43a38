import type { Tool } from './load.ts';

/** The runner's result records and the tables printed from them. */

export type SystemName = 'ceiling' | 'outpost' | 'nginx';

export interface Row {
  scenario: string;
  tool: Tool;
  protocol: 'h1' | 'h2';
  system: SystemName;
  responses?: number;
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  errors?: number;
  originRequests?: number;
  cpuUsPerResponse?: number;
  response?: string;
  note?: string;
  error?: string;
  /** With --rounds N > 1: each round's figures, of which the ones above are combined. */
  rounds?: RoundFigures[];
}

export type RoundFigures = Pick<Row, 'rps' | 'p50Ms' | 'p99Ms' | 'cpuUsPerResponse' | 'error'>;

const median = (values: number[]): number | undefined => {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const defined = <T>(values: (T | undefined)[]): T[] => values.filter((v): v is T => v !== undefined);

/**
 * One row from the rounds of one run (same scenario, tool and system): requests per second and
 * CPU per response from the totals (the rounds last equally long), latency percentiles as the
 * median of the rounds' (percentiles do not add up), counts summed. Rounds that failed are left out
 * and said in `note`; when all failed, the row is the first failure.
 */
export function combineRounds(rounds: readonly Row[]): Row {
  if (rounds.length === 1) return rounds[0];
  const ok = rounds.filter((r) => r.error === undefined && r.responses !== undefined);
  const figures: RoundFigures[] = rounds.map(({ rps, p50Ms, p99Ms, cpuUsPerResponse, error }) => ({ rps, p50Ms, p99Ms, cpuUsPerResponse, error }));
  if (ok.length === 0) return { ...rounds[0], rounds: figures };
  const responses = sum(ok.map((r) => r.responses!));
  const cpuSeconds = sum(ok.map((r) => ((r.cpuUsPerResponse ?? 0) * r.responses!) / 1e6));
  const failed = rounds.length - ok.length;
  const notes = [...new Set(defined(ok.map((r) => r.note)))];
  if (failed > 0) notes.push(`${failed} of ${rounds.length} rounds failed: ${rounds.find((r) => r.error !== undefined)?.error?.split('\n')[0]}`);
  const origin = defined(ok.map((r) => r.originRequests));
  return {
    scenario: rounds[0].scenario,
    tool: rounds[0].tool,
    protocol: rounds[0].protocol,
    system: rounds[0].system,
    response: rounds[0].response,
    responses,
    rps: sum(ok.map((r) => r.rps ?? 0)) / ok.length,
    p50Ms: median(defined(ok.map((r) => r.p50Ms))),
    p99Ms: median(defined(ok.map((r) => r.p99Ms))),
    errors: sum(ok.map((r) => r.errors ?? 0)),
    originRequests: origin.length > 0 ? sum(origin) : undefined,
    cpuUsPerResponse: responses > 0 && ok.every((r) => r.cpuUsPerResponse !== undefined) ? (cpuSeconds / responses) * 1e6 : undefined,
    note: notes.length > 0 ? notes.join('; ') : undefined,
    rounds: figures,
  };
}

export interface Burst {
  system: SystemName;
  protocol: 'h1' | 'h2';
  requests: number;
  ok?: number;
  originRequests?: number;
  p50Ms?: number;
  p99Ms?: number;
  maxMs?: number;
  /** The server's CPU time during the burst (HTTP/1.1: after its connections were opened). */
  cpuMs?: number;
  error?: string;
}

export function formatBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}
const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
export const fmt = {
  n: (v?: number) => (v === undefined || Number.isNaN(v) ? '-' : int.format(v)),
  ms: (v?: number) => (v === undefined || Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(1)),
  ratio: (a?: number, b?: number) => (a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '-' : `${(a / b).toFixed(2)}x`),
};

function table(head: string[], rows: string[][], right: boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function resultsTable(rows: Row[]): string {
  const head = ['scenario', 'load', 'system', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'origin', 'cpu us/resp', 'one response'];
  const right = [false, false, false, true, true, true, true, true, true, false];
  const out: string[][] = [];
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.scenario} ${r.tool}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const group of groups.values()) {
    let first = true;
    for (const r of group) {
      const load = `${r.protocol} ${r.tool}`;
      out.push(r.error
        ? [first ? r.scenario : '', first ? load : '', r.system, 'error', '', '', '', '', '', r.error.split('\n')[0].slice(0, 60)]
        : [first ? r.scenario : '', first ? load : '', r.system, fmt.n(r.rps), fmt.ms(r.p50Ms), fmt.ms(r.p99Ms), fmt.n(r.errors),
            fmt.n(r.originRequests), fmt.n(r.cpuUsPerResponse), `${r.response ?? ''}${r.note ? ` (${r.note})` : ''}`]);
      first = false;
    }
    const outpost = group.find((r) => r.system === 'outpost' && !r.error);
    for (const other of ['ceiling', 'nginx'] as const) {
      const o = group.find((r) => r.system === other && !r.error);
      if (!outpost || !o) continue;
      out.push(['', '', `outpost/${other}`, fmt.ratio(outpost.rps, o.rps), fmt.ratio(outpost.p50Ms, o.p50Ms), fmt.ratio(outpost.p99Ms, o.p99Ms),
        '', '', fmt.ratio(outpost.cpuUsPerResponse, o.cpuUsPerResponse), '']);
    }
  }
  return table(head, out, right);
}

export function burstTable(bursts: Burst[]): string {
  const head = ['load', 'system', 'ok/sent', 'origin requests', 'p50 ms', 'p99 ms', 'max ms', 'cpu ms'];
  return table(head, bursts.map((b) => b.error
    ? [b.protocol, b.system, 'error', b.error.split('\n')[0].slice(0, 60), '', '', '', '']
    : [b.protocol, b.system, `${b.ok}/${b.requests}`, fmt.n(b.originRequests), fmt.ms(b.p50Ms), fmt.ms(b.p99Ms), fmt.ms(b.maxMs), fmt.ms(b.cpuMs)]),
  [false, false, true, true, true, true, true, true]);
}

