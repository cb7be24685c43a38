/**
 * Work per key shared by the callers that ask for it while it runs: requests that need the same
 * thing at the same moment (a file's re-check, a read from another tier) wait for one run instead
 * of each starting its own. Under 1,000 requests in flight each would otherwise be a herd of as
 * many runs as requests. `forget` ends the sharing of a key (what it would answer has changed):
 * a caller after it starts a run of its own; the run under way still answers its callers.
 */
export interface SharedWork<T> {
  run(key: string, work: () => Promise<T>): Promise<T>;
  forget(keys: readonly string[] | '*'): void;
}

export function createSharedWork<T>(): SharedWork<T> {
  const running = new Map<string, Promise<T>>();
  return {
    run(key, work) {
      const under = running.get(key);
      if (under !== undefined) return under;
      const done = work().finally(() => {
        if (running.get(key) === done) running.delete(key);
      });
      running.set(key, done);
      return done;
    },
    forget(keys) {
      if (keys === '*') running.clear();
      else for (const key of keys) running.delete(key);
    },
  };
}
