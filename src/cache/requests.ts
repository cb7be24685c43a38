import { Readable } from 'node:stream';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Context, Reply } from '../pipeline/context.ts';
import { isOutpostError } from '../errors.ts';
import type { Directives } from '../http/cache-control.ts';
import type { StoredView } from './engine.ts';
import { SURROGATE_DEVICE, type StoreRules } from './policy.ts';
import { storedValue } from './shared-values.ts';

/**
 * The requests the cache sends to the origin and what it reads from the answers: request shapes
 * (a fetch meant for storing, a background revalidation), the fields it stores, bounded reads.
 */

/** Request fields that make a forward conditional or partial: left out of a fetch meant for storing. */
const CONDITIONAL: ReadonlySet<string> = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']);

const SURROGATE_CAPABILITY = `${SURROGATE_DEVICE}="Surrogate/1.0"`;

export const EMPTY_BODY = (): Readable => Readable.from([]);


/** The client asked for less than the full body, or for a decision on it: HEAD, Range, conditionals. */
export function wantsLess(ctx: Context): boolean {
  if (ctx.method === 'HEAD') return true;
  const h = ctx.headers;
  return h.range !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined ||
    h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined;
}

/** §5.4: Pragma: no-cache counts only when the request has no Cache-Control. */
export const pragmaNoCache = (ctx: Context, request: Directives) =>
  request.size === 0 && ctx.headers.pragma !== undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(String(ctx.headers.pragma));

/**
 * A GET meant to produce a full, storable response: the client's conditionals and Range stay home,
 * and so does any request body. `signal` is the flight's (see startFlight), not the client's.
 */
export function fetchContext(ctx: Context, signal: AbortSignal, extra?: Record<string, string>): Context {
  // Copied field by field: `delete` would turn the object into a slow dictionary for every later reader.
  const headers: IncomingHttpHeaders = {};
  for (const field in ctx.headers) if (!CONDITIONAL.has(field) && field !== 'content-length' && field !== 'transfer-encoding') headers[field] = ctx.headers[field] as string;
  if (extra !== undefined) Object.assign(headers, extra);
  // Edge Architecture: tell the origin a surrogate that understands Surrogate-Control is here.
  const capability = ctx.headers['surrogate-capability'];
  headers['surrogate-capability'] = capability === undefined ? SURROGATE_CAPABILITY : `${capability}, ${SURROGATE_CAPABILITY}`;
  return { ...ctx, method: 'GET', headers, body: EMPTY_BODY(), hasBody: false, signal };
}

/** A background revalidation: nobody waits on it, nothing of the client's connection is used. */
export function detachedContext(ctx: Context): Context {
  return { ...ctx, method: 'GET', body: EMPTY_BODY(), hasBody: false, signal: new AbortController().signal, sendInformational: undefined, notes: new Map() };
}

/** §4.3.1: the stored validators as request preconditions. */
export function validatorsOf(view: StoredView): Record<string, string> {
  const out: Record<string, string> = {};
  if (view.facts.etag !== undefined) out['if-none-match'] = view.facts.etag;
  const lastModified = view.clientHeaders['last-modified'];
  if (typeof lastModified === 'string' && view.facts.lastModified !== undefined) out['if-modified-since'] = lastModified;
  return out;
}

/** The fields stored with a response: Set-Cookie goes only to the client that caused the fetch; common values shared (shared-values.ts). */
export function storedFields(headers: OutgoingHttpHeaders, rules: StoreRules): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'set-cookie' && rules.storeSetCookie) continue;
    out[name] = typeof value === 'number' ? String(value) : storedValue(name, value);
  }
  return out;
}

/** Whether a Content-Location names the request's own URI. */
export function describesTarget(ctx: Context, contentLocation: OutgoingHttpHeaders[string]): boolean {
  if (typeof contentLocation !== 'string') return false;
  try {
    const base = new URL(`${ctx.scheme}://${ctx.authority}${ctx.target}`);
    return new URL(contentLocation, base).href === base.href;
  } catch {
    return false;
  }
}

/** A body read to its end, or null when it is larger than `max` (then it is destroyed) or fails. */
export async function readUpTo(body: Reply['body'], max: number): Promise<Buffer | null> {
  if (body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body.length <= max ? body : null;
  if ('kind' in body) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > max) {
        body.destroy();
        return null;
      }
      chunks.push(chunk as Buffer);
    }
  } catch {
    return null;
  }
  return Buffer.concat(chunks, size);
}


export function errorStatus(error: unknown): number | undefined {
  return isOutpostError(error) ? error.status : undefined;
}

export function staleIfErrorWindow(response: Directives, request: Directives): boolean {
  return response.has('stale-if-error') || request.has('stale-if-error');
}

/** The promise's value if it settles within `ms`, else undefined. */
export function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); timer.unref(); }),
  ]).finally(() => clearTimeout(timer));
}
