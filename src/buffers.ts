/**
 * Bytes kept for long (cache records, kept encodings) must hold only themselves. A Buffer is often
 * a view into a larger allocation: a socket read's 64 KB chunk that one small origin body arrived
 * in, zlib's 16 KB output chunk, Node's shared 8 KB pool for small allocations. Kept as they are,
 * a 3 KB body pins all of it (the soak in bench/soak.ts measured 64 KB per stored 1-15 KB body,
 * RSS many times what the cache reported holding).
 */

/**
 * `buffer` when it holds little besides itself, else a copy that owns its bytes (never from the
 * shared pool). Little: at most a quarter more, or 4 KB (a 30 KB body read with its headers is not
 * worth a copy: copying it freed nothing, and the churn cost the miss benchmark 270 MB of
 * fragmented malloc heap).
 */
export function ownBytes(buffer: Buffer): Buffer {
  if (buffer.buffer.byteLength - buffer.length <= Math.max(4096, buffer.length >> 2)) return buffer;
  const copy = Buffer.allocUnsafeSlow(buffer.length);
  buffer.copy(copy);
  return copy;
}
