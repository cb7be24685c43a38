import type { Socket } from 'node:net';
import { realTimers, type Timers } from '../timers.ts';

/** How long a client has to close its side of a connection once ours has ended. */
export const LINGER_MS = 2000;

/** The HTTP/2 connections' sockets, each closed a while after our side of it ends. */
export interface LingeringSockets {
  add(socket: Socket): void;
  /** Destroys every socket still open (the shutdown deadline). */
  destroyAll(): void;
}

/**
 * An HTTP/2 connection's socket outlives its session. A session that closes (GOAWAY: idle,
 * shutdown, an error) ends our side of the socket and waits for the client to end its own (Node's
 * finishSessionClose: socket.end(), and the session's 'close' only once the socket has closed),
 * so a client that never does kept the connection half-open for as long as it liked: counted
 * against the connection limits, out of every watch (those look at sessions), and holding the
 * server's close(), so a shutdown never finished (found with a client that left a response unread
 * and closed its session: it waits for that stream). Here the client gets LINGER_MS once our side
 * has ended ('finish': all we sent has been written) to close its own; then the socket is
 * destroyed, as nginx's lingering close gives up.
 */
export function lingeringSockets(timers: Timers = realTimers): LingeringSockets {
  const open = new Set<Socket>();
  return {
    add(socket) {
      open.add(socket);
      socket.once('finish', () => {
        const cancel = timers.setTimeout(() => socket.destroy(), LINGER_MS);
        socket.once('close', cancel);
      });
      socket.once('close', () => open.delete(socket));
    },
    destroyAll() {
      for (const socket of open) socket.destroy();
    },
  };
}
