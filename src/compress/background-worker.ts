import { parentPort } from 'node:worker_threads';
import { platform, setPriority } from 'node:os';
import type { Encoding } from '../pipeline/context.ts';
import { encodeBufferSync } from './encoders.ts';

/**
 * The background encoder's thread (background.ts): lowest priority, then one job at a time.
 * On Linux the nice value belongs to the calling thread, so only this thread is lowered; elsewhere
 * setpriority would lower the whole process, so it is left alone there.
 */
if (platform() === 'linux') {
  try { setPriority(19); } catch { /* not permitted: run at the normal priority */ }
}

parentPort!.on('message', ({ id, encoding, input }: { id: number; encoding: Encoding; input: Uint8Array }) => {
  try {
    const out = encodeBufferSync(encoding, Buffer.from(input.buffer, input.byteOffset, input.byteLength), 'high');
    // A copy with its own ArrayBuffer, handed over without another copy (zlib's result may share one).
    const output = new Uint8Array(out);
    parentPort!.postMessage({ id, output }, [output.buffer]);
  } catch (error) {
    parentPort!.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
