// @ts-check
/**
 * The background encoder's thread (background.ts): lowest priority, then one job at a time.
 *
 * Plain JavaScript on purpose, importing only Node's modules: a worker thread is a whole second
 * V8 isolate, and one that loads a .ts file also loads Node's TypeScript stripper into it, about
 * 18 MB of resident memory more for the life of the process (measured on Node 24.21: an idle
 * worker with one trivial .ts module +36 MB RSS, with this file +18 MB). The zlib options come in
 * each job, made by encoders.ts (`highQualityOptions`), so the qualities are defined in one place.
 *
 * On Linux the nice value belongs to the calling thread, so only this thread is lowered; elsewhere
 * setpriority would lower the whole process, so it is left alone there.
 */
import { parentPort } from 'node:worker_threads';
import { platform, setPriority } from 'node:os';
import zlib from 'node:zlib';

if (platform() === 'linux') {
  try { setPriority(19); } catch { /* not permitted: run at the normal priority */ }
}

/** @type {Record<string, (input: Buffer, options: object) => Buffer>} */
const ENCODE = {
  br: (input, options) => zlib.brotliCompressSync(input, options),
  zstd: (input, options) => zlib.zstdCompressSync(input, options),
  gzip: (input, options) => zlib.gzipSync(input, options),
};

const port = parentPort;
if (port === null) throw new Error('background-worker.js runs as a worker thread (background.ts starts it)');

port.on('message', (/** @type {{ id: number, encoding: string, options: object, input: Uint8Array }} */ { id, encoding, options, input }) => {
  try {
    const encode = ENCODE[encoding];
    if (encode === undefined) throw new Error(`unknown coding ${encoding}`);
    const out = encode(Buffer.from(input.buffer, input.byteOffset, input.byteLength), options);
    // A copy with its own ArrayBuffer, handed over without another copy (zlib's result may share one).
    const output = new Uint8Array(out);
    port.postMessage({ id, output }, [output.buffer]);
  } catch (error) {
    port.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
