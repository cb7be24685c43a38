import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HELPER_PATH, TRIM_POLICY, loadMallocHelper, pressurePolicy, startMallocTrimmer, type TrimPolicy } from '../../src/runtime/malloc-trim.ts';
import { loadPressureHelper, pagedHeapBytes } from '../../src/runtime/v8-pool.ts';
import { startInstance } from '../../src/runtime/instance.ts';
import { nodeMetrics } from '../../src/runtime/serve.ts';
import { validateConfig } from '../../src/config/load.ts';
import { nativeEncoder } from '../../src/compress/background.ts';

// The helper is built by `npm ci` (native/build.sh) where a C compiler and glibc 2.33+ exist;
// .ci/run sets OUTPOST_REQUIRE_MALLOC_TRIM, so there these tests never skip.
const ROOT = resolve(import.meta.dirname, '../..');
const loaded = loadMallocHelper(HELPER_PATH, 'system');
if (loaded.helper === null && process.env.OUTPOST_REQUIRE_MALLOC_TRIM === '1') throw new Error(`OUTPOST_REQUIRE_MALLOC_TRIM=1 but ${loaded.why}`);
const skip = loaded.helper === null ? loaded.why : false;
// The memory-pressure helper (native/heap-pressure.cc) needs a C++ compiler as well.
const pressureHelper = loadPressureHelper();
if (pressureHelper.helper === null && process.env.OUTPOST_REQUIRE_MALLOC_TRIM === '1') throw new Error(`OUTPOST_REQUIRE_MALLOC_TRIM=1 but ${pressureHelper.why}`);
const skipPressure = pressureHelper.why ?? false;

const MiB = 2 ** 20;

/** The policy with every free-bytes threshold at 0: each decision to trim shows as a trim. */
const ALWAYS: TrimPolicy = { ...TRIM_POLICY, quietChecks: 1, collectChecks: 1, quietFreeBytes: 0, busyFreeBytes: 0, pooledPressureBytes: null };

test('memory.trim: trims once when the event loop goes quiet after work, and under load at most once per busyEveryMs', { skip }, () => {
  let now = 0;
  let busy = 0;
  const trimmer = startMallocTrimmer(loaded.helper!, { policy: ALWAYS, now: () => now, utilization: () => busy, collect: null, timer: false });
  const step = (ms: number, utilization: number) => { now += ms; busy = utilization; return trimmer.check(); };

  assert.equal(step(1000, 0), null, 'quiet from the start: nothing was used, nothing to give back');
  assert.equal(step(1000, 0.5), null, 'busy, a second after the start');
  assert.equal(step(1000, 0.8), null);
  assert.equal(step(1000, 0.05), 'quiet', 'the load stopped');
  assert.equal(step(1000, 0.05), null, 'still quiet: trimmed already');
  assert.equal(step(1000, 0), null);
  assert.equal(trimmer.stats().trims, 1);

  assert.equal(step(30_000, 0.9), null, 'busy, 32 s after the trim');
  assert.equal(step(27_000, 0.9), null, '59 s after');
  assert.equal(step(1000, 0.9), 'busy', '60 s after: once a minute under load');
  assert.equal(step(1000, 0.9), null);
  assert.equal(step(1000, 0.02), 'quiet', 'work since the busy trim, then quiet');
  const stats = trimmer.stats();
  assert.equal(stats.trims, 3);
  assert.ok(stats.seconds > 0 && stats.seconds < 1, `time in malloc_trim: ${stats.seconds} s`);
  assert.ok(stats.releasedBytes >= 0);
  trimmer.stop();
});

test('memory.trim: under load near memory.limit it trims every busyTightEveryMs instead of every busyEveryMs', { skip }, () => {
  let now = 0;
  let tight = false;
  const trimmer = startMallocTrimmer(loaded.helper!, { policy: ALWAYS, now: () => now, utilization: () => 0.9, collect: null, tight: () => tight, timer: false });
  const step = (ms: number) => { now += ms; return trimmer.check(); };
  assert.equal(step(10_000), null, 'busy, far from the limit: 10 s after the start');
  tight = true;
  assert.equal(step(1000), 'busy', 'near it: 11 s since the last trim (the start)');
  assert.equal(step(9000), null, '9 s after');
  assert.equal(step(1000), 'busy', '10 s after');
  tight = false;
  assert.equal(step(50_000), null, 'far again: 50 s after');
  assert.equal(step(10_000), 'busy', 'a minute after');
  assert.equal(trimmer.stats().trims, 3);
  trimmer.stop();
});

/** A trimmer whose collector only counts, driven one check (one second of the injected clock) at a time. */
function collectingTrimmer(policy: TrimPolicy) {
  let now = 0;
  let busy = 0;
  let collections = 0;
  const trimmer = startMallocTrimmer(loaded.helper!, { policy, now: () => now, utilization: () => busy, collect: () => { collections++; }, timer: false });
  const step = (utilization: number) => { now += 1000; busy = utilization; return trimmer.check(); };
  return { trimmer, step, collections: () => collections };
}

