import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPicker, type Balanced } from '../../src/origin/balance.ts';
import { hash32 } from '../../src/hash.ts';

interface Member extends Balanced { inFlight: number }
const members = (spec: Record<string, number>): Member[] =>
  Object.entries(spec).map(([name, weight]) => ({ name, weight, inFlight: 0, current: 0 }));
const all = () => true;

test('round-robin: smooth weighted, as nginx spreads 5:1:1 (a a b a c a a)', () => {
  const group = members({ a: 5, b: 1, c: 1 });
  const picker = createPicker('round-robin', group);
  const seq = Array.from({ length: 14 }, () => picker.pick(all, '')!.name).join(' ');
  assert.equal(seq, 'a a b a c a a a a b a c a a');
});

test('round-robin: members that are not usable are passed over without gaining turns', () => {
  const group = members({ a: 1, b: 1, c: 1 });
  const picker = createPicker('round-robin', group);
  const notB = (m: Member) => m.name !== 'b';
  assert.deepEqual(Array.from({ length: 4 }, () => picker.pick(notB, '')!.name), ['a', 'c', 'a', 'c']);
  assert.equal(picker.pick(() => false, ''), undefined);
  // a single member: itself or nothing
  const one = createPicker('round-robin', members({ x: 3 }));
  assert.equal(one.pick(all, '')!.name, 'x');
  assert.equal(one.pick(() => false, ''), undefined);
});

test('least-connections: fewest in flight per weight; ties share by weighted round-robin', () => {
  const group = members({ a: 1, b: 2, c: 1 });
  const picker = createPicker('least-connections', group);
  const [a, b, c] = group;
  a.inFlight = 3; b.inFlight = 4; c.inFlight = 1;
  assert.equal(picker.pick(all, '')!.name, 'c'); // 3/1, 4/2, 1/1
  c.inFlight = 5;
  assert.equal(picker.pick(all, '')!.name, 'b'); // 3, 2, 5
  a.inFlight = 0; b.inFlight = 0; c.inFlight = 0;
  const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 40; i++) counts[picker.pick(all, '')!.name]++;
  assert.deepEqual(counts, { a: 10, b: 20, c: 10 });
  assert.equal(picker.pick((m) => m.name === 'a', '')!.name, 'a');
});

test('hash: one key, one member; a member that drops out moves only its own keys', () => {
  const group = members({ a: 1, b: 1, c: 1 });
  const picker = createPicker('hash', group);
  const keys = Array.from({ length: 3000 }, (_, i) => `https://shop.example/product/${i}?page=${i % 7}`);
  const home = new Map(keys.map((k) => [k, picker.pick(all, k)!.name]));
  // stable: the same key lands on the same member every time
  for (const k of keys.slice(0, 100)) assert.equal(picker.pick(all, k)!.name, home.get(k));
  // spread: each member owns a fair share (±20 % of a third)
  const share = (name: string) => [...home.values()].filter((n) => n === name).length;
  for (const name of ['a', 'b', 'c']) assert.ok(Math.abs(share(name) - 1000) < 200, `${name}: ${share(name)}`);
  // b is down: its keys move, nobody else's do
  const withoutB = (m: Member) => m.name !== 'b';
  for (const k of keys) {
    const now = picker.pick(withoutB, k)!.name;
    if (home.get(k) !== 'b') assert.equal(now, home.get(k), k);
    else assert.notEqual(now, 'b');
  }
});

test('hash: weights give proportional shares', () => {
  const picker = createPicker('hash', members({ heavy: 3, light: 1 }));
  let heavy = 0;
  for (let i = 0; i < 4000; i++) if (picker.pick(all, `/k/${i}`)!.name === 'heavy') heavy++;
  assert.ok(heavy > 2700 && heavy < 3300, `heavy got ${heavy} of 4000`);
});

test('hash32: deterministic, spreads near keys', () => {
  assert.equal(hash32('abc'), hash32('abc'));
  assert.notEqual(hash32('/a/1'), hash32('/a/2'));
  assert.ok(hash32('x') >= 0 && hash32('x') <= 0xffffffff);
});
