import type { Server, Socket } from 'node:net';
import { blockList, listed } from '../net/cidr.ts';
import { frontCounters } from './counters.ts';
import { plainAddress } from './request.ts';

/**
 * Open connections per client address (nginx's limit_conn), counted on the raw TCP connection so
 * a connection over the limit is closed before its TLS handshake costs us anything. One table for
 * every listener it is attached to: the limit is per client, whichever port it uses.
 */
export interface ClientConnectionLimit {
  /** Puts the limit in front of `server`'s own connection handling (TLS, HTTP/1.1 parser). */
  attach(server: Server): void;
  /** Open connections from `address` (IPv4-mapped IPv6 read as IPv4). */
  openFrom(address: string): number;
}

/** `exempt`: peers that speak for many clients (trusted proxies, load balancers), never limited. */
export function clientConnectionLimit(maxPerClient: number, exempt: readonly string[] = []): ClientConnectionLimit {
  const open = new Map<string, number>();
  const exempted = exempt.length > 0 ? blockList(exempt) : null;

  function admit(socket: Socket): boolean {
    const address = socket.remoteAddress;
    if (address === undefined) return false; // already gone
    const key = plainAddress(address);
    if (exempted !== null && listed(exempted, key)) return true;
    const count = open.get(key) ?? 0;
    if (count >= maxPerClient) return false;
    open.set(key, count + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    });
    return true;
  }

  return {
    attach(server) {
      // net.Server hands each accepted socket to its 'connection' listeners: for tls.Server (and so
      // the HTTP/2 server) the one that starts the handshake, for http.Server the parser. Ours
      // runs first and passes only admitted sockets on.
      const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
      server.removeAllListeners('connection');
      server.on('connection', (socket: Socket) => {
        if (!admit(socket)) {
          frontCounters.connectionsRefused++;
          // A reset rather than a FIN: nothing to linger in TIME_WAIT on our side during a flood.
          socket.resetAndDestroy();
          return;
        }
        for (const handler of handlers) handler.call(server, socket);
      });
    },
    openFrom: (address) => open.get(plainAddress(address)) ?? 0,
  };
}
