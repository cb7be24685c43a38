import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instructionTable, type InstructionRow } from '../../bench/instructions.ts';

const row = (system: string, fields: Partial<InstructionRow>): InstructionRow => ({
  scenario: 'hit-br', load: 'h2', system, responses: 1000, instructions: 0, windows: [], ...fields,
});

test('each window is divided by its own responses; older results, by the one count all their windows had', () => {
  const table = instructionTable([
    // One load: windows of 1,000, 2,000 and 1,500 responses; the median window is the second.
    row('outpost', { responses: 2000, instructions: 300_000_000, windows: [150_000_000, 300_000_000, 240_000_000], windowResponses: [1000, 2000, 1500], compiler: 20_000_000, compilers: [0, 20_000_000, 0] }),
    // A results file from before: every window 1,000 responses.
    row('ceiling', { responses: 1000, instructions: 130_000_000, windows: [120_000_000, 130_000_000, 140_000_000] }),
  ]);
  const line = table.split('\n').find((l) => l.startsWith('hit-br'))!;
  // Outpost: (300M - 20M) / 2,000 = 140k; windows 150k, 140k, 160k. The ceiling: 130k (120k-140k).
  assert.match(line, /140k \(140k-160k\)\s+130k \(120k-140k\)\s+1\.08x/);
});
