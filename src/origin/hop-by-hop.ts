import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection and never cross a proxy.
 */
export const HOP_BY_HOP = new Set([
  'connection',          // lists further hop-by-hop fields
  'keep-alive',          // HTTP/1.0 persistence parameters
  'proxy-connection',    // non-standard, still sent by old clients
  'proxy-authenticate',  // addressed to a proxy, not the origin
  'proxy-authentication-info', // a proxy's answer to its own credentials (RFC 9110 §11.7.3);
                         // RFC 9111 §3.1: a cache must not store it, nor the two above
  'proxy-authorization', // credentials for a proxy
  'te',                  // transfer codings this hop accepts
  'trailer',             // announces trailers on this hop's framing
  'transfer-encoding',   // this hop's framing; the next hop frames anew
  'upgrade',             // protocol switch for this connection
  'http2-settings',      // HTTP/2 upgrade handshake (RFC 7540 §3.2.1)
]);

const NONE: readonly string[] = [];
const NOTHING: ReadonlySet<string> = new Set();

/** Names listed in Connection are hop-by-hop too. */
function connectionTokens(value: string | string[] | number | undefined): readonly string[] {
  // What nearly every HTTP/1.1 message carries names no field: no split per message.
  if (value === undefined || value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return NONE;
  const joined = Array.isArray(value) ? value.join(',') : String(value);
  return joined.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

/** A copy of `headers` without hop-by-hop fields, the ones Connection names, and `drop`. */
export function endToEnd<H extends IncomingHttpHeaders | OutgoingHttpHeaders | Record<string, string | string[] | undefined>>(
  headers: H,
  drop: ReadonlySet<string> = NOTHING,
): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection as string | string[] | undefined);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name) || (named.length > 0 && named.includes(name))) continue;
    out[name] = typeof value === 'number' ? String(value) : (value as string | string[]);
  }
  return out;
}
