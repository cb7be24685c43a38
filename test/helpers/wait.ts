/** Polls `value` every `step` ms until it is defined, at most `ms`; then fails with "timed out waiting". */
export async function waitFor<T>(value: () => T | undefined, ms = 5000, step = 5): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = value();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, step));
  }
}

/** Polls `predicate` every `step` ms until it holds, at most `ms`; then fails with "timed out waiting". */
export async function until(predicate: () => boolean, ms = 5000, step = 5): Promise<void> {
  await waitFor(() => (predicate() ? true : undefined), ms, step);
}
