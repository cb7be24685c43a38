import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHealthChecker, statusExpected, type Probed } from '../../src/origin/health.ts';
import type { HealthCheckConfig } from '../../src/config/schema.ts';
import { manualTimers } from '../helpers/timers.ts';

/**
 * The checker's schedule and thresholds with the clock moved by hand. The probe here is a script
 * (what each upstream answers next); the pool tests run the same checker against real origins.
 */

const config: HealthCheckConfig = { path: '/health', host: null, interval: 1000, timeout: 300, fails: 3, passes: 2, expect: [[200, 399]] };
const target = (name: string): Probed & { probes: number[] } => ({ name, checkedUp: true, consecutiveFails: 0, consecutivePasses: 0, lastCheck: null, probes: [] });

test('expect: status ranges', () => {
  assert.equal(statusExpected([[200, 399]], 204), true);
  assert.equal(statusExpected([[200, 399]], 500), false);
  assert.equal(statusExpected([[200, 200], [404, 404]], 404), true);
});

test('fails probes in a row take an upstream out, passes in a row bring it back; each change is reported once', async () => {
  const timers = manualTimers();
  const a = target('a');
  let status = 200;
  const changes: string[] = [];
  const checker = createHealthChecker({
    targets: [a], config, timers, random: () => 0.5,
    probe: async (t) => { (t as typeof a).probes.push(timers.now()); return status; },
    onChange: (t, up, why) => changes.push(`${t.name} ${up ? 'up' : 'down'}: ${why}`),
  });
  // The clock moves to each due time, the probe answers, and the next is scheduled from there.
  const step = async (ms = 1000) => { timers.advance(ms); await checker.settled(); };
  await step(500); // first probe at half an interval (random 0.5), then one every interval (0.9 + 0.2 × 0.5)
  assert.deepEqual(a.probes, [500]);
  status = 500;
  await step();
  await step();
  assert.deepEqual(a.probes, [500, 1500, 2500]);
  assert.equal(a.checkedUp, true, "two failures are not yet three");
  assert.equal(a.consecutiveFails, 2);
  await step();
  assert.equal(a.checkedUp, false);
  assert.equal(a.lastCheck, 'status 500');
  await step(); // a fourth failure changes nothing
  status = 200;
  await step();
  assert.equal(a.checkedUp, false, 'one good probe is not yet two');
  await step();
  assert.equal(a.checkedUp, true);
  assert.deepEqual(changes, [
    'a down: 3 failed health checks in a row (status 500)',
    'a up: 2 good health checks in a row (status 200)',
  ]);
  checker.close();
  assert.equal(timers.pending, 0, 'close cancels the timers');
});

test('one probe in flight per upstream: a hanging probe times out and only then is the next scheduled', async () => {
  const timers = manualTimers();
  const a = target('a');
  let started = 0;
  const checker = createHealthChecker({
    targets: [a], config: { ...config, fails: 1 }, timers, random: () => 0,
    probe: (_t, signal) => {
      started++;
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    },
  });
  timers.advance(0); // first probe at once (random 0)
  assert.equal(started, 1);
  timers.advance(299);
  assert.equal(started, 1, 'still in flight: no second probe');
  timers.advance(1);
  await checker.settled();
  assert.equal(a.checkedUp, false);
  assert.equal(a.lastCheck, 'timed out after 300 ms');
  // next probe one (jittered) interval after the last one ended: 0.9 × 1000 with random 0
  timers.advance(899);
  assert.equal(started, 1);
  timers.advance(1);
  assert.equal(started, 2);
  checker.close();
  await checker.settled();
});

test('probes are jittered ±10 % and each upstream runs on its own timer', async () => {
  const timers = manualTimers();
  const randoms = [0.1, 0.9, 0, 1 - Number.EPSILON];
  const targets = [target('a'), target('b')];
  const checker = createHealthChecker({
    targets, config, timers, random: () => randoms.shift() ?? 0.5,
    probe: async (t) => { (t as (typeof targets)[number]).probes.push(timers.now()); return 200; },
  });
  for (let i = 0; i < 30; i++) { timers.advance(100); await checker.settled(); }
  const [a, b] = targets;
  assert.deepEqual(a.probes.slice(0, 2), [100, 100 + 900]); // first within the interval, then 0.9 × interval
  assert.deepEqual(b.probes.slice(0, 2), [900, 900 + 1100]); // then 1.1 × interval
  checker.close();
});

test('a probe that throws (refused, reset) is a failure with its code', async () => {
  const timers = manualTimers();
  const a = target('a');
  const checker = createHealthChecker({
    targets: [a], config: { ...config, fails: 1 }, timers, random: () => 0,
    probe: async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }); },
  });
  timers.advance(0);
  await checker.settled();
  assert.equal(a.checkedUp, false);
  assert.equal(a.lastCheck, 'ECONNREFUSED');
  checker.close();
});
