import type { Server } from 'node:net';
import type { Config } from '../config/schema.ts';
import { publishPassthrough } from '../observability/channels.ts';
import { createFrontDoor, type FrontDoor } from './front-door.ts';

/** The listener's front door from the config, or null when connections can go straight to TLS. */
export function frontDoorFor(config: Config, tlsServer: Server): FrontDoor | null {
  if (config.tls.passthrough.length === 0) return null;
  return createFrontDoor({
    target: tlsServer,
    passthrough: config.tls.passthrough.map((route) => ({
      hosts: route.hosts,
      host: route.to.host,
      port: route.to.port,
      proxyProtocol: 0,
      connectTimeout: route.connectTimeout,
      idleTimeout: route.idleTimeout,
    })),
    // The ClientHello is the first thing a client sends: it gets the time request headers get.
    prefaceTimeout: config.limits.headersTimeout,
    maxConnections: config.limits.maxConnections,
    onTunnel: publishPassthrough,
  });
}