test('memory.trim: with a collector (--expose-gc), the first quiet check asks for a full collection and the next one trims; work in between starts over', { skip }, () => {
  const { trimmer, step, collections } = collectingTrimmer(ALWAYS);

  assert.deepEqual([step(0.6), step(0.01), step(0.01), step(0.01)], [null, 'collect', 'quiet', null]);
  assert.equal(collections(), 1);
  assert.deepEqual([step(0.7), step(0.01), step(0.5), step(0.01), step(0.01)], [null, 'collect', null, 'collect', 'quiet'], 'load came back before the trim: collect again when it stops');
  assert.equal(collections(), 3);
  assert.equal(trimmer.stats().trims, 2);
  assert.equal(trimmer.stats().collections, 3);
  trimmer.stop();
});

test('memory.trim: a lull shorter than quietChecks is not the end of the work: nothing is given back until the loop stays quiet that long', { skip }, () => {
  const { trimmer, step, collections } = collectingTrimmer({ ...ALWAYS, quietChecks: 5, collectChecks: 5 });
  const lull = [0.5, 0, 0, 0, 0, 0.5].map(step);
  assert.deepEqual(lull, [null, null, null, null, null, null], 'four quiet seconds between bursts');
  assert.deepEqual([0, 0, 0, 0, 0, 0].map(step), [null, null, null, null, 'collect', 'quiet'], 'five in a row: collect, then trim');
  assert.equal(collections(), 1);
  trimmer.stop();
});

test('memory.trim: glibc\'s pages go back after quietChecks, V8\'s full collection only after collectChecks (it costs the next burst), then the pages it freed', { skip }, () => {
  const { trimmer, step, collections } = collectingTrimmer({ ...ALWAYS, quietChecks: 3, collectChecks: 6 });
  assert.deepEqual([0.5, 0, 0, 0, 0, 0, 0, 0, 0].map(step), [null, null, null, 'quiet', null, null, 'collect', 'quiet', null]);
  assert.equal(collections(), 1);
  // A pause shorter than collectChecks: trimmed, not collected; the work goes on and the next pause is long.
  assert.deepEqual([0.5, 0, 0, 0, 0, 0.5].map(step), [null, null, null, 'quiet', null, null]);
  assert.equal(collections(), 1, 'no collection in a pause of four quiet checks');
  assert.deepEqual([0, 0, 0, 0, 0, 0, 0].map(step), [null, null, 'quiet', null, null, 'collect', 'quiet']);
  assert.equal(collections(), 2);
  assert.ok(TRIM_POLICY.collectChecks > TRIM_POLICY.quietChecks, 'the collection waits longer than the trim');
  trimmer.stop();
});

/**
 * Runs `then` in a child process with --expose-gc (ESM, `name` imported from `module` in src/runtime/) after
 * 1,000,000 small objects (~200 MB of V8 heap) were made (RSS `filled`), let go and collected the
 * regular way, which leaves V8's freed pages resident in its page pool (RSS `regular`).
 */
function afterPooledPages(module: 'malloc-trim.ts' | 'v8-pool.ts', name: string, then: string, whileFilled = '') {
  const script = `
    import { ${name} } from ${JSON.stringify(join(ROOT, 'src/runtime', module))};
    const rss = () => process.memoryUsage.rss();
    let all = [];
    for (let i = 0; i < 1e6; i++) all.push({ a: 'x' + i, b: [i, i + 1], c: { d: i } });
    const filled = rss();${whileFilled}
    all = null;
    globalThis.gc();
    const regular = rss();${then}`;
  return spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
}

test('memory.trim: under load it asks V8 for a memory-reducing collection every busyPressureEveryMs, never when quiet; a due busy trim goes first', { skip }, () => {
  let now = 0;
  let busy = 0;
  let signals = 0;
  const policy: TrimPolicy = { ...ALWAYS, busyEveryMs: 60_000, busyPressureEveryMs: 20_000 };
  const trimmer = startMallocTrimmer(loaded.helper!, { policy, now: () => now, utilization: () => busy, collect: null, pressure: () => { signals++; }, timer: false });
  const step = (ms: number, utilization: number) => { now += ms; busy = utilization; return trimmer.check(); };

  assert.equal(step(19_000, 0.9), null, 'busy, 19 s after the start');
  assert.equal(step(1000, 0.9), 'pressure', '20 s');
  assert.equal(signals, 1);
  assert.equal(step(1000, 0.9), null);
  assert.equal(step(18_000, 0.9), null, '39 s');
  assert.equal(step(1000, 0.9), 'pressure', '40 s');
  assert.equal(step(20_000, 0.9), 'busy', '60 s: the trim is due, and it is the one done at this check');
  assert.equal(step(1000, 0.9), 'pressure', 'the signal due at 60 s comes at the next check');
  assert.equal(step(1000, 0.05), 'quiet', 'the load stopped');
  assert.equal(step(60_000, 0), null, 'a minute of quiet: no signal (the collection at rest is the quiet path\'s)');
  assert.equal(signals, 3);
  assert.equal(trimmer.stats().pressures, 3);
  trimmer.stop();
});

/**
 * For afterPooledPages: small allocations (a load going on) while a reducing collection marks in
 * steps, until RSS is 100 MiB under \`regular\` or 2,000 turns of the loop have passed (\`turns\`).
 */
