/**
 * Counts by label values, one Map per label: what the metrics and the dashboard feed count per
 * response. A key joined from the labels would be a new string to make, flatten and hash on every
 * count; the label values are looked up as they come (config values and constants keep their hash).
 */
export type Tally = Map<string, Tally | number>;

/** The map for the next label under `value`, made on first use. */
export function below(tally: Tally, value: string): Tally {
  let next = tally.get(value) as Tally | undefined;
  if (next === undefined) tally.set(value, next = new Map());
  return next;
}

/** Adds `n` under the last label's value. */
export function count(tally: Tally, value: string, n = 1): void {
  tally.set(value, ((tally.get(value) as number | undefined) ?? 0) + n);
}

/** Every count with its label values, `depth` labels deep. */
export function* leaves(tally: Tally, depth: number, values: readonly string[] = []): Generator<[readonly string[], number]> {
  for (const [value, next] of tally) {
    if (depth === 1) yield [[...values, value], next as number];
    else yield* leaves(next as Tally, depth - 1, [...values, value]);
  }
}
