import zlib from 'node:zlib';

/**
 * gzip of small bodies on the calling thread with one deflate state kept for all of them.
 *
 * `zlib.gzipSync` builds a deflate state for every call and frees it when the call ends: four
 * blocks of just over 64 KiB (deflate's window, prev, head and pending buffers) and their
 * clearing, per body. Freed and asked for again between the cache's long-lived bodies, blocks of
 * that size keep glibc's heap from closing its holes (the soak, bench/soak.ts: most of the
 * process's free malloc chunks sat in the main heap). One engine per level, reset between bodies
 * (zlib's deflateReset keeps its blocks), makes the same bytes as gzipSync at about 15 % less CPU
 * for a 10 KB body, and no allocation of 64 KiB or more per call (counted with a malloc wrapper).
 *
 * Node's one-shot functions close their engine when they return, so this drives the engine's
 * handle the way they do inside (`_handle.writeSync` and `_writeState`, Node's internals since
 * v10). Where a runtime lacks them, `reusedGzip` answers null and the caller keeps gzipSync.
 * Only gzip: Node's reset of a Brotli engine makes a new encoder with default parameters
 * (quality 11: measured, 80 times slower), and its zstd reset frees the workspace anyway.
 */

interface ZlibHandle {
  writeSync(flush: number, input: Buffer, inOffset: number, inLength: number, out: Buffer, outOffset: number, outLength: number): void;
  reset(): void;
}

/** What Node's zlib engines carry inside: the native handle and where it writes [availOut, availIn]. */
interface EngineInternals {
  _handle?: ZlibHandle | null;
  _writeState?: Uint32Array;
}

/** Encodes `input` whole; the result owns its bytes. */
export type SyncGzip = (input: Buffer) => Buffer;

/** Output space per write: the whole of a body up to 64 KB in one go (gzip's worst case is a few bytes over its input). */
const OUT_SIZE = 66 * 1024;

/** The first `length` bytes of `buffer` in memory of their own (not the shared pool: results are kept), since `buffer` is written again by the next call. */
function copyOf(buffer: Buffer, length: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(length);
  buffer.copy(copy, 0, 0, length);
  return copy;
}

export function reusedGzip(level: number): SyncGzip | null {
  let engine: (zlib.Gzip & EngineInternals) | null = null;
  let out: Buffer | null = null;

  function open(): zlib.Gzip & EngineInternals {
    const created = zlib.createGzip({ level }) as zlib.Gzip & EngineInternals;
    // A failing write reports through the engine's 'error' (it destroys itself); we throw instead.
    created.on('error', () => {});
    return created;
  }

  const probe = open();
  if (typeof probe._handle?.writeSync !== 'function' || typeof probe._handle.reset !== 'function' || !(probe._writeState instanceof Uint32Array)) {
    probe.close();
    return null;
  }
  engine = probe;

  return function gzip(input: Buffer): Buffer {
    const current = engine ?? open();
    engine = null; // taken: a throw below leaves it closed, and the next call opens another
    out ??= Buffer.allocUnsafeSlow(OUT_SIZE);
    const handle = current._handle!;
    const state = current._writeState!;
    const chunks: Buffer[] = [];
    let total = 0;
    let inOffset = 0;
    let inLeft = input.length;
    try {
      for (;;) {
        handle.writeSync(zlib.constants.Z_FINISH, input, inOffset, inLeft, out, 0, out.length);
        if (current.destroyed) throw current.errored ?? new Error('gzip failed');
        const availOut = state[0];
        const have = out.length - availOut;
        chunks.push(copyOf(out, have));
        total += have;
        inOffset += inLeft - state[1];
        inLeft = state[1];
        if (availOut !== 0) break; // Z_FINISH with room to spare: the stream is complete
      }
      handle.reset();
      engine = current;
    } catch (error) {
      current.close();
      throw error;
    }
    if (chunks.length === 1) return chunks[0];
    const whole = Buffer.allocUnsafeSlow(total);
    let at = 0;
    for (const chunk of chunks) at += chunk.copy(whole, at);
    return whole;
  };
}
