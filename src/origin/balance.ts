import type { BalanceKind } from '../config/schema.ts';
import { hash32 } from '../hash.ts';

/**
 * Which upstream of a group gets the next request. Pure apart from the round-robin counters kept
 * on each member; the pool says which members are usable (healthy, not yet tried by this request).
 */

export interface Balanced {
  readonly name: string;
  readonly weight: number;
  /** Requests sent and not yet answered to the last byte. */
  readonly inFlight: number;
  /** Smooth weighted round-robin state: owned by the balancer. */
  current: number;
}

export interface Picker<T extends Balanced> {
  /** The member for this request among the usable ones, or undefined when none is. `key` is used by hash only. */
  pick(usable: (member: T) => boolean, key: string): T | undefined;
}

export function createPicker<T extends Balanced>(kind: BalanceKind, group: readonly T[]): Picker<T> {
  if (kind === 'hash') return hashRing(group);
  if (kind === 'least-connections') return { pick: (usable) => leastConnections(group, usable) };
  return { pick: (usable) => smoothWeighted(group, usable) };
}

/**
 * nginx's smooth weighted round-robin (ngx_http_upstream_get_peer): every usable member gains its
 * weight, the one with the most is chosen and pays back the total. Weights 5:1:1 give
 * a a b a c a a, never five in a row; members skipped (down, already tried) neither gain nor pay.
 */
function smoothWeighted<T extends Balanced>(group: readonly T[], usable: (member: T) => boolean, among?: (member: T) => boolean): T | undefined {
  if (group.length === 1) return usable(group[0]) ? group[0] : undefined;
  let best: T | undefined;
  let total = 0;
  for (const member of group) {
    if (!usable(member) || (among !== undefined && !among(member))) continue;
    member.current += member.weight;
    total += member.weight;
    if (best === undefined || member.current > best.current) best = member;
  }
  if (best !== undefined) best.current -= total;
  return best;
}

/** Fewest requests in flight per unit of weight; ties share by weighted round-robin (as nginx does). */
function leastConnections<T extends Balanced>(group: readonly T[], usable: (member: T) => boolean): T | undefined {
  let least: T | undefined;
  for (const member of group) {
    if (!usable(member)) continue;
    // inFlight / weight compared without division.
    if (least === undefined || member.inFlight * least.weight < least.inFlight * member.weight) least = member;
  }
  if (least === undefined) return undefined;
  const best = least;
  return smoothWeighted(group, usable, (member) => member.inFlight * best.weight === best.inFlight * member.weight);
}

/** Points per unit of weight on the ring: 160, as ketama places them; about ±10 % spread between members. */
const POINTS = 160;

/**
 * Consistent hashing (a ketama-style ring): each member owns `weight × 160` points; a key goes to
 * the first usable member clockwise from its hash. Adding, removing or skipping a member moves only
 * the keys it owned, so a tier of caches behind the pool keeps its contents disjoint.
 */
function hashRing<T extends Balanced>(group: readonly T[]): Picker<T> {
  const points: Array<{ hash: number; member: T }> = [];
  for (const member of group) {
    for (let i = 0; i < member.weight * POINTS; i++) points.push({ hash: hash32(`${member.name}#${i}`), member });
  }
  points.sort((a, b) => a.hash - b.hash);
  const hashes = Uint32Array.from(points, (p) => p.hash);
  const owners = points.map((p) => p.member);
  return {
    pick(usable, key) {
      if (group.length === 1) return usable(group[0]) ? group[0] : undefined;
      const h = hash32(key);
      // First point at or after h (binary search), wrapping around.
      let lo = 0;
      let hi = hashes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (hashes[mid] < h) lo = mid + 1;
        else hi = mid;
      }
      for (let i = 0; i < owners.length; i++) {
        const owner = owners[(lo + i) % owners.length];
        if (usable(owner)) return owner;
      }
      return undefined;
    },
  };
}
