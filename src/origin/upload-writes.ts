import { subscribe } from 'node:diagnostics_channel';
import type { Writable } from 'node:stream';

/**
 * A request body goes to an HTTP/1.1 origin in one write per turn of the event loop instead of one
 * per chunk the client's connection delivered.
 *
 * undici writes each chunk of a streamed body as it comes (cork, write, uncork: one writev each).
 * An upload over HTTP/2 arrives in DATA frames of 16 KB that straddle TLS records, so a 1 MiB body
 * comes as ~120 chunks, nearly half of them under 1 KB (counted with h2load): ~120 syscalls, and as
 * many TCP segments for the origin to take in. The chunks of one read come in one turn of the event
 * loop; with the origin's socket corked until that turn ends (and undici's own cork and uncork
 * nested inside), they leave in one writev: no copy, no delay beyond the turn.
 *
 * undici does not hand the socket to a dispatch handler, but it publishes it on its diagnostics
 * channel `undici:client:sendHeaders` ({ request, headers, socket }) right before it starts
 * writing a request, and its request object carries the body it was given. A body registered
 * with `batchOriginWrites` gets its socket there; any other request costs a WeakMap lookup. Should
 * undici stop carrying the body there, bodies simply go out chunk by chunk again.
 */

const waiting = new WeakMap<object, (socket: Writable) => void>();

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
 * Registers `body` and answers the call to make before each of its chunks is handed on: once an
 * HTTP/1.1 client writes the body, the first call in a turn of the event loop corks the origin's
 * socket until the turn's immediates run, so what is written meanwhile leaves together. Until
 * then (or for an HTTP/2 origin, which publishes no socket) the call does nothing.
 */
export function batchOriginWrites(body: object): () => void {
  let socket: Writable | null = null;
  let corked = false;
  const release = () => {
    corked = false;
    socket?.uncork();
  };
  waiting.set(body, (target) => { socket = target; });
  return () => {
    if (socket === null || corked || socket.destroyed) return;
    corked = true;
    socket.cork();
    setImmediate(release);
  };
}