const LOAD_UNTIL_RSS_FALLS = `
    let turns = 0, junk = [];
    while (turns < 2000 && rss() > regular - 100 * 2 ** 20) {
      for (let i = 0; i < 1000; i++) junk.push({ i });
      if (junk.length > 50000) junk = [];
      await new Promise((r) => setImmediate(r));
      turns++;
    }`;

test('memory.trim: V8\'s memory-pressure signal gives back the pages V8 keeps pooled after a regular collection, as the load goes on', { skip: skipPressure }, () => {
  // After V8's pages went to its pool: the helper's signal, and small allocations (a load going on)
  // while the collection it starts marks in steps, at most 2,000 turns of the loop.
  const out = afterPooledPages('v8-pool.ts', 'loadPressureHelper', `
    loadPressureHelper().helper.moderate();${LOAD_UNTIL_RSS_FALLS}
    console.log(JSON.stringify({ regular, after: rss(), turns }));`);
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  assert.ok(r.regular > r.after + 100 * MiB, `RSS after a regular collection ${(r.regular / MiB).toFixed(0)} MiB, ${r.turns} turns after the signal ${(r.after / MiB).toFixed(0)}`);
});

test('memory.pressure auto: the configured trimmer sees the pages a regular collection pooled, signals, and they go back', { skip: skipPressure }, () => {
  // The default config's trimmer looks at the filled heap (its peak), then, after a regular
  // collection, signals at its next check; the load goes on as above until RSS falls.
  const out = afterPooledPages('malloc-trim.ts', 'startConfiguredTrimmer', `
    const first = trimmer.check();${LOAD_UNTIL_RSS_FALLS}
    trimmer.stop();
    console.log(JSON.stringify({ first, regular, after: rss(), turns, pressures: trimmer.stats().pressures }));`, `
    const trimmer = startConfiguredTrimmer({ trim: true, pressure: 'auto' });
    if (trimmer.check() === 'pressure') throw new Error('signalled before anything was pooled');`);
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  assert.equal(r.first, 'pressure');
  assert.equal(r.pressures, 1);
  assert.ok(r.regular > r.after + 100 * MiB, `RSS after a regular collection ${(r.regular / MiB).toFixed(0)} MiB, ${r.turns} turns after the signal ${(r.after / MiB).toFixed(0)}`);
});

test('memory.trim: no trim while less than the threshold is free (each decision looks at glibc\'s free bytes)', { skip }, () => {
  let now = 0;
  let busy = 0.5;
  const free = loaded.helper!.info().free;
  const policy: TrimPolicy = { ...TRIM_POLICY, quietFreeBytes: free + 2 ** 40, busyFreeBytes: free + 2 ** 40 };
  const trimmer = startMallocTrimmer(loaded.helper!, { policy, now: () => now, utilization: () => busy, collect: null, timer: false });
  trimmer.check();
  busy = 0;
  now += 1000;
  assert.equal(trimmer.check(), null, 'quiet after work, but the heap holds less than the threshold free');
  busy = 0.5;
  now += TRIM_POLICY.busyEveryMs;
  assert.equal(trimmer.check(), null, 'busy for a minute, same');
  assert.equal(trimmer.stats().trims, 0);
  trimmer.stop();
});

test('memory.trim: the helper gives the pages of free chunks in the middle of the heap back (RSS falls, the live data stays)', { skip }, () => {
  // A child process, so this test's own heap does not matter: 3,000 Buffers of 48 KiB (below
  // glibc's mmap threshold, so in its heap), every other one let go and collected: ~70 MiB of
  // free chunks between live ones, which free() alone cannot give back.
  const script = `
    const helper = require(${JSON.stringify(HELPER_PATH)});
    const rss = () => process.memoryUsage.rss();
    const all = [];
    for (let i = 0; i < 3000; i++) all.push(Buffer.allocUnsafeSlow(48 * 1024).fill(i & 255));
    const kept = all.filter((_, i) => i % 2 === 0);
    all.length = 0;
    globalThis.gc(); globalThis.gc();
    setTimeout(() => {
      const before = rss(), info = helper.info();
      const released = helper.trim();
      const after = rss();
      const intact = kept.every((b, i) => b[0] === ((2 * i) & 255) && b[b.length - 1] === ((2 * i) & 255));
      console.log(JSON.stringify({ before, after, free: info.free, inUse: info.inUse, released, intact }));
    }, 200);`;
  const out = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', env: { ...process.env, MALLOC_ARENA_MAX: '2' } });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  assert.ok(r.free > 50 * MiB, `glibc holds the let-go Buffers as free chunks: ${(r.free / MiB).toFixed(1)} MiB`);
  assert.equal(r.released, true);
  assert.ok(r.before - r.after > 40 * MiB, `RSS ${(r.before / MiB).toFixed(0)} -> ${(r.after / MiB).toFixed(0)} MiB`);
  assert.equal(r.intact, true, 'the kept Buffers still hold their bytes');
});

