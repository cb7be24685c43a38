import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Writable } from 'node:stream';

/**
 * A request body goes to an HTTP/1.1 origin in fewer, larger writes than the chunks the client's
 * connection delivered, with no copies: the origin's socket is corked while chunks gather and
 * uncorked to send them in one writev.
 *
 * undici writes each chunk of a streamed body as it comes (cork, write, uncork: one syscall each,
 * a wakeup of the origin and a pass through Node's write machinery, and on loopback the origin's
 * side of TCP too, in our process's time). The client's chunks are small: an HTTP/1.1 client's
 * body comes one TLS record (16 KB) per read, an HTTP/2 client's DATA frames of 16 KB straddle
 * TLS records, so a 1 MiB upload came as ~120 chunks, nearly half of them under 1 KB. So the
 * chunks gather across turns of the event loop until BATCH_BYTES wait in the socket, the body
 * ends, or BATCH_WAIT_MS after the first of them, so a slow client's bytes are late by a
 * millisecond at most. The origin's socket lets BATCH_BYTES wait before it asks undici to pause
 * the body (ORIGIN_SOCKET_BUFFERS, dispatcher.ts; undici's own 64 KB would end every batch there),
 * and a batch goes as soon as the socket asks for a drain, whatever its size: a corked socket never
 * drains, so a smaller buffer (a TLS origin's) would leave every batch waiting for the timer.
 *
 * Measured (rig, 2026-12-03: Outpost on one core, 1,500 1 MiB POSTs a run, nine alternating runs
 * each): HTTP/2 clients' chunks had gone out turn by turn, 72 writes per upload (strace); in
 * 256 KB batches 11, and 1,798 µs of CPU per upload against 2,037 (h2load 2 connections x 8
 * streams). HTTP/1.1 clients' (64 KB batches before): 1,521 against 1,621 (8 connections).
 * 1 MiB batches instead of 256 KB (2026-12-05, rig, 3,000 uploads a run after 1,500 to warm, three
 * alternating pairs of fresh processes): HTTP/2 clients 1,300-1,323 µs against 1,387-1,487,
 * HTTP/1.1 clients 1,027-1,057 against 1,253-1,340 (write and writev calls per HTTP/2 upload,
 * strace: 14.6 → 11.9).
 * Each full batch also fills the origin socket's buffer, so undici pauses the body and the client's
 * stream until the drain; a 1 MiB body now meets that once at most, where it met it at every
 * 256 KB. 512 KB got half of the gain, and a longer wait (4 ms) nothing more. The price: an
 * upload to an origin slower than its client holds up to 1 MiB in that buffer before the client
 * is paused (it held 256 KB), on top of what the client's HTTP/2 window lets it send ahead.
 *
 * undici does not hand the socket to a dispatch handler, but it publishes it on its diagnostics
 * channel `undici:client:sendHeaders` ({ request, headers, socket }) right before it starts
 * writing a request, and its request object carries the body it was given. A body registered
 * with `batchOriginWrites` gets its socket there. Should undici stop carrying the body there,
 * bodies simply go out chunk by chunk again. The channel is subscribed only while a registered
 * body waits for its socket: with a subscriber undici also joins every HTTP/2 origin request's
 * fields into one string for the message (1.3 KB allocated and ~5k instructions per pass-through
 * request to an HTTP/2 origin, measured), and makes a message for every request.
 */

/** What may gather in the corked socket before it is sent (64 of the client's TLS records) ... */
export const BATCH_BYTES = 1024 * 1024;
/** ... and how long (ms) after its first chunk a smaller batch waits. */
const BATCH_WAIT_MS = 1;

const waiting = new WeakMap<object, (socket: Writable) => void>();
/** Bodies registered and not yet attached, ended or destroyed: the channel is subscribed while there are any. */
let registered = 0;

function onSendHeaders(message: unknown): void {
  const { request, socket } = message as { request?: { body?: unknown }; socket?: Writable };
  const body = request?.body;
  if (typeof body !== 'object' || body === null || socket === undefined) return;
  const attach = waiting.get(body);
  if (attach === undefined) return;
  attach(socket);
}

function register(body: object, attach: (socket: Writable) => void): () => void {
  waiting.set(body, attach);
  if (registered++ === 0) subscribe('undici:client:sendHeaders', onSendHeaders);
  // Once: the first release finds the body still waiting.
  return () => {
    if (waiting.delete(body) && --registered === 0) unsubscribe('undici:client:sendHeaders', onSendHeaders);
  };
}

export interface OriginWrites {
  /** Before a chunk of the body is handed on: corks the origin's socket if it is not already. */
  before(): void;
  /** After it was handed on: sends the batch once it is full. */
  after(): void;
  /** The body ended or was destroyed: sends what waits, and no longer waits for a socket. */
  end(): void;
}

/**
 * Registers `body` for batched writes. Until undici starts writing it to an origin the calls do
 * nothing.
 */
export function batchOriginWrites(body: object, waitMs = BATCH_WAIT_MS): OriginWrites {
  let socket: Writable | null = null;
  let corked = false;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (!corked) return;
    corked = false;
    clearTimeout(timer);
    socket!.uncork();
  };
  const release = register(body, (target) => {
    socket = target;
    release();
  });
  return {
    before() {
      if (corked || socket === null || socket.destroyed) return;
      corked = true;
      socket.cork();
      timer = setTimeout(flush, waitMs);
    },
    after() {
      // Full, or past the socket's mark: undici now waits for 'drain', which a corked socket never emits.
      if (corked && (socket!.writableLength >= BATCH_BYTES || socket!.writableNeedDrain)) flush();
    },
    end() {
      flush();
      release();
    },
  };
}
