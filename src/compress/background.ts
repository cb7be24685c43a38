import { Worker } from 'node:worker_threads';
import type { Encoding } from '../pipeline/context.ts';
import { highQualityOptions } from './encoders.ts';

/**
 * The high-quality encoder (Brotli 11, zstd 19, gzip 9): one worker thread for the process, which
 * lowers its own scheduling priority (nice 19, Linux) and encodes one body at a time, synchronously,
 * on that thread. On a busy core the event loop (nice 0) gets nearly all of it; the worker runs
 * when the core would otherwise idle. (libuv's thread pool, which the callback zlib API uses,
 * runs at the loop's priority: a 25 ms Brotli 11 there takes 25 ms from the responses.)
 *
 * Started on the first job; it keeps the process alive only while it has jobs. If it dies, the
 * jobs it held fail (the upgrade queue reports them; the fast variants stay) and the next job
 * starts a new one.
 */

interface Pending {
  readonly resolve: (body: Buffer) => void;
  readonly reject: (error: Error) => void;
}

interface Answer {
  readonly id: number;
  readonly output?: Uint8Array;
  readonly error?: string;
}

let worker: Worker | null = null;
const pending = new Map<number, Pending>();
let nextId = 0;

function failAll(error: Error): void {
  for (const job of pending.values()) job.reject(error);
  pending.clear();
}

function start(): Worker {
  const w = new Worker(new URL('./background-worker.js', import.meta.url), {
    // Buffers live outside the V8 heap: the worker's own heap stays small.
    resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 },
    stdout: false,
    stderr: false,
  });
  w.on('message', (answer: Answer) => {
    const job = pending.get(answer.id);
    if (job === undefined) return;
    pending.delete(answer.id);
    if (pending.size === 0) w.unref();
    if (answer.output !== undefined) job.resolve(Buffer.from(answer.output.buffer, answer.output.byteOffset, answer.output.byteLength));
    else job.reject(new Error(`background encoder: ${answer.error ?? 'no output'}`));
  });
  const gone = (error: Error) => {
    if (worker === w) worker = null;
    failAll(error);
  };
  w.on('error', gone);
  w.on('exit', (code) => gone(new Error(`background encoder exited (code ${code})`)));
  // After the listeners (a 'message' listener refs the worker's port again).
  w.unref();
  return w;
}

/** `input` encoded at high quality, off the event loop and below its priority. `input` is copied to the worker. */
export function encodeInBackground(encoding: Encoding, input: Buffer): Promise<Buffer> {
  worker ??= start();
  const id = nextId++;
  return new Promise<Buffer>((resolve, reject) => {
    if (pending.size === 0) worker!.ref();
    pending.set(id, { resolve, reject });
    // A copy of just these bytes, moved (a view's whole ArrayBuffer would be cloned otherwise).
    const copy = new Uint8Array(input);
    worker!.postMessage({ id, encoding, options: highQualityOptions(encoding, input.length), input: copy }, [copy.buffer]);
  });
}
