import type { Context } from '../pipeline/context.ts';
import type { AddressList } from '../net/cidr.ts';

/**
 * The client a request comes from: the peer, or, when the peer is a trusted proxy, the right-most
 * X-Forwarded-For hop that is not itself trusted (the left-most entries are whatever the client
 * wrote, so they are never believed).
 */
export function clientAddress(ctx: Pick<Context, 'remoteAddress' | 'headers'>, trusted: AddressList): string {
  const peer = ctx.remoteAddress;
  if (trusted.size === 0 || !trusted.has(peer)) return peer;
  const value = ctx.headers['x-forwarded-for'];
  if (value === undefined) return peer;
  const hops = (Array.isArray(value) ? value.join(',') : value).split(',');
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = unbracket(hops[i].trim());
    if (hop === '') continue;
    client = hop;
    if (!trusted.has(hop)) break;
  }
  return client;
}

/** `[2001:db8::1]:443`, `192.0.2.1:8080` and bare addresses, as some proxies write them. */
function unbracket(hop: string): string {
  if (hop.startsWith('[')) return hop.slice(1, hop.indexOf(']') === -1 ? undefined : hop.indexOf(']'));
  const colon = hop.indexOf(':');
  return colon !== -1 && colon === hop.lastIndexOf(':') ? hop.slice(0, colon) : hop;
}
