import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AUTO_HEADROOM, CHECK_MS, FILLING_BYTES, FILLING_PERCENT, MIN_FACTOR, MIN_GROWTH, growthPercentFor, growthSetByOperator, memoryLimitOf, startHeapBudget, type HeapReading } from '../../src/runtime/heap-budget.ts';
import { validateConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { startInstance } from '../../src/runtime/instance.ts';
import { nodeMetrics, startBudget, startNode } from '../../src/runtime/serve.ts';

const MiB = 1024 * 1024;
const ROOT = resolve(import.meta.dirname, '../..');

/** A process of `rss` MiB whose V8 heap commits `committed` (32 of them young) and uses `oldUsed` in the old generation. */
const reading = (rss: number, committed: number, oldUsed: number): HeapReading =>
  ({ rss: rss * MiB, committed: committed * MiB, youngCommitted: 32 * MiB, oldUsed: oldUsed * MiB });

test('memory.limit: far from the limit V8 chooses its own growth; nearer, the old generation may grow into what is left of it', () => {
  // 1,000 MiB limit; outside V8's heap 100 (RSS 200 - 100 committed); young 32: 868 of room for 40 live: >= 4x.
  assert.equal(growthPercentFor(1000 * MiB, reading(200, 100, 60), 40 * MiB), 0);
  // Outside 600: room 1000 - 600 - 32 = 368 for 100 live: 3.68x -> 260 % (steps of 10, rounded down).
  assert.equal(growthPercentFor(1000 * MiB, reading(750, 150, 120), 100 * MiB), 260);
  // Room 368 for 200 live: 1.84x -> 80 %.
  assert.equal(growthPercentFor(1000 * MiB, reading(850, 250, 220), 200 * MiB), 80);
  // Over the limit: never under MIN_FACTOR (a full collection per half of the live heap promoted).
  assert.equal(growthPercentFor(1000 * MiB, reading(1200, 250, 210), 200 * MiB), Math.round((MIN_FACTOR - 1) * 100));
  assert.equal(growthPercentFor(500 * MiB, reading(900, 250, 210), 200 * MiB), Math.round((MIN_FACTOR - 1) * 100));
});

test('memory.limit: a small live heap near the limit still gets MIN_GROWTH bytes of room, else V8 marks again as soon as it has collected', () => {
  // A full 512 MB cache (limit 736 MiB) whose process keeps 34 MiB live: room 736 - 668 - 32 = 36
  // MiB, 1.06x. At MIN_FACTOR (50 %) V8 would have 17 MiB to grow into, less than the young
  // generation can promote: a full collection every ~120 ms (heap-budget.ts, MIN_GROWTH).
  assert.ok(34 * MiB * (MIN_FACTOR - 1) < MIN_GROWTH);
  assert.equal(growthPercentFor(736 * MiB, reading(740, 72, 40), 34 * MiB), 150, '1 + 48 / 34 = 2.41x, rounded up to 2.5x');
  assert.equal(growthPercentFor(736 * MiB, reading(800, 120, 100), 96 * MiB), 50, '96 MiB live: half of it is MIN_GROWTH');
  assert.equal(growthPercentFor(736 * MiB, reading(800, 120, 100), 80 * MiB), 60, '80 MiB live: 48 / 80 = 0.6');
  // 12 MiB live: MIN_GROWTH is four times it, V8's own choice anyway.
  assert.equal(growthPercentFor(736 * MiB, reading(740, 50, 14), 12 * MiB), 0);
});

test('memory.limit: the live heap is the least the old generation used over the last checks, and V8 hears only of changes', () => {
  const applied: number[] = [];
  const readings: HeapReading[] = [];
  const budget = startHeapBudget(1000 * MiB, { read: () => readings.shift()!, apply: (p) => applied.push(p), timer: false });
  readings.push(reading(200, 100, 60));
  assert.equal(budget.check(), 0, 'far from the limit');
  assert.equal(budget.tight(), false);
  // Outside 600, room 368; the old generation used 60 a check ago, 150 now: 368 / 60 >= 4, still V8's own.
  readings.push(reading(750, 150, 150));
  assert.equal(budget.check(), 0, 'garbage not yet collected does not count as live');
  // Outside 700: room 268 / 60 = 4.47: V8's own. Outside 800: 168 / 60 = 2.8 -> 180 %.
  readings.push(reading(800, 100, 90), reading(900, 100, 90));
  budget.check();
  assert.equal(budget.check(), 180);
  readings.push(reading(900, 100, 95));
  assert.equal(budget.check(), 180);
  assert.deepEqual(applied, [180], 'told once');
  assert.equal(budget.stats().tightSeconds, 2 * CHECK_MS / 1000);
  assert.equal(budget.tight(), true, 'near the limit (memory.trim then trims more often)');
  budget.setLimit(null);
  assert.equal(budget.tight(), false);
  assert.deepEqual(applied, [180, 0], 'turned off by a reload: V8 has its own choice back');
  assert.equal(budget.check(), 0);
  assert.deepEqual(budget.stats(), { limit: 0, percent: 0, tightSeconds: 2 * CHECK_MS / 1000 });
  budget.setLimit(1000 * MiB);
  readings.push(reading(900, 100, 95));
  assert.equal(budget.check(), 180, 'on again');
  budget.stop();
  assert.deepEqual(applied, [180, 0, 180, 0], 'stopped: V8 has its own choice back');
});

test('memory.limit: while the memory cache fills far from the limit V8 gets its largest factor; near the limit the limit decides', () => {
  assert.equal(FILLING_PERCENT, 300, 'a factor of 4, the most V8 gives itself');
  assert.equal(growthPercentFor(1000 * MiB, reading(200, 100, 60), 40 * MiB, true), FILLING_PERCENT);
  // Room 368 for 100 live: 3.68x whether or not the cache fills.
  assert.equal(growthPercentFor(1000 * MiB, reading(750, 150, 120), 100 * MiB, true), 260);
  assert.equal(growthPercentFor(1000 * MiB, reading(1200, 250, 210), 200 * MiB, true), Math.round((MIN_FACTOR - 1) * 100));
});

test('memory.limit: the cache fills while it grew by FILLING_BYTES over the last second of checks', () => {
  const applied: number[] = [];
  let held: number | undefined = 0;
  const checksPerSecond = 1000 / CHECK_MS;
  const budget = startHeapBudget(1000 * MiB, { read: () => reading(200, 100, 60), apply: (p) => applied.push(p), cacheHeld: () => held, timer: false });
  assert.deepEqual(applied, [], 'nothing until a check');
  // FILLING_BYTES a second, less a byte, spread over the checks of a second: not filling.
  const step = Math.floor((FILLING_BYTES - 1) / checksPerSecond);
  for (let i = 0; i < 2 * checksPerSecond; i++) {
    held += step;
    assert.equal(budget.check(), 0, `check ${i}`);
  }
  // Twice that rate: filling from the check at which the last second's growth reaches it.
  const fast = Math.ceil(2 * FILLING_BYTES / checksPerSecond);
  const seen: number[] = [];
  for (let i = 0; i < checksPerSecond; i++) {
    held += fast;
    seen.push(budget.check());
  }
  assert.equal(seen.at(-1), FILLING_PERCENT);
  assert.ok(seen.indexOf(FILLING_PERCENT) <= checksPerSecond / 2 + 1, `seen as filling late: ${seen.join(', ')}`);
  // A second without growth: V8's own choice again.
  for (let i = 0; i < checksPerSecond - 1; i++) budget.check();
  assert.equal(budget.check(), 0, 'a second without growth');
  held -= 5 * MiB; // evictions, a purge
  assert.equal(budget.check(), 0);
  held = undefined; // a reload to a store with no memory tier
  assert.equal(budget.check(), 0);
  assert.deepEqual(applied, [FILLING_PERCENT, 0]);
  assert.equal(budget.stats().tightSeconds, 0, 'filling is not near the limit');
  assert.equal(budget.tight(), false);
  budget.stop();

  const toldOff: number[] = [];
  const off = startHeapBudget(null, { read: () => reading(200, 100, 60), apply: (p) => toldOff.push(p), cacheHeld: () => held, timer: false });
  held = 0;
  off.check();
  held = 10 * FILLING_BYTES;
  assert.equal(off.check(), 0, 'memory.limit off: V8 keeps its own choice');
  off.stop();
  assert.deepEqual(toldOff, []);
});

test('memory.limit: the serving process\'s budget reads its memory cache', async () => {
  const config = validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-budget-fill-')) },
    sites: [{ hosts: ['*'], static: 'public' }], cache: { store: 'memory', maxSize: '256MB', maxObjectSize: '2MB' },
  });
  const instance = await startInstance(config);
  const budget = startBudget(config, instance);
  try {
    assert.ok(budget !== undefined);
    assert.equal(budget.check(), 0, 'its memory cache did not grow');
    // Bodies into this instance's memory cache, as misses bring them: filling.
    const engine = instance.current().engine;
    const now = Date.now();
    const meta = { status: 200, headers: { 'cache-control': 'max-age=600', date: new Date(now).toUTCString() }, requestTime: now, responseTime: now, tags: [] };
    for (let i = 0; i <= FILLING_BYTES / MiB; i++) assert.ok(await engine.save(`https://a/${i}`, {}, meta, Buffer.alloc(MiB, i)), `stored ${i}`);
    assert.ok(engine.usage()!.bytes > FILLING_BYTES);
    assert.equal(budget.check(), FILLING_PERCENT);
  } finally {
    budget?.stop();
    await instance.close();
  }
});

