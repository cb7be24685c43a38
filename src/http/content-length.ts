import type { OutgoingHttpHeaders } from 'node:http';

/** A response's Content-Length as a number, or -1 when absent or malformed. */
export function declaredLength(headers: OutgoingHttpHeaders): number {
  const value = headers['content-length'];
  if (typeof value === 'number') return value;
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : -1;
}
