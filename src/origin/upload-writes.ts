import { subscribe } from 'node:diagnostics_channel';
import type { Writable } from 'node:stream';

/**
 * A request body goes to an HTTP/1.1 origin in one write per turn of the event loop instead of one
 * per chunk the client's connection delivered.
 *
 * undici writes each chunk of a streamed body as it comes (cork, write, uncork: one writev each).
 * An upload over HTTP/2 arrives in DATA frames of 16 KB that straddle TLS records, so a 1 MiB body
 * comes as ~120 chunks, half of them a few bytes long (counted with h2load): ~120 syscalls, and as
 * many TCP segments for the origin to take in. The chunks of one read come in one turn of the event
 * loop; with the origin's socket corked until that turn ends (and undici's own cork and uncork
 * nested inside), they leave in one writev: no copy, no delay beyond the turn.
 *
 * undici does not hand the socket to a dispatch handler, but it publishes it on its diagnostics
 * channel `undici:client:sendHeaders` ({ request, headers, socket }) right before it starts
 * writing a request, and its request object carries the body it was given. A body that asked
 * for its socket (`whenWritten`) gets it there; any other request costs a WeakMap lookup. Should
 * undici stop carrying the body there, bodies simply go out chunk by chunk again.
 */

const waiting = new WeakMap<object, (socket: Writable) => void>();

/** Calls `attach` with the origin connection's socket once an HTTP/1.1 client starts writing `body`. */
export function whenWritten(body: object, attach: (socket: Writable) => void): void {
  waiting.set(body, attach);
}

subscribe('undici:client:sendHeaders', (message) => {
  const { request, socket } = message as { request?: { body?: unknown }; socket?: Writable };
  const body = request?.body;
  if (typeof body !== 'object' || body === null || socket === undefined) return;
  const attach = waiting.get(body);
  if (attach === undefined) return;
  waiting.delete(body);
  attach(socket);
});

/**
 * Corks `socket` for the rest of this turn of the event loop, once however often it is called in
 * the turn: what is written meanwhile leaves together when the turn's immediates run.
 */
export function turnBatcher(): { attach(socket: Writable): void; beforeWrite(): void } {
  let socket: Writable | null = null;
  let corked = false;
  const release = () => {
    corked = false;
    socket?.uncork();
  };
  return {
    attach(target) { socket = target; },
    beforeWrite() {
      if (socket === null || corked || socket.destroyed) return;
      corked = true;
      socket.cork();
      setImmediate(release);
    },
  };
}
