import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { http } from './node-http.ts';
import type { Config } from '../config/schema.ts';
import { answerClientError } from './client-error.ts';
import { redirectToHttps } from './redirect-to-https.ts';
import { isWebSocketUpgrade } from './upgrade.ts';

export interface PlainHandlers {
  /** What the HTTPS listener does with an HTTP/1.1 request (httpMode: serve). */
  serve(req: IncomingMessage, res: ServerResponse): void;
  /** The WebSocket upgrades it takes (httpMode: serve). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** HTTP/1.1 CONNECT: refused as on the HTTPS listener. */
  refuseConnect(req: IncomingMessage, socket: Duplex): void;
  /** The send watch (limits.sendTimeout), given each connection. */
  watchWrites(socket: Socket): void;
}

/**
 * The plain-HTTP listener (`listen.http`): with `httpMode: serve` it answers as the HTTPS one does,
 * else it sends a 308 to the same URL on `httpsPort`. The same limits as the HTTPS listener's
 * HTTP/1.1 side; its idle sockets are Node's to close (setTimeout), what a client holds unread is
 * the send watch's.
 */
export function createPlainServer(config: Config, httpsPort: number, handlers: PlainHandlers): HttpServer {
  const limits = config.limits;
  const serving = config.listen.httpMode === 'serve';
  const plain = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: 1000,
    // Upgrades are taken where the plain listener serves; where it redirects, they get the 308.
    shouldUpgradeCallback: serving ? isWebSocketUpgrade : () => false,
  }, serving ? handlers.serve : redirectToHttps(httpsPort));
  if (serving) plain.on('upgrade', handlers.upgrade);
  plain.setTimeout(limits.idleTimeout);
  plain.on('connect', handlers.refuseConnect);
  plain.on('clientError', answerClientError);
  plain.on('connection', handlers.watchWrites);
  plain.maxConnections = limits.maxConnections;
  return plain;
}
