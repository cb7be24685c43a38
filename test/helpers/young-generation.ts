import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * For tests of what outlives V8's young collections: a garbage object in the old generation that
 * points at young ones (a Map's replaced table, say) makes them look alive to a young collection,
 * and the second one moves them to the old generation. A test builds a payload with `chain`,
 * lets go of it, and reads `promotedByTwoYoungCollections()`.
 */
setFlagsFromString('--expose-gc');
export const gc = runInNewContext('gc') as (options?: { type: 'minor' | 'major' }) => void;

/** A chain of `length` young objects (~32 B each): a payload big enough to see in the old generation's size. */
export function chain(length: number): { next: unknown } {
  let head: { next: unknown } = { next: null };
  for (let i = 0; i < length; i++) head = { next: head };
  return head;
}

const oldGenerationBytes = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;

/** Bytes two young collections move to the old generation now: what survived the first goes with the second. */
export function promotedByTwoYoungCollections(): number {
  const before = oldGenerationBytes();
  gc({ type: 'minor' });
  gc({ type: 'minor' });
  return oldGenerationBytes() - before;
}