test('mapSlab: a slab mapped from the system, zeroed, writable, unmapped once V8 collects its last view', { skip }, () => {
  // A child process with --expose-gc: 64 slabs of 1 MiB, one of them still viewed by a subarray.
  const script = `
    const helper = require(${JSON.stringify(HELPER_PATH)});
    const rss = () => process.memoryUsage.rss();
    const collected = async (mapped) => {
      for (let i = 0; i < 50 && helper.mappedBytes() !== mapped; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
      return helper.mappedBytes();
    };
    (async () => {
      const start = rss();
      let slabs = Array.from({ length: 64 }, () => helper.mapSlab(1 << 20));
      const zeroed = slabs.every((s) => s.length === 1 << 20 && s[0] === 0 && s[(1 << 20) - 1] === 0);
      slabs.forEach((s, i) => s.fill(i));
      const filled = rss(), mapped = helper.mappedBytes();
      let view = slabs[7].subarray(100, 200);
      slabs = null;
      const left = await collected(1 << 20);
      const emptied = rss();
      const intact = view.every((b) => b === 7);
      view = null;
      const none = await collected(0);
      const errors = [0, -1, 2 ** 31, 'x'].map((n) => { try { helper.mapSlab(n); return 'none'; } catch (e) { return e.name + ': ' + e.message; } });
      console.log(JSON.stringify({ start, filled, emptied, mapped, left, none, zeroed, intact, errors }));
    })();`;
  const out = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  assert.equal(r.zeroed, true);
  assert.equal(r.mapped, 64 * MiB);
  assert.ok(r.filled - r.start > 60 * MiB, `written pages are resident: +${((r.filled - r.start) / MiB).toFixed(0)} MiB`);
  assert.equal(r.left, MiB, 'the slab a view still holds stays mapped');
  assert.equal(r.intact, true);
  assert.ok(r.filled - r.emptied > 55 * MiB, `the others went back to the system when collected: RSS ${(r.filled / MiB).toFixed(0)} -> ${(r.emptied / MiB).toFixed(0)} MiB`);
  assert.equal(r.none, 0);
  assert.deepEqual(r.errors, Array(4).fill('RangeError: mapSlab: expected a length from 1 to 2^30 bytes'));
});

test('mapSlab spares: a collected slab is kept, up to keepSpareSlabs, for the next slab of its length; releaseSpareSlabs unmaps them, and keeps none until the next mapSlab', { skip }, () => {
  // A child process with --expose-gc: 48 slabs of 1 MiB written with a mark, let go, collected.
  const script = `
    const helper = require(${JSON.stringify(HELPER_PATH)});
    const MiB = 1 << 20;
    const rss = () => process.memoryUsage.rss();
    const collected = async (mapped) => {
      for (let i = 0; i < 50 && helper.mappedBytes() !== mapped; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
      return helper.mappedBytes();
    };
    (async () => {
      const unlimited = helper.keepSpareSlabs(0, MiB);
      helper.keepSpareSlabs(40 * MiB, MiB);
      let slabs = Array.from({ length: 48 }, () => helper.mapSlab(MiB).fill(0xab));
      slabs = null;
      const left = await collected(40 * MiB);
      const spares = helper.spareBytes();
      const held = rss();
      const reused = helper.mapSlab(MiB);
      const afterReuse = { mapped: helper.mappedBytes(), spares: helper.spareBytes(), oldBytes: reused[0] === 0xab && reused[MiB - 1] === 0xab };
      const other = helper.mapSlab(64 * 1024);
      const afterOther = { mapped: helper.mappedBytes(), spares: helper.spareBytes(), zeroed: other.every((b) => b === 0) };
      const lowered = helper.keepSpareSlabs(16 * MiB, MiB);
      const released = helper.releaseSpareSlabs();
      const emptied = rss();
      const after = { mapped: helper.mappedBytes(), spares: helper.spareBytes() };
      // Released: slabs collected from now on are unmapped, until the next mapSlab (the work is back).
      let quiet = [helper.mapSlab(MiB)];
      helper.releaseSpareSlabs();
      const baseline = helper.mappedBytes();
      quiet = null;
      const whileQuiet = { mapped: await collected(baseline - MiB), spares: helper.spareBytes() };
      let busy = [helper.mapSlab(MiB), helper.mapSlab(MiB)];
      busy = null;
      for (let i = 0; i < 50 && helper.spareBytes() < 2 * MiB; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
      const afterWork = helper.spareBytes();
      const errors = [[-1, MiB], [2 ** 41, MiB], ['x', MiB], [MiB, 0], [MiB]].map((args) => { try { helper.keepSpareSlabs(...args); return 'none'; } catch (e) { return e.name + ': ' + e.message; } });
      console.log(JSON.stringify({ unlimited, left, spares, afterReuse, afterOther, lowered, released, after, whileQuiet, afterWork, held, emptied, errors, keep: [reused.length, other.length] }));
    })();`;
  const out = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  assert.equal(r.unlimited, 0, 'no spares kept before a limit is set');
  assert.equal(r.left, 40 * MiB, 'eight slabs unmapped when collected, forty kept mapped');
  assert.equal(r.spares, 40 * MiB);
  assert.deepEqual(r.afterReuse, { mapped: 40 * MiB, spares: 39 * MiB, oldBytes: true }, 'the next 1 MiB slab is a spare: its pages (and old bytes) already there, nothing new mapped');
  assert.deepEqual(r.afterOther, { mapped: 40 * MiB + 64 * 1024, spares: 39 * MiB, zeroed: true }, 'a 64 KiB slab is not the spares\' length: a new mapping');
  assert.equal(r.lowered, 23 * MiB, 'a lower limit unmaps the spares over it');
  assert.equal(r.released, 16 * MiB);
  assert.deepEqual(r.after, { mapped: MiB + 64 * 1024, spares: 0 }, 'only the two slabs in use stay mapped');
  assert.deepEqual(r.whileQuiet, { mapped: MiB + 64 * 1024, spares: 0 }, 'after a release a collected slab is unmapped, not kept');
  assert.equal(r.afterWork, 2 * MiB, 'once slabs are mapped again, collected ones are kept again');
  assert.ok(r.held - r.emptied > 30 * MiB, `the 39 MiB of spares' pages went back to the system: RSS ${(r.held / MiB).toFixed(0)} -> ${(r.emptied / MiB).toFixed(0)} MiB`);
  assert.deepEqual(r.errors, Array(5).fill('RangeError: keepSpareSlabs: expected a byte count from 0 to 2^40 and a slab length from 1 to 2^30'));
});

