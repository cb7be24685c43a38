import type { Server } from 'node:net';
import type { Config } from '../config/schema.ts';
import { publishPassthrough } from '../observability/channels.ts';
import { trustList } from '../origin/forwarded.ts';
import { createFrontDoor, type FrontDoor } from './front-door.ts';

/**
 * A listener's front door from the config, or null when connections can go straight to the
 * server: PROXY protocol (both listeners) and SNI passthrough (HTTPS) need the first bytes read.
 */
export function frontDoorFor(config: Config, target: Server, listener: 'https' | 'http'): FrontDoor | null {
  const passthrough = listener === 'https' ? config.tls.passthrough : [];
  const trusted = config.listen.proxyProtocol ? trustList(config.trustedProxies) : null;
  if (passthrough.length === 0 && trusted === null) return null;
  return createFrontDoor({
    target,
    tls: listener === 'https',
    trusted,
    passthrough: passthrough.map((route) => ({
      hosts: route.hosts,
      host: route.to.host,
      port: route.to.port,
      proxyProtocol: route.proxyProtocol === false ? 0 : route.proxyProtocol,
      connectTimeout: route.connectTimeout,
      idleTimeout: route.idleTimeout,
    })),
    // The PROXY header and the ClientHello come first: they get the time request headers get.
    prefaceTimeout: config.limits.headersTimeout,
    maxConnections: config.limits.maxConnections,
    onTunnel: publishPassthrough,
  });
}
