import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Encoding } from '../pipeline/context.ts';
import { loadAddon } from '../runtime/native-addon.ts';
import { QUALITY, brotliWindowFor, highQualityOptions } from './encoders.ts';

/**
 * The high-quality encoder (Brotli 11, zstd 19, gzip 9): one thread for the process, at the
 * lowest scheduling priority (nice 19, Linux), encoding one body at a time. On a busy core the
 * event loop (nice 0) gets nearly all of it; the encoder runs when the core would otherwise idle.
 * (libuv's thread pool, which the callback zlib API uses, runs at the loop's priority: a 25 ms
 * Brotli 11 there takes 25 ms from the responses.)
 *
 * The thread is the native helper's (native/background-encode.c, built by `npm ci`): a plain
 * thread running the encoders in Node's binary, the same calls as Node's zlib binding makes, so
 * the same bytes. Without the helper (no C compiler at install) it is a worker thread
 * (background-worker.js), which is a second V8 isolate: ~19 MiB more RSS for the life of the
 * process once the first object is upgraded (an idle worker alone, Node 24.21; in Outpost, whose
 * pages of Node's binary it partly shares, 12-20 MiB on the rig).
 *
 * Either starts on the first job and keeps the process alive only while it has jobs. If the worker
 * dies, the jobs it held fail (the upgrade queue reports them; the fast variants stay) and the next
 * job starts a new one.
 */

export type BackgroundEncode = (encoding: Encoding, input: Buffer) => Promise<Buffer>;

/** The native helper's interface (native/background-encode.c). */
interface EncoderHelper {
  /** Whether this runtime exports the encoders, and this is the thread that loaded the helper. */
  available(): boolean;
  /** `input` (copied) encoded on the helper's thread; `window` is Brotli's lgwin. */
  encode(coding: Encoding, input: Buffer, level: number, window: number): Promise<Buffer>;
}

export const ENCODER_PATH = fileURLToPath(new URL('../../native/build/background-encode.node', import.meta.url));

const CODINGS: ReadonlySet<string> = new Set(['br', 'zstd', 'gzip'] satisfies Encoding[]);
const unknownCoding = (encoding: string) => Promise.reject(new Error(`background encoder: unknown coding ${encoding}`));

/** The native helper's thread, or why there is none (then the worker does the job). */
export function nativeEncoder(path = ENCODER_PATH): { encode: BackgroundEncode; why?: undefined } | { encode: null; why: string } {
  const { addon: helper, why } = loadAddon<EncoderHelper>(path);
  if (helper === null) return { encode: null, why };
  if (typeof helper.available !== 'function' || !helper.available()) return { encode: null, why: 'this runtime does not export its encoders to the native helper' };
  return {
    encode(encoding, input) {
      if (!CODINGS.has(encoding)) return unknownCoding(encoding);
      try {
        return helper.encode(encoding, input, QUALITY.high[encoding], encoding === 'br' ? brotliWindowFor(input.length) : 0);
      } catch (error) {
        return Promise.reject(error); // out of memory, or no thread to be had
      }
    },
  };
}

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

/** `input` encoded at high quality in the worker thread (without the native helper). `input` is copied to the worker. */
export function encodeInWorker(encoding: Encoding, input: Buffer): Promise<Buffer> {
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

let chosen: BackgroundEncode | undefined;

/** `input` encoded at high quality, off the event loop and below its priority: on the native helper's thread, else in the worker. */
export const encodeInBackground: BackgroundEncode = (encoding, input) => (chosen ??= nativeEncoder().encode ?? encodeInWorker)(encoding, input);