test('memory.trim: a quiet trim gives the spare slabs back too; a trim under load keeps them for the slabs the load fills', { skip }, () => {
  const script = `
    import { startMallocTrimmer, loadMallocHelper, TRIM_POLICY } from ${JSON.stringify(join(ROOT, 'src/runtime/malloc-trim.ts'))};
    const { helper } = loadMallocHelper(${JSON.stringify(HELPER_PATH)}, 'system');
    const MiB = 1 << 20;
    const spareSome = async () => {
      let slabs = Array.from({ length: 8 }, () => helper.mapSlab(MiB).fill(1));
      slabs = null;
      for (let i = 0; i < 50 && helper.spareBytes() < 8 * MiB; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
      return helper.spareBytes();
    };
    helper.keepSpareSlabs(8 * MiB, MiB);
    let now = 0, busy = 0;
    const policy = { ...TRIM_POLICY, quietChecks: 1, quietFreeBytes: 2 ** 50, busyFreeBytes: 0 };
    const trimmer = startMallocTrimmer(helper, { policy, now: () => now, utilization: () => busy, collect: null, timer: false });
    const step = (ms, utilization) => { now += ms; busy = utilization; return trimmer.check(); };
    const before = await spareSome();
    const busyTrim = [step(1000, 0.9), step(TRIM_POLICY.busyEveryMs, 0.9), step(1000, 0.9)];
    const afterBusy = helper.spareBytes();
    const quiet = step(1000, 0);
    const afterQuiet = helper.spareBytes();
    console.log(JSON.stringify({ before, busyTrim, afterBusy, quiet, afterQuiet, stats: trimmer.stats() }));`;
  const out = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  assert.equal(r.before, 8 * MiB);
  assert.deepEqual(r.busyTrim, [null, 'busy', null]);
  assert.equal(r.afterBusy, 8 * MiB, 'under load the spares stay');
  assert.equal(r.quiet, 'quiet', 'glibc has less free than the threshold, but the spares go back');
  assert.equal(r.afterQuiet, 0);
  assert.equal(r.stats.trims, 1, 'one malloc_trim (the busy one): the quiet check released the spares without walking glibc\'s heap');
  assert.ok(r.stats.releasedBytes > 4 * MiB, `released ${(r.stats.releasedBytes / MiB).toFixed(1)} MiB`);
});

test('memory.trim: metrics show glibc\'s heap and the trims', { skip }, async () => {
  const instance = await startInstance(validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-trim-cert-')) },
    sites: [{ hosts: ['*'], static: 'public' }],
  }));
  let busy = 0.5;
  let now = 0;
  let finish = () => {};
  // A collection that takes 250 ms of the injected clock.
  const collect = () => new Promise<void>((resolve) => { finish = () => { now += 250; resolve(); }; });
  const trimmer = startMallocTrimmer(loaded.helper!, { policy: ALWAYS, utilization: () => busy, now: () => now, collect, timer: false });
  const metrics = await nodeMetrics(instance, trimmer);
  try {
    trimmer.check();
    busy = 0;
    assert.equal(trimmer.check(), 'collect');
    finish();
    await new Promise((r) => setImmediate(r));
    assert.equal(trimmer.check(), 'quiet');
    const text = await metrics.text();
    assert.match(text, /^outpost_memory_quiet_collections_total 1$/m);
    assert.match(text, /^outpost_memory_quiet_collection_seconds_total 0.25$/m);
    assert.match(text, /^outpost_malloc_trims_total 1$/m);
    assert.match(text, /^outpost_memory_pressure_collections_total 0$/m);
    assert.match(text, /^outpost_malloc_trim_seconds_total \d/m);
    assert.match(text, /^outpost_malloc_trim_released_bytes_total \d+$/m);
    const inUse = Number(/^outpost_malloc_bytes\{state="in_use"\} (\d+)$/m.exec(text)?.[1]);
    assert.ok(inUse > 1024 * 1024, `in use: ${inUse}`);
    assert.match(text, /^outpost_malloc_bytes\{state="free"\} \d+$/m);
  } finally {
    trimmer.stop();
    metrics.close();
    await instance.close();
  }
});

