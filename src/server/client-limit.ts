import type { Server, Socket } from 'node:net';
import { blockList, listed } from '../net/cidr.ts';
import { clientKey } from '../net/client-key.ts';
import { frontCounters } from './counters.ts';
import { plainAddress } from './request.ts';
import type { NodeAdmission } from './node-connections.ts';

/**
 * Open connections per client (nginx's limit_conn), counted on the raw TCP connection so a
 * connection over the limit is closed before its TLS handshake costs us anything. One table for
 * every listener it is attached to: the limit is per client, whichever port it uses. A client is
 * an IPv4 address or an IPv6 /64, as for the rate limits (net/client-key.ts): counted per IPv6
 * address, one host could open the limit's worth of connections from each of the 2^64 addresses
 * its line is given.
 */
export interface ClientConnectionLimit {
  /** Puts the limit in front of `server`'s own connection handling (TLS, HTTP/1.1 parser). */
  attach(server: Server): void;
  /** Open connections from `address`'s client (IPv4-mapped IPv6 read as IPv4; for IPv6, its /64). */
  openFrom(address: string): number;
  /**
   * Counts one more connection for `address` that is not a socket of its own (a WebSocket on an
   * HTTP/2 stream: one more origin connection, as an HTTP/1.1 one would be): the function that
   * gives the place back, or null over the limit. This worker's count, not the node's.
   */
  take(address: string | undefined): (() => void) | null;
}

/**
 * `exempt`: peers that speak for many clients (trusted proxies, load balancers), never limited.
 * `node`: with several workers, the node's count (node-connections.ts): a connection under this
 * worker's own limit waits for the node's word before it is passed on (its first bytes wait in
 * the socket's buffer, where the TLS socket or the HTTP parser then reads them).
 */
export function clientConnectionLimit(maxPerClient: number, exempt: readonly string[] = [], node?: NodeAdmission): ClientConnectionLimit {
  const open = new Map<string, number>();
  const exempted = exempt.length > 0 ? blockList(exempt) : null;

  /** The socket's client address if it is to be counted, 'exempt', or null: over this worker's limit. */
  function countLocally(socket: Socket): string | null {
    const address = socket.remoteAddress;
    if (address === undefined) return null; // already gone
    const plain = plainAddress(address);
    if (exempted !== null && listed(exempted, plain)) return EXEMPT;
    const key = clientKey(plain);
    const release = hold(key);
    if (release === null) return null;
    socket.once('close', release);
    return key;
  }

  /** One more open connection for `key`, or null over the limit: the function that gives it back (once). */
  function hold(key: string): (() => void) | null {
    const count = open.get(key) ?? 0;
    if (count >= maxPerClient) return null;
    open.set(key, count + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (open.get(key) ?? 1) - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    };
  }

  const refuse = (socket: Socket) => {
    frontCounters.connectionsRefused++;
    // A reset rather than a FIN: nothing to linger in TIME_WAIT on our side during a flood.
    socket.resetAndDestroy();
  };

  return {
    attach(server) {
      // net.Server hands each accepted socket to its 'connection' listeners: for tls.Server (and so
      // the HTTP/2 server) the one that starts the handshake, for http.Server the parser. Ours
      // runs first and passes only admitted sockets on.
      const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
      server.removeAllListeners('connection');
      const passOn = (socket: Socket) => { for (const handler of handlers) handler.call(server, socket); };
      server.on('connection', (socket: Socket) => {
        const key = countLocally(socket);
        if (key === null) refuse(socket);
        else if (key === EXEMPT || node === undefined) passOn(socket);
        else askTheNode(node, socket, key, passOn);
      });
    },
    openFrom: (address) => open.get(clientKey(plainAddress(address))) ?? 0,
    take(address) {
      if (address === undefined) return null;
      const plain = plainAddress(address);
      if (exempted !== null && listed(exempted, plain)) return ignore;
      return hold(clientKey(plain));
    },
  };

  function askTheNode(admit: NodeAdmission, socket: Socket, key: string, passOn: (socket: Socket) => void): void {
    // Until it is passed on nobody else listens to the socket: a reset meanwhile must not throw.
    socket.on('error', ignore);
    admit(key, maxPerClient).then((release) => {
      socket.off('error', ignore);
      if (socket.destroyed) { release?.(); return; } // the client gave up while we asked
      if (release === null) { refuse(socket); return; }
      socket.once('close', release);
      passOn(socket);
    }, () => socket.destroy());
  }
}

const EXEMPT = '\0exempt';
const ignore = () => {};
