import type { IncomingHttpHeaders } from 'node:http';
import type { Context } from '../pipeline/context.ts';

/**
 * Cache keys (RFC 9111 §2, §4.1). The primary key is the target URI: scheme, host (lower-case,
 * default port dropped), path and query; GET and HEAD share it. The secondary key is made of the
 * request headers the stored response's Vary names, normalized.
 */

const DEFAULT_PORT = { https: ':443', http: ':80' } as const;

export function primaryKey(ctx: Pick<Context, 'scheme' | 'authority' | 'target'>): string {
  let authority = ctx.authority.toLowerCase();
  if (authority.endsWith(DEFAULT_PORT[ctx.scheme])) authority = authority.slice(0, -DEFAULT_PORT[ctx.scheme].length);
  return `${ctx.scheme}://${authority}${ctx.target}`;
}

/**
 * The field names a Vary value lists, lower-case, sorted, without Accept-Encoding (our own
 * negotiation serves every coding from one stored identity body, so it never splits the cache).
 * `*` means no request can be matched (§4.1): the response is not stored.
 */
export function varyNames(vary: string | string[] | undefined): string[] | '*' {
  if (vary === undefined) return [];
  const names = new Set<string>();
  for (const part of (Array.isArray(vary) ? vary.join(',') : vary).split(',')) {
    const name = part.trim().toLowerCase();
    if (name === '*') return '*';
    if (name !== '' && name !== 'accept-encoding') names.add(name);
  }
  return [...names].sort();
}

/**
 * §4.1: "the header fields nominated by the Vary header field match": values are compared after
 * normalization — combined, with whitespace around commas collapsed. A field absent from the request
 * only matches a field absent from the stored request.
 */
export function secondaryKey(names: readonly string[], headers: IncomingHttpHeaders): string {
  if (names.length === 0) return '';
  let key = '';
  for (const name of names) {
    const value = headers[name];
    const joined = value === undefined ? '\u0000' : (Array.isArray(value) ? value.join(',') : value).replace(/\s*,\s*/g, ',').trim();
    key += `${name}=${joined}\n`;
  }
  return key;
}
