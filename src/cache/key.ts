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
  return flatKey(ctx.scheme, '://', authority, ctx.target);
}

/**
 * `parts` as one flat string. Keys live as long as their records, and `+` or a template literal
 * makes a tree of V8 cons strings (one object per concatenation, the pieces kept too) that every
 * GC copies or marks: 8 of the 65 heap objects a stored miss kept. join copies into one string.
 */
export const flatKey = (...parts: string[]): string => parts.join('');

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
 * Request fields whose values are lists of case-insensitive tokens with parameters, where member
 * order and whitespace carry no meaning once q-values are explicit: normalised so `fr, en;q=0.5`
 * and `EN; q=0.5,fr` share one stored variant. Other fields (Cookie, custom ones) keep their case
 * and order: only whitespace around commas is folded.
 */
const TOKEN_LISTS: ReadonlySet<string> = new Set(['accept', 'accept-language', 'accept-charset']);

function normalizedList(value: string): string {
  const members: string[] = [];
  for (const part of value.split(',')) {
    const member = part.trim().toLowerCase().replace(/\s*([;=])\s*/g, '$1');
    if (member !== '') members.push(member);
  }
  return members.sort().join(',');
}

/**
 * §4.1: "the header fields nominated by the Vary header field match": values are compared after
 * normalization (§4.1: "by combining multiple header field lines ... or normalizing both header
 * field values in a way that is known to have identical semantics"). A field absent from the
 * request only matches a field absent from the stored request.
 */
export function secondaryKey(names: readonly string[], headers: IncomingHttpHeaders): string {
  if (names.length === 0) return '';
  let key = '';
  for (const name of names) {
    const value = headers[name];
    let joined: string;
    if (value === undefined) joined = '\u0000';
    else {
      const text = Array.isArray(value) ? value.join(',') : value;
      joined = TOKEN_LISTS.has(name) ? normalizedList(text) : text.replace(/\s*,\s*/g, ',').trim();
    }
    key += `${name}=${joined}\n`;
  }
  return key;
}
