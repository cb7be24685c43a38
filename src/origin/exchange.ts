import type { Duplex, Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { errors as undiciErrors } from './undici.ts';
import { originError } from '../errors.ts';
import type { Context, Reply, Trailers } from '../pipeline/context.ts';
import { unwatchAbort, watchAbort } from '../pipeline/abort-watch.ts';
import type { QueueDeadline, Queued } from './queue-deadline.ts';
import { OriginBody, type SpillOptions } from './origin-body.ts';

export type { SpillOptions } from './origin-body.ts';
import { noteBodyBytes } from '../runtime/body-scavenge.ts';

/**
 * One request to an upstream and its response as a Reply, through undici's `dispatch` with a
 * handler of our own instead of `request()`: no promise, Readable and abort wiring that undici
 * makes for every response only to have them copied into ours.
 *
 * - A response that has arrived whole by the end of the event-loop turn that brought its header
 *   (an API's JSON, a small page, a 304), or within WHOLE_WAIT_MS when it declares a small length,
 *   resolves with its body as a Buffer: the client then gets header and body in one write, with
 *   no stream between them. A slow body streams as it arrives, as before.
 * - Every other body streams: a Readable fed from undici's callbacks with backpressure (pause when
 *   it is full, resume when read); destroying it aborts the request.
 */

export interface ExchangeRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Readable | undefined;
  /** The client went away: the exchange is aborted (RequestAbortedError). */
  readonly signal: AbortSignal | undefined;
  /**
   * An interim (1xx) response, told as `onInfo(infoTo, status, headers)`: one function for every
   * request rather than a closure per request over its context; must not throw.
   */
  readonly onInfo: ((to: Context, status: number, headers: Record<string, string | string[]>) => void) | undefined;
  /** The client's context, for `onInfo`. */
  readonly infoTo?: Context;
  /** The response's fields as the client gets them (one copy: hop-by-hop removed, Via added). */
  readonly responseHeaders: (headers: Record<string, string | string[]>) => Reply['headers'];
  /**
   * Given when every connection to the upstream is busy, so that the request waits in undici's
   * queue, where none of undici's timeouts runs (they start when it is sent): unless it has been
   * sent `ms` after it was queued, it fails with a 504 (see `QueueDeadline`).
   */
  readonly queued?: QueueDeadline;
  /** Where a body its client is slow to take goes meanwhile; without, the client paces the origin. */
  readonly spill?: SpillOptions;
  /**
   * The protocol to ask the origin to switch to (`Upgrade`, RFC 9110 §7.8; undici sends it with
   * `Connection: upgrade`). A 101 naming it resolves with its connection as the reply's `tunnel`;
   * any other answer is an ordinary response.
   */
  readonly upgrade?: string;
}

/**
 * Interim (1xx) responses passed on per request: an origin may send any number (RFC 9110 §15.2
 * sets none), and each costs the client a frame or a status line to read; a few 103s with their
 * Link fields are what clients use. Past this many the rest are dropped, the final response not.
 */
const MAX_INTERIM = 8;

/** A body declared this small may be waited for whole ... */
const WHOLE_LIMIT = 64 * 1024;
/** ... for this long (ms) after its header, before it streams. */
const WHOLE_WAIT_MS = 2;

type Controller = Dispatcher.DispatchController;

/** The dispatch handler of one exchange: an object with methods rather than a closure per callback. */
class Exchange implements Dispatcher.DispatchHandler, Queued {
  readonly #request: ExchangeRequest;
  readonly #resolve: (reply: Reply) => void;
  readonly #reject: (err: unknown) => void;
  #controller: Controller | null = null;
  /** The reason the client's abort gave before undici started the request. */
  #abortedEarly: unknown = null;
  #settled = false;
  #status = 0;
  #headers: Reply['headers'] | null = null;
  /**
   * The whole-body case (the body is gathered until it ends or streams): its chunks so far, the
   * first in a field of its own (most bodies are one chunk: no array per response).
   */
  #whole = false;
  #first: Buffer | null = null;
  #more: Buffer[] | null = null;
  #received = 0;
  #stream: OriginBody | null = null;
  /** The declared length is at most WHOLE_LIMIT. */
  #small = false;
  /** The deadline this exchange waits for a connection under (`expireInQueue`), until it is sent; the links are the deadline's. */
  #queue: QueueDeadline | null = null;
  queuedSince = 0;
  queuedBefore: Queued | null = null;
  queuedAfter: Queued | null = null;
  /** Interim responses told so far (MAX_INTERIM). */
  #interim = 0;
  /** Where the response's trailers go, when its header announced some (`announcesTrailers`). */
  #trailers: Trailers | null = null;

