import type { Worker } from 'node:cluster';

/**
 * Requests from the primary to its workers over the cluster IPC channel, and their answers. The
 * admin API lives in the primary; what it asks of "the node" (purge, stats, metrics, explain,
 * reload, the dashboard feed) each worker answers for its own process, and the primary combines.
 */

export type WorkerMethod = 'purge' | 'stats' | 'metrics' | 'explain' | 'reload' | 'feed' | 'reopen';

export interface Request { readonly outpost: 'request'; readonly id: number; readonly method: WorkerMethod; readonly args: readonly unknown[] }
export interface Answer { readonly outpost: 'answer'; readonly id: number; readonly ok: boolean; readonly value?: unknown; readonly error?: string }
export interface Ready { readonly outpost: 'ready'; readonly urls: readonly string[] }
/** A worker that could not start: its error's fields, so the primary can say it in one line. */
export interface Failed { readonly outpost: 'failed'; readonly message: string; readonly code?: string; readonly syscall?: string; readonly port?: number; readonly address?: string }

export const isMessage = <T extends { outpost: string }>(message: unknown, kind: T['outpost']): message is T =>
  message !== null && typeof message === 'object' && (message as { outpost?: unknown }).outpost === kind;

let nextId = 1;

/** Asks one worker; rejects when it does not answer in time or goes away. */
export function ask<T>(worker: Worker, method: WorkerMethod, args: readonly unknown[] = [], timeoutMs = 10_000): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    const onMessage = (message: unknown) => {
      if (!isMessage<Answer>(message, 'answer') || message.id !== id) return;
      done();
      if (message.ok) resolve(message.value as T);
      else reject(new Error(message.error ?? `worker ${worker.id}: ${method} failed`));
    };
    const onExit = () => { done(); reject(new Error(`worker ${worker.id} exited before answering ${method}`)); };
    const timer = setTimeout(() => { done(); reject(new Error(`worker ${worker.id} did not answer ${method} within ${timeoutMs} ms`)); }, timeoutMs);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    worker.send({ outpost: 'request', id, method, args } satisfies Request);
  });
}

/** In a worker: answers the primary's requests with `handlers`. */
export function answerRequests(handlers: Record<WorkerMethod, (...args: any[]) => unknown>): () => void {
  const onMessage = (message: unknown) => {
    if (!isMessage<Request>(message, 'request')) return;
    const handler = handlers[message.method];
    Promise.resolve()
      .then(() => handler(...message.args))
      .then(
        (value) => process.send?.({ outpost: 'answer', id: message.id, ok: true, value } satisfies Answer),
        (error: unknown) => process.send?.({ outpost: 'answer', id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) } satisfies Answer),
      );
  };
  process.on('message', onMessage);
  return () => process.off('message', onMessage);
}

/** Sums the numeric fields of several workers' stats; other fields are taken from the first. */
export function sumStats(all: ReadonlyArray<Record<string, unknown>>): Record<string, unknown> {
  const total: Record<string, unknown> = {};
  for (const stats of all) {
    for (const [key, value] of Object.entries(stats)) {
      if (typeof value === 'number') total[key] = ((total[key] as number | undefined) ?? 0) + value;
      else if (!(key in total)) total[key] = value;
    }
  }
  return total;
}
