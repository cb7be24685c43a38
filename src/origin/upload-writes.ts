import { subscribe } from 'node:diagnostics_channel';
import type { Writable } from 'node:stream';

/**
 * A request body goes to an HTTP/1.1 origin in fewer, larger writes than the chunks the client's
 * connection delivered, with no copies: the origin's socket is corked while chunks gather and
 * uncorked to send them in one writev.
 *
 * undici writes each chunk of a streamed body as it comes (cork, write, uncork: one syscall each,
 * a wakeup of the origin and a pass through Node's write machinery). How chunks gather depends on
 * how they come:
 * - 'turn' (HTTP/2 clients): DATA frames of 16 KB straddle TLS records, so a 1 MiB body comes as
 *   ~120 chunks, nearly half of them under 1 KB, several in each turn of the event loop; the
 *   chunks of one turn leave together when its immediates run.
 * - 'bytes' (HTTP/1.1 clients): one TLS record (16 KB) per read and one read per turn, so per turn
 *   there is nothing to gather (a 1 MiB body made ~64 reads and ~76 writes to the origin,
 *   strace). The chunks gather across turns until BATCH_BYTES wait in the socket (undici's TCP
 *   sockets take 64 KB before they ask to drain, when its writer would pause the body anyway), the
 *   body ends, or BATCH_WAIT_MS after the first of them, so a slow client's bytes are late by a
 *   millisecond at most: ~34 writes per MiB (strace), 2-13 % less CPU per upload in three
 *   alternating pairs of 10 s runs (1 MiB POSTs), within the noise of the benchmark's rows.
 *   Over HTTP/2 the same cost 7 % more than 'turn' (two pairs).
 *
 * undici does not hand the socket to a dispatch handler, but it publishes it on its diagnostics
 * channel `undici:client:sendHeaders` ({ request, headers, socket }) right before it starts
 * writing a request, and its request object carries the body it was given. A body registered
 * with `batchOriginWrites` gets its socket there; any other request costs a WeakMap lookup. Should
 * undici stop carrying the body there, bodies simply go out chunk by chunk again.
 */

/** 'bytes': what may gather in the corked socket before it is sent (four of the client's TLS records) ... */
const BATCH_BYTES = 64 * 1024;
/** ... and how long (ms) after its first chunk a smaller batch waits. */
const BATCH_WAIT_MS = 1;

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

export interface OriginWrites {
  /** Before a chunk of the body is handed on: corks the origin's socket if it is not already. */
  before(): void;
  /** After it was handed on: sends the batch once it is full. */
  after(): void;
  /** Sends what waits now (the body ended, or was destroyed). */
  flush(): void;
}

/** How a body's chunks gather before they are written (see above). */
export type Gather = 'turn' | 'bytes';

/**
 * Registers `body` for batched writes. Until undici starts writing it to an HTTP/1.1 origin (an
 * HTTP/2 origin publishes no socket) the calls do nothing.
 */
export function batchOriginWrites(body: object, gather: Gather, waitMs = BATCH_WAIT_MS): OriginWrites {
  let socket: Writable | null = null;
  let corked = false;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (!corked) return;
    corked = false;
    clearTimeout(timer);
    socket!.uncork();
  };
  waiting.set(body, (target) => { socket = target; });
  return {
    before() {
      if (corked || socket === null || socket.destroyed) return;
      corked = true;
      socket.cork();
      if (gather === 'turn') setImmediate(flush);
      else timer = setTimeout(flush, waitMs);
    },
    after() {
      if (gather === 'bytes' && corked && socket!.writableLength >= BATCH_BYTES) flush();
    },
    flush,
  };
}