  constructor(request: ExchangeRequest, resolve: (reply: Reply) => void, reject: (err: unknown) => void) {
    this.#request = request;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** The client's abort signal, as an EventListener object. */
  handleEvent(): void {
    const reason = new undiciErrors.RequestAbortedError();
    if (this.#controller === null) this.#abortedEarly = reason;
    else this.#controller.abort(reason);
  }

  #detach(): void {
    const signal = this.#request.signal;
    if (signal !== undefined) unwatchAbort(signal, this);
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
    this.#leaveQueue();
    if (this.#abortedEarly !== null) controller.abort(this.#abortedEarly as Error);
  }

  /** Fails the request with a 504 unless undici has started it within `deadline.ms` (queue-deadline.ts). */
  expireInQueue(deadline: QueueDeadline): void {
    this.#queue = deadline;
    deadline.join(this);
  }

  #leaveQueue(): void {
    if (this.#queue === null) return;
    this.#queue.leave(this);
    this.#queue = null;
  }

  /** The queue deadline passed with the request still in undici's queue. */
  expireQueued(): void {
    this.#queue = null;
    if (this.#controller !== null || this.#settled) return;
    const error = originError.gatewayTimeout('Gateway Timeout: no connection to the origin became free in time');
    // Still in undici's queue: it is dropped the moment undici starts it (onRequestStart).
    this.#abortedEarly = error;
    this.#settled = true;
    this.#detach();
    this.#reject(error);
  }

  onResponseStart(controller: Controller, statusCode: number, headers: Record<string, string | string[]>): void {
    // undici keeps the raw header block on the controller (a Buffer per name and value, views of the
    // socket's read) for as long as the exchange holds the controller; only the parsed fields are
    // read here. Under 1,000 requests in flight they outlived V8's young generation: let go, ~0.9 KB
    // less promoted per pass-through response (h2load 100 x 10, --trace-gc-nvp: 4.5-4.9 KB -> 3.5-3.7).
    controller.rawHeaders = null;
    if (statusCode < 200) {
      const request = this.#request;
      if (request.onInfo !== undefined && request.infoTo !== undefined && ++this.#interim <= MAX_INTERIM) request.onInfo(request.infoTo, statusCode, headers);
      return;
    }
    // RFC 9110 §15: "Values outside the range 100..599 are invalid". HTTP/2 cannot carry one (Node
    // throws), a cache must not keep one, and the client is owed a gateway's answer: 502, as nginx
    // gives for an upstream's invalid status line.
    if (statusCode > 599) {
      controller.abort(originError.badGateway(`Bad Gateway: the origin sent an invalid status code (${statusCode})`));
      return;
    }
    // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response with a
    // status code of ... 204": HTTP/2 clients reset the stream over one (nghttp2: malformed), and
    // an HTTP/1.1 client could wait for a body that never comes.
    if (statusCode === 204 && headers['content-length'] !== undefined) delete headers['content-length'];
    this.#status = statusCode;
    this.#trailers = announcesTrailers(headers) ? { fields: null } : null;
    this.#headers = this.#request.responseHeaders(headers);
    this.#whole = true;
    this.#controller = controller;
    const length = headers['content-length'];
    this.#small = typeof length === 'string' && length.length <= 6 && Number(length) <= WHOLE_LIMIT;
    // Until this turn of the event loop has read what was waiting (the check phase): a response
    // whose body came with its header has ended by then and goes out whole.
    atCheckPhase(this);
  }

  /** The check phase after the header came: a body still on its way streams, or gets a moment more. */
  checkPhase(): void {
    if (!this.#whole || this.#settled) return; // ended, or failed
    // A small body that is still on its way (an HTTP/2 origin's DATA comes after its HEADERS)
    // gets a moment more; any other streams from here on.
    if (this.#small) setTimeout(() => this.#streamUnlessEnded(), WHOLE_WAIT_MS).unref();
    else this.#streamUnlessEnded();
  }

  #streamUnlessEnded(): void {
    if (!this.#whole || this.#settled) return; // ended, or failed
    const first = this.#first;
    const more = this.#more;
    this.#stopGathering();
    // What came before anyone reads the body is no sign of a slow client: it waits in memory,
    // the origin meanwhile; spilling starts only with what comes after.
    const stream = this.#bodyOf(first, more, this.#request.spill);
    this.#stream = stream;
    stream.once('close', () => this.#detach());
    if (stream.readableLength >= stream.readableHighWaterMark) this.#controller!.pause();
    this.#settled = true;
    this.#resolve(this.#reply(stream));
  }

  /** The response with `body`, and where its trailers will be when it has some. */
  #reply(body: Reply['body']): Reply {
    const reply: Reply = { status: this.#status, headers: this.#headers!, body };
    if (this.#trailers !== null) reply.trailers = this.#trailers;
    return reply;
  }

  /** Out of the whole-body case: what it gathered is let go (sent on, or dropped). */
  #stopGathering(): void {
    this.#whole = false;
    this.#first = null;
    this.#more = null;
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    noteBodyBytes(chunk.length);
    if (this.#whole) {
      if (this.#first === null) this.#first = chunk;
      else (this.#more ??= []).push(chunk);
      this.#received += chunk.length;
    } else {
      this.#stream?.receive(chunk);
    }
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.#trailers !== null && trailers != null) {
      for (const _ in trailers) {
        this.#trailers.fields = trailers as Record<string, string | string[]>;
        break;
      }
    }
    if (this.#whole) {
      const first = this.#first;
      const more = this.#more;
      this.#stopGathering();
      this.#detach();
      this.#settled = true;
      this.#resolve(this.#reply(first === null ? Buffer.alloc(0) : more === null ? first : this.#joined(first, more)));
    } else {
      this.#stream?.complete();
    }
  }

  /**
   * A body that came in several chunks within one turn: one Buffer when small, else its chunks as
   * an ended stream. Copying a large one into a fresh Buffer costs its pages' first touch (a 1 MiB
   * pass-through response: ~460 µs of Buffer.concat per response, and the collections the
   * extra megabyte brings, on this kind of host); the chunks go to the client as they are.
   */
  #joined(first: Buffer, more: Buffer[]): Buffer | Readable {
    if (this.#received <= WHOLE_LIMIT) return Buffer.concat([first, ...more], this.#received);
    const stream = this.#bodyOf(first, more, undefined);
    stream.complete();
    return stream;
  }

  /** The streamed body, holding the chunks gathered so far. */
  #bodyOf(first: Buffer | null, more: Buffer[] | null, spill: SpillOptions | undefined): OriginBody {
    const stream = new OriginBody(this.#controller!, spill);
    stream.on('error', () => {}); // whoever pipes it handles its errors; unread it must not crash
    if (first !== null) stream.push(first);
    if (more !== null) for (const chunk of more) stream.push(chunk);
    return stream;
  }

  /**
   * An HTTP/1.1 upstream's 101 (undici's parser takes only a 101 as an upgrade, RFC 9110
   * §15.2.2): the origin's connection is the reply's. One that names another protocol than the
   * one asked for is no answer to this request: 502, as nginx gives for an upstream's invalid
   * header. An HTTP/2 upstream's answer to the extended CONNECT undici sends it instead (RFC 8441
   * §4) comes here whatever its status: see `#extendedConnectAnswer`.
   */
  onRequestUpgrade(_controller: Controller, statusCode: number, headers: Record<string, string | string[]>, socket: Duplex): void {
    this.#detach();
    const asked = this.#request.upgrade;
    if (statusCode !== 101 && !this.#settled && asked !== undefined) return this.#extendedConnectAnswer(statusCode, headers, socket);
    const named = headers.upgrade;
    if (this.#settled || asked === undefined || typeof named !== 'string' || named.trim().toLowerCase() !== asked) {
      socket.destroy();
      if (!this.#settled) {
        this.#settled = true;
        this.#reject(originError.badGateway(`Bad Gateway: the origin switched to ${JSON.stringify(String(named).slice(0, 40))}, not ${asked}`));
      }
      return;
    }
    this.#settled = true;
    // A 1xx carries no content (RFC 9110 §15.2): nothing for the decoder or the compressor to do.
    const fields = this.#request.responseHeaders(headers);
    delete fields['content-length'];
    delete fields['content-encoding'];
    delete fields['transfer-encoding'];
    this.#resolve({ status: statusCode, headers: fields, body: null, tunnel: socket });
  }

  /**
   * RFC 8441 §5: a 2xx to the extended CONNECT opens the tunnel, the stream carries it; it is
   * told as the 101 an HTTP/1.1 upstream would have sent (`Upgrade` naming what was asked), so
   * that the client's side has one shape to answer. HTTP/2 has no Sec-WebSocket-Accept: the one
   * the client's key is owed is the proxy's to add (proxy.ts). Any other status is an ordinary
   * response, its body on the stream, to which nothing more is sent.
   */
  #extendedConnectAnswer(statusCode: number, headers: Record<string, string | string[]>, stream: Duplex): void {
    this.#settled = true;
    const fields = this.#request.responseHeaders(headers);
    if (statusCode >= 200 && statusCode < 300) {
      delete fields['content-length'];
      delete fields['content-encoding'];
      fields.upgrade = this.#request.upgrade!;
      this.#resolve({ status: 101, headers: fields, body: null, tunnel: stream });
      return;
    }
    stream.on('error', () => {}); // whoever reads it handles its errors; unread it must not crash
    stream.end();
    this.#resolve({ status: statusCode, headers: fields, body: stream });
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    this.#detach();
    this.#leaveQueue();
    this.#stopGathering();
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(err);
    } else {
      this.#stream?.destroy(err);
    }
  }
}

/**
 * Whether a response's header says trailer fields may follow its body: a `Trailer` field (RFC 9110
 * §6.6.2), or gRPC's content, whose status always comes as trailers (gRPC over HTTP/2).
 */
function announcesTrailers(headers: Record<string, string | string[]>): boolean {
  if (headers.trailer !== undefined) return true;
  const type = headers['content-type'];
  return typeof type === 'string' && type.startsWith('application/grpc');
}

/**
 * The exchanges whose header came in this turn of the event loop, looked at again in its check
 * phase: one Immediate for all of them rather than an Immediate and a closure per response.
 */
let waiting: Exchange[] = [];
function atCheckPhase(exchange: Exchange): void {
  if (waiting.push(exchange) === 1) setImmediate(runCheckPhase);
}
function runCheckPhase(): void {
  const due = waiting;
  waiting = [];
  for (const exchange of due) exchange.checkPhase();
}

/** Sends the request; resolves with the response once its header (or, when small, its whole body) is in. */
export function exchange(dispatcher: Dispatcher, request: ExchangeRequest): Promise<Reply> {
  const signal = request.signal;
  if (signal?.aborted) return Promise.reject(new undiciErrors.RequestAbortedError());
  return new Promise<Reply>((resolve, reject) => {
    const handler = new Exchange(request, resolve, reject);
    if (signal !== undefined) watchAbort(signal, handler);
    if (request.queued !== undefined) handler.expireInQueue(request.queued);
    dispatcher.dispatch({
      method: request.method as Dispatcher.HttpMethod,
      path: request.path,
      headers: request.headers,
      body: request.body ?? null,
      upgrade: request.upgrade,
    }, handler);
  });
}