test('memory.trim: no helper under jemalloc, when it is not built, or when the file is something else; each says why', () => {
  assert.deepEqual(loadMallocHelper(HELPER_PATH, 'jemalloc'), { helper: null, why: 'jemalloc returns free pages itself' });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-trim-'));
  const missing = loadMallocHelper(join(dir, 'none.node'), 'system');
  assert.equal(missing.helper, null);
  assert.match(missing.why!, /the native helper is not built \(.*none\.node; npm ci builds it/);
  writeFileSync(join(dir, 'bad.node'), 'not a shared object');
  const bad = loadMallocHelper(join(dir, 'bad.node'), 'system');
  assert.equal(bad.helper, null);
  assert.match(bad.why!, /^the native helper did not load: /);
  // The memory-pressure helper (memory.pressure) says why in the same words.
  assert.match(loadPressureHelper(join(dir, 'none.node')).why!, /the native helper is not built \(.*none\.node; npm ci builds it with a C\+\+ compiler\)/);
  if (skip === false) assert.match(loadPressureHelper(HELPER_PATH).why!, /malloc-trim\.node is not Outpost's helper/);
});

test('memory.trim: a config value other than true or false is refused, naming the key', () => {
  assert.equal(validateConfig({}).memory.trim, true);
  assert.equal(validateConfig({ memory: { trim: false } }).memory.trim, false);
  assert.throws(() => validateConfig({ memory: { trim: 'yes' } }), /memory\.trim/);
  assert.throws(() => validateConfig({ memory: { trims: true } }), /memory.*trims/);
});

test('memory.pressure: "auto" by default, "off", or a duration of at least 1s; anything else is refused, naming the key', () => {
  assert.equal(validateConfig({}).memory.pressure, 'auto');
  assert.equal(validateConfig({ memory: { pressure: 'auto' } }).memory.pressure, 'auto');
  assert.equal(validateConfig({ memory: { pressure: 'off' } }).memory.pressure, null);
  assert.equal(validateConfig({ memory: { pressure: '10s' } }).memory.pressure, 10_000);
  assert.throws(() => validateConfig({ memory: { pressure: '500ms' } }), /memory\.pressure.*at least 1s/);
  assert.throws(() => validateConfig({ memory: { pressure: true } }), /memory\.pressure/);
  assert.throws(() => validateConfig({ memory: { pressure: 'often' } }), /memory\.pressure.*"auto", "off"/);
  // What each asks of the trimmer.
  assert.deepEqual(pressurePolicy('auto'), { busyPressureEveryMs: null, pooledPressureBytes: TRIM_POLICY.pooledPressureBytes });
  assert.deepEqual(pressurePolicy(10_000), { busyPressureEveryMs: 10_000, pooledPressureBytes: TRIM_POLICY.pooledPressureBytes });
  assert.deepEqual(pressurePolicy(null), { busyPressureEveryMs: null, pooledPressureBytes: null });
});

/**
 * A trimmer whose pressure signal only counts, fed the size of V8's paged spaces now and at the
 * full collections' starts since the last check, one check (a second) at a time.
 */
function pooledTrimmer(policy: TrimPolicy, collect: (() => void) | null = null) {
  let now = 0;
  let busy = 0.9;
  let signals = 0;
  let paged = 0;
  let atCollections = 0;
  const trimmer = startMallocTrimmer(loaded.helper!, {
    policy, now: () => now, utilization: () => busy, collect, pressure: () => { signals++; }, pagedBytes: () => paged,
    pagedPeak: () => { const peak = atCollections; atCollections = 0; return peak; }, timer: false,
  });
  const step = (bytes: number, { utilization = 0.9, peak = 0 } = {}) => { now += 1000; paged = bytes; busy = utilization; atCollections = peak; return trimmer.check(); };
  return { trimmer, step, signals: () => signals };
}

const POOLED: TrimPolicy = { ...TRIM_POLICY, busyEveryMs: Infinity, pooledPressureBytes: 32 * MiB, pooledPressureGapMs: 10_000 };

test('memory.pressure: with the default policy no signal is sent under load while V8 pools less than pooledPressureBytes', { skip }, () => {
  const { trimmer, step, signals } = pooledTrimmer({ ...TRIM_POLICY, busyEveryMs: Infinity });
  // A steady load's heap: up and down by less than the threshold, for two minutes.
  for (let i = 0; i < 120; i++) assert.equal(step(60 * MiB + (i % 10) * 3 * MiB), null, `second ${i + 1}`);
  assert.equal(signals(), 0);
  assert.equal(trimmer.stats().pressures, 0);
  trimmer.stop();
});

test('memory.pressure auto: one signal when V8\'s heap falls by pooledPressureBytes from its peak, busy or quiet; none again until the peak is tracked anew', { skip }, () => {
  const { trimmer, step, signals } = pooledTrimmer(POOLED, () => {});
  // 1,000 requests in flight take the heap up; a full collection takes it down and pools what it freed.
  assert.equal(step(68 * MiB), null);
  assert.equal(step(123 * MiB), null);
  assert.equal(step(181 * MiB), null, 'the peak');
  assert.equal(step(160 * MiB), null, '21 MiB pooled: under the threshold');
  assert.equal(step(91 * MiB), 'pressure', '90 MiB pooled');
  assert.equal(signals(), 1);
  // The reducing collection runs: its own fall is not a new peak's.
  assert.equal(step(91 * MiB), null);
  assert.equal(step(40 * MiB), null, 'the collection gave the pages back');
  for (let i = 0; i < 8; i++) assert.equal(step(40 * MiB), null);
  // Tracked again from what it left: the heap regrows into the pool-less heap and falls back by less than the threshold.
  assert.equal(step(70 * MiB), null);
  assert.equal(step(45 * MiB), null, '25 MiB pooled');
  assert.equal(signals(), 1);
  // Grown again and fallen by more, while quiet: signalled all the same (V8 keeps them until a reducing collection).
  assert.equal(step(110 * MiB), null);
  assert.equal(step(60 * MiB, { utilization: 0 }), 'pressure', 'quiet, 50 MiB pooled');
  assert.equal(signals(), 2);
  assert.equal(trimmer.stats().pressures, 2);
  trimmer.stop();
});

test('memory.pressure auto: a smaller pool that stays for stalePoolMs is signalled once; one the load keeps taking back is not', { skip }, () => {
  const { trimmer, step, signals } = pooledTrimmer({ ...POOLED, stalePoolBytes: 8 * MiB, stalePoolMs: 60_000 }, () => {});
  // The soak's heap: 66 MiB at its peak, then settled 17 MiB lower, under pooledPressureBytes, for good.
  assert.equal(step(66 * MiB), null);
  for (let i = 1; i <= 60; i++) assert.equal(step(49 * MiB + (i % 3) * MiB), null, `second ${i}: pooled for less than a minute`);
  assert.equal(step(49 * MiB), 'pressure', 'pooled (15-17 MiB) for a minute');
  assert.equal(signals(), 1);
  // Given back: tracked anew after the gap from what the collection left, nothing stays pooled.
  for (let i = 0; i < 120; i++) assert.equal(step(34 * MiB), null, `after: second ${i}`);
  // A load whose heap grows back into its pool every few seconds: pooled 9-21 MiB, but under 8 for a second in each ten.
  assert.equal(step(55 * MiB), null);
  for (let i = 0; i < 180; i++) assert.equal(step(i % 10 === 9 ? 50 * MiB : 34 * MiB + (i % 10) * MiB), null, `regrowing: second ${i}`);
  assert.equal(signals(), 1);
  trimmer.stop();
});

test('memory.pressure auto: a peak only the full collection\'s start saw (between two checks) is signalled; the reducing collection\'s own start is not', { skip }, () => {
  const { trimmer, step, signals } = pooledTrimmer(POOLED);
  assert.equal(step(70 * MiB), null);
  // Within one second the heap grew to 126.8 MB and a full collection took it to 88.3: a look once a second sees 70, then 88.
  assert.equal(step(88 * MiB, { peak: 126 * MiB }), 'pressure', '38 MiB pooled, seen at the collection\'s start');
  // The reducing collection begins at 88 and ends at 40; after the gap nothing is pooled.
  assert.equal(step(88 * MiB, { peak: 88 * MiB }), null);
  assert.equal(step(40 * MiB, { peak: 88 * MiB }), null);
  for (let i = 0; i < 12; i++) assert.equal(step(40 * MiB), null, `${i}`);
  assert.equal(signals(), 1);
  trimmer.stop();
});

test('memory.pressure auto: the collection at rest empties the pool too, so a peak from before it is not signalled', { skip }, () => {
  let collected = false;
  const { trimmer, step, signals } = pooledTrimmer({ ...POOLED, quietChecks: 30, collectChecks: 120 }, () => { collected = true; });
  step(100 * MiB);
  const results = [];
  for (let i = 0; i < 140; i++) results.push(step(collected ? 20 * MiB : 100 * MiB, { utilization: 0 }));
  assert.equal(results.filter((r) => r === 'collect').length, 1);
  assert.equal(signals(), 0, 'the fall from 100 to 20 MiB is the collection\'s, not a pool to signal');
  trimmer.stop();
});

test('memory.pressure: the pool the trimmer estimates is on /metrics', { skip }, async () => {
  const instance = await startInstance(validateConfig({
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-trim-cert-')) },
    sites: [{ hosts: ['*'], static: 'public' }],
  }));
  const { trimmer, step } = pooledTrimmer(POOLED);
  const metrics = await nodeMetrics(instance, trimmer);
  try {
    step(100 * MiB);
    assert.equal(step(80 * MiB), null, 'under the threshold: no signal');
    assert.equal(trimmer.stats().pooledBytes, 20 * MiB);
    assert.match(await metrics.text(), new RegExp(`^outpost_memory_v8_pooled_bytes ${20 * MiB}$`, 'm'));
    assert.equal(step(60 * MiB), 'pressure');
    assert.equal(step(60 * MiB), null);
    assert.match(await metrics.text(), /^outpost_memory_v8_pooled_bytes 0$/m, 'while the reducing collection runs');
  } finally {
    trimmer.stop();
    metrics.close();
    await instance.close();
  }
});

test('memory.pressure auto: pagedHeapBytes reads V8\'s paged spaces, large-object spaces apart', () => {
  const bytes = pagedHeapBytes();
  assert.ok(bytes > 0 && bytes <= process.memoryUsage().heapTotal, `${bytes} of ${process.memoryUsage().heapTotal}`);
  // A large object grows a large-object space, not what pagedHeapBytes counts.
  const before = pagedHeapBytes();
  const large = new Array(4 * 1024 * 1024).fill(0); // 32 MB of elements: a large object
  assert.ok(pagedHeapBytes() - before < 8 * MiB, `${pagedHeapBytes() - before}`);
  assert.equal(large.length, 4 * 1024 * 1024);
});

test('native/build.sh: builds the helpers with a C compiler (and heap-pressure with a C++ one); without one it says so and leaves the install to go on', { skip: process.platform !== 'linux' ? 'Linux only' : false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-native-'));
  mkdirSync(join(dir, 'native'));
  for (const file of ['build.sh', 'malloc-trim.c', 'background-encode.c', 'heap-pressure.cc']) cpSync(join(ROOT, 'native', file), join(dir, 'native', file));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));

  const none = spawnSync('sh', [join(dir, 'native/build.sh')], { encoding: 'utf8', env: { ...process.env, CC: 'no-such-compiler' } });
  assert.equal(none.status, 0);
  assert.match(none.stderr, /^outpost: native helpers not built \(no C compiler \(no-such-compiler\)\): glibc's free heap pages will not be returned, and high-quality compression runs in a worker thread/);
  assert.equal(existsSync(join(dir, 'native/build/malloc-trim.node')), false);
  assert.equal(existsSync(join(dir, 'native/build/background-encode.node')), false);

  if (skip !== false) return; // no compiler or glibc here: the first half is what this machine can show
  const built = spawnSync('sh', [join(dir, 'native/build.sh')], { encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  assert.equal(built.stderr, '');
  const helper = loadMallocHelper(join(dir, 'native/build/malloc-trim.node'), 'system');
  assert.ok(helper.helper !== null, helper.why);
  assert.equal(typeof helper.helper.trim(), 'boolean');
  assert.notEqual(nativeEncoder(join(dir, 'native/build/background-encode.node')).encode, null);
  assert.notEqual(loadPressureHelper(join(dir, 'native/build/heap-pressure.node')).helper, null);

  // Without a C++ compiler only heap-pressure is missing, and it says so.
  rmSync(join(dir, 'native/build'), { recursive: true });
  const noCxx = spawnSync('sh', [join(dir, 'native/build.sh')], { encoding: 'utf8', env: { ...process.env, CXX: 'no-such-compiler' } });
  assert.equal(noCxx.status, 0);
  assert.match(noCxx.stderr, /^outpost: native helper heap-pressure not built \(no compiler: no-such-compiler\): V8's freed pages stay resident under load/);
  assert.equal(existsSync(join(dir, 'native/build/malloc-trim.node')), true);
  assert.equal(existsSync(join(dir, 'native/build/background-encode.node')), true);
  assert.equal(existsSync(join(dir, 'native/build/heap-pressure.node')), false);

  // One that does not compile is named, and the other is still built.
  writeFileSync(join(dir, 'native/background-encode.c'), 'this is not C\n');
  rmSync(join(dir, 'native/build'), { recursive: true });
  const half = spawnSync('sh', [join(dir, 'native/build.sh')], { encoding: 'utf8' });
  assert.equal(half.status, 0);
  assert.match(half.stderr, /^outpost: native helper background-encode not built \(.*error.*\): high-quality compression runs in a worker thread instead/);
  assert.equal(existsSync(join(dir, 'native/build/malloc-trim.node')), true);
  assert.equal(existsSync(join(dir, 'native/build/background-encode.node')), false);
});

test('memory.trim: the collection it asks for when quiet gives back the pages V8 keeps pooled after a regular one', () => {
  // After V8's pages went to its pool: the trimmer's collector (v8Collector).
  const out = afterPooledPages('v8-pool.ts', 'v8Collector', `
    await v8Collector()();
    console.log(JSON.stringify({ filled, regular, after: rss(), heapTotal: process.memoryUsage().heapTotal }));`);
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout);
  const MiB = 2 ** 20;
  const figures = `RSS filled ${(r.filled / MiB).toFixed(0)}, after a regular collection ${(r.regular / MiB).toFixed(0)}, after the trimmer's ${(r.after / MiB).toFixed(0)} MiB`;
  assert.ok(r.filled > r.after + 100 * MiB, figures);
  assert.ok(r.regular > r.after + 80 * MiB, `a regular collection keeps the pages: ${figures}`);
  assert.ok(r.heapTotal < 32 * MiB, `V8's heap is empty again: ${(r.heapTotal / MiB).toFixed(0)} MiB`);
});
