import type { BlockList } from 'node:net';
import { addressType, blockList, listed } from '../net/cidr.ts';
import type { Context } from '../pipeline/context.ts';

/**
 * The headers that tell the origin who asked: X-Forwarded-For/-Proto/-Host, Forwarded (RFC 7239)
 * and Via (RFC 9110 §7.6.3). What a client sent is replaced, unless the peer is a trusted proxy,
 * whose chain is kept and extended.
 */

/** Trusted proxies (validated addresses and CIDR ranges). */
export const trustList = (entries: readonly string[]): BlockList => blockList(entries);

/** Whether the peer (a socket's address: a valid IP, or empty once the socket is gone) is a trusted proxy. */
export function isTrusted(list: BlockList | null, address: string): boolean {
  return list !== null && address !== '' && listed(list, address);
}

/** RFC 7239 §6: IPv6 node names are bracketed and the whole value quoted. */
function forwardedNode(address: string): string {
  return addressType(address) === 'ipv6' ? `"[${address}]"` : address;
}

const joined = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(', ') : value);

/**
 * The last Forwarded element and Via made, kept for the next request: the requests of one
 * connection (and most of a site's) come from one peer to one authority, and the strings are then
 * the same; making them again cost a regular expression and two new strings per request.
 */
const lastElement = { peer: '', authority: '', scheme: '', value: '' };
function forwardedElement(peer: string, authority: string, scheme: string): string {
  const last = lastElement;
  if (last.peer === peer && last.authority === authority && last.scheme === scheme) return last.value;
  const value = `for=${forwardedNode(peer)};host="${authority.replace(/["\\]/g, '')}";proto=${scheme}`;
  last.peer = peer;
  last.authority = authority;
  last.scheme = scheme;
  last.value = value;
  return value;
}
const lastVia = { version: '', name: '', value: '' };
function viaElement(httpVersion: string, name: string): string {
  if (lastVia.version !== httpVersion || lastVia.name !== name) {
    lastVia.version = httpVersion;
    lastVia.name = name;
    lastVia.value = `${httpVersion} ${name}`;
  }
  return lastVia.value;
}

/** Sets the forwarding fields on `headers`, the request to the origin being built; `keep`: the peer is a trusted proxy (isTrusted). */
export function addForwarded(headers: Record<string, string | string[]>, ctx: Context, keep: boolean, viaName: string): void {
  const peer = ctx.remoteAddress;
  const priorFor = keep ? joined(ctx.headers['x-forwarded-for']) : undefined;
  const priorForwarded = keep ? joined(ctx.headers.forwarded) : undefined;
  const element = forwardedElement(peer, ctx.authority, ctx.scheme);
  const priorVia = joined(ctx.headers.via);
  const via = viaElement(ctx.httpVersion, viaName);
  headers['x-forwarded-for'] = priorFor ? `${priorFor}, ${peer}` : peer;
  headers['x-forwarded-proto'] = (keep && joined(ctx.headers['x-forwarded-proto'])) || ctx.scheme;
  headers['x-forwarded-host'] = (keep && joined(ctx.headers['x-forwarded-host'])) || ctx.authority;
  headers.forwarded = priorForwarded ? `${priorForwarded}, ${element}` : element;
  // Via is a chain every intermediary appends to; keeping the client's lets loops be seen.
  headers.via = priorVia ? `${priorVia}, ${via}` : via;
}
