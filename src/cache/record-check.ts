import type { CacheRecord } from './store/contract.ts';
import { FIELD_NAME, FIELD_VALUE } from '../http/field-syntax.ts';

/**
 * Whether a record read from the shared tier is one this cache can use (the layout is entries.ts').
 * Redis is shared by every node, and anyone who can write to it can write there: what it holds is
 * input like any other. A record that is not what its key says (a status no response may carry,
 * fields that are not fields, a value with a line break) would otherwise be served on every
 * request until it expired: a 500 each time, or field values HTTP/2 cannot carry and HTTP/1.1 must
 * not. Checked once per read from the far tier, before the near tier keeps a copy; a refused
 * record reads as absent, and the next miss stores a good one over it.
 *
 * Returns why a record is refused, or undefined when it is fine.
 */
export function refusedRecord(key: string, record: CacheRecord): string | undefined {
  if (!Buffer.isBuffer(record.body)) return 'its body is not bytes';
  const meta = record.meta as Record<string, unknown> | null;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return 'its metadata is not an object';
  switch (key.slice(0, 2)) {
    case 'o:': return refusedResponse(meta);
    case 'e:': return typeof meta.token === 'string' ? undefined : 'a variant without a token';
    case 'v:': return isList(meta.vary, isToken) && (meta.until === undefined || Number.isFinite(meta.until)) ? undefined : 'a Vary index that is not a list of field names';
    default: return undefined;
  }
}

const isToken = (value: unknown): boolean => typeof value === 'string' && FIELD_NAME.test(value);
const isFieldValue = (value: unknown): boolean => typeof value === 'string' && FIELD_VALUE.test(value);
const isList = (value: unknown, item: (v: unknown) => boolean): boolean => Array.isArray(value) && value.every(item);

function refusedResponse(meta: Record<string, unknown>): string | undefined {
  const status = meta.status;
  // Stored responses are final ones (RFC 9110 §15: 100-599; a 1xx is never stored).
  if (!Number.isInteger(status) || (status as number) < 200 || (status as number) > 599) return `status ${JSON.stringify(status)}`;
  if (!Number.isFinite(meta.requestTime) || !Number.isFinite(meta.responseTime)) return 'no request and response times';
  if (!isList(meta.tags, (t) => typeof t === 'string')) return 'tags that are not a list of strings';
  if (meta.invalidatedAt !== undefined && !Number.isFinite(meta.invalidatedAt)) return 'an invalidation time that is not a number';
  const headers = meta.headers;
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) return 'fields that are not an object';
  for (const [name, value] of Object.entries(headers)) {
    if (!isToken(name)) return `a field name ${JSON.stringify(name)}`;
    if (!(isFieldValue(value) || isList(value, isFieldValue))) return `the value of ${name}`;
  }
  return undefined;
}