test('memory.limit: V8 uses the growth the budget sets while running (--trace-gc-verbose prints the factor of each full collection)', () => {
  // A real V8: set by the budget at runtime, the factor shows in V8's own trace after the next
  // full collection; without the budget, V8's own factor (not 1.5).
  const script = `
    import { startHeapBudget } from './src/runtime/heap-budget.ts';
    const budget = startHeapBudget(1, { timer: false, read: () => ({ rss: 1, committed: 1, youngCommitted: 0, oldUsed: 200 * 1024 * 1024 }) });
    if (process.argv[1] === 'on') budget.check();
    const keep = [];
    for (let i = 0; i < 200000; i++) keep.push({ i, s: 'x' + i });
    globalThis.gc({ type: 'major' });
    console.log('kept', keep.length);`;
  const run = (mode: string) => spawnSync(process.execPath, ['--expose-gc', '--trace-gc-verbose', '--input-type=module', '-e', script, mode], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  const factors = (out: string) => [...out.matchAll(/\[(?:Heap|GlobalMemory)Controller\] factor ([\d.]+)/g)].map((m) => Number(m[1]));
  const on = run('on');
  assert.equal(on.status, 0, on.stderr);
  const onFactors = factors(on.stdout);
  assert.ok(onFactors.length > 0, `no factor in V8's trace: ${on.stdout.slice(-400)}`);
  assert.ok(onFactors.every((f) => f === MIN_FACTOR), `factors with the budget: ${onFactors.join(', ')}`);
  const off = run('off');
  assert.equal(off.status, 0, off.stderr);
  assert.ok(factors(off.stdout).some((f) => f !== MIN_FACTOR), `factors without it: ${factors(off.stdout).join(', ')}`);
});

test('memory.limit: "auto" is what the memory cache holds plus AUTO_HEADROOM; "off"; a size; and a bad value names the key', () => {
  assert.equal(validateConfig({}).memory.limit, 'auto');
  assert.equal(memoryLimitOf('auto', 512 * MiB), 512 * MiB + AUTO_HEADROOM);
  assert.equal(memoryLimitOf(validateConfig({ memory: { limit: '2GB' } }).memory.limit, 512 * MiB), 2048 * MiB);
  assert.equal(memoryLimitOf(validateConfig({ memory: { limit: 'off' } }).memory.limit, 512 * MiB), null);
  for (const bad of ['lots', '1MB', -5, true]) {
    assert.throws(() => validateConfig({ memory: { limit: bad } }), (err: unknown) => err instanceof ConfigError &&
      err.problems.includes(`memory.limit: expected "auto", "off" or a size of at least 64MB such as 1GB, got ${JSON.stringify(bad)}`), String(bad));
  }
});

test('memory.limit: an operator who set --heap-growing-percent keeps it', () => {
  assert.equal(growthSetByOperator(['--max-semi-space-size=16', '--heap-growing-percent=50'], ''), true);
  assert.equal(growthSetByOperator([], '--heap_growing_percent=100 --expose-gc'), true);
  assert.equal(growthSetByOperator(['--max-semi-space-size=16'], '--heap-growing-percentile'), false);
});

test('memory.limit: metrics show the limit, what V8 is told and how long the process was near the limit', async () => {
  const instance = await startInstance(validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-budget-cert-')) },
    sites: [{ hosts: ['*'], static: 'public' }],
  }));
  const applied: number[] = [];
  const budget = startHeapBudget(1000 * MiB, { read: () => reading(900, 100, 95), apply: (p) => applied.push(p), timer: false });
  const metrics = await nodeMetrics(instance, undefined, budget);
  try {
    budget.check();
    budget.check();
    const text = await metrics.text();
    assert.match(text, new RegExp(`^outpost_memory_limit_bytes ${1000 * MiB}$`, 'm'));
    // Room 1000 - 800 - 32 = 168 MiB for the 95 used: 1.77x -> 70 %.
    assert.match(text, /^outpost_memory_heap_growth_percent 70$/m);
    assert.match(text, new RegExp(`^outpost_memory_limit_near_seconds_total ${2 * CHECK_MS / 1000}$`, 'm'));
  } finally {
    budget.stop();
    metrics.close();
    await instance.close();
  }
  assert.deepEqual(applied, [70, 0]);
});

test('memory.limit: a reload applies a new limit, and "off"', async () => {
  const configWith = (limit: unknown) => validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-budget-reload-')) },
    admin: { listen: '127.0.0.1:0', token: '0123456789abcdef0123' },
    sites: [{ hosts: ['*'], static: 'public' }],
    memory: { limit },
  });
  const node = await startNode(configWith('1GB'));
  const limitNow = async () => Number(/^outpost_memory_limit_bytes (\d+)$/m.exec(await node.metrics.text())?.[1]);
  try {
    assert.equal(await limitNow(), 1024 * MiB);
    await node.apply(configWith('2GB'));
    assert.equal(await limitNow(), 2048 * MiB);
    await node.apply(configWith('off'));
    assert.equal(await limitNow(), 0);
  } finally {
    await node.close();
  }
});
