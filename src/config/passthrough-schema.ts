import { z } from 'zod';
import { hostPattern, timeout } from './fields.ts';

/**
 * `tls.passthrough`: hosts whose TLS connections are not terminated here but passed, as raw TCP
 * chosen by the ClientHello's server name, to their own backend (which holds their certificate).
 *
 *   tls:
 *     passthrough: [ { hosts: [legacy.example.com, "*.mtls.example.com"], to: "10.0.0.5:443" } ]
 */

/** host:port, [IPv6]:port */
const backendAddress = z.string().transform((value, ctx) => {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*):(\d{1,5})$/i.exec(value.trim());
  const port = match ? Number(match[2]) : 0;
  if (!match || port < 1 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port such as 10.0.0.5:443 or [::1]:8443, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  return { host: match[1].replace(/^\[|\]$/g, ''), port };
});

export const passthroughRoute = z.strictObject({
  /** Exact names and one-label wildcards, matched against the SNI name; `*` would pass everything through. */
  hosts: z.array(hostPattern.refine((h) => h !== '*' && !h.startsWith('['), { error: 'expected a host name or "*.domain"' })).min(1),
  to: backendAddress,
  /** Send the client's address to the backend first in a PROXY protocol header: 1 (text) or 2 (binary); false: none. */
  proxyProtocol: z.union([z.literal(false), z.literal(1), z.literal(2)], { error: (i) => `expected false, 1 or 2, got ${JSON.stringify(i.input)}` }).default(false),
  /** 5 s to connect to the backend; then the client's connection is closed. */
  connectTimeout: timeout('5s'),
  /** 120 s without a byte either way closes both sides (the front's idle timeout). */
  idleTimeout: timeout('120s'),
});

export type PassthroughConfig = z.output<typeof passthroughRoute>;
