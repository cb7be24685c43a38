/**
 * Bytes kept for long (cache records, kept encodings) must hold only themselves. A Buffer is often
 * a view into a larger allocation: a socket read's 64 KB chunk that one small origin body arrived
 * in, zlib's 16 KB output chunk, Node's shared 8 KB pool for small allocations. Kept as they are,
 * a 3 KB body pins all of it (the soak in bench/soak.ts measured 64 KB per stored 1-15 KB body,
 * RSS many times what the cache reported holding).
 */

/** `buffer` when it owns its whole allocation, else a copy that does (never from the shared pool). */
export function ownBytes(buffer: Buffer): Buffer {
  if (buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength) return buffer;
  const copy = Buffer.allocUnsafeSlow(buffer.length);
  buffer.copy(copy);
  return copy;
}
