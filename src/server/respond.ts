import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { Readable, type Writable } from 'node:stream';
import { hasNoContent } from '../http/status.ts';
import { disposeBody, isFileBody, type FileBody, type Reply, type Trailers } from '../pipeline/context.ts';
import { publishError, responseEndChannel, type RequestFacts } from '../observability/channels.ts';
import { cacheResult } from '../observability/cache-result.ts';
import { http } from './node-http.ts';
import { noteBodyBytes } from '../runtime/body-scavenge.ts';

/**
 * The one place that turns a Reply into bytes: the HTTP/2 core API (stream.respond) for h2
 * sessions, ServerResponse for HTTP/1.x. It also reports each response when it has finished or
 * was aborted (responseEndChannel: bytes sent, duration to the last byte, outcome) for the access
 * log and metrics; with no subscriber that costs one check.
 */

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2); Node throws on them (on TE
// unless it is "trailers", which means nothing in a response).
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

/**
 * Fields Node sends once at most over HTTP/2 (it throws on a second: ERR_HTTP2_HEADER_SINGLE_VALUE).
 * An origin that repeats one (two Content-Type lines, say) is wrong, and HTTP/1.1 passes the lines
 * on as they came; over HTTP/2 the first goes, as Node's own HTTP/1.1 parser keeps the first of
 * such duplicates. Node's list (kSingleValueHeaders in lib/internal/http2/util.js) without the
 * pseudo-fields: it checks request names in responses too.
 */
const H2_SINGLE_VALUE = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'age', 'content-encoding', 'content-language',
  'content-length', 'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expires',
  'last-modified', 'location', 'retry-after', 'tk', 'x-content-type-options',
  'access-control-request-method', 'authorization', 'dnt', 'from', 'host', 'if-match', 'if-modified-since',
  'if-none-match', 'if-range', 'if-unmodified-since', 'max-forwards', 'proxy-authorization', 'range', 'referer',
  'upgrade-insecure-requests', 'user-agent',
]);

/** The h2 header block: copied field by field (no `delete`, which turns the object into a slow dictionary). */
export function http2Headers(status: number, source: Readonly<OutgoingHttpHeaders>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { [h2.HTTP2_HEADER_STATUS]: status };
  for (const name in source) {
    const value = source[name];
    if (value !== undefined && !H2_FORBIDDEN.has(name)) headers[name] = Array.isArray(value) && H2_SINGLE_VALUE.has(name) ? value[0] : value;
  }
  return headers;
}

/**
 * The h2 header block as a flat list ([name, value, name, value, ...]), which `stream.respond`
 * takes as it is: from an object Node first copies every field into a fresh one (measured: a
 * 30 KB cache hit costs 10 % less CPU this way). A field with several values gives several
 * pairs. Node adds `date` to a list without one, so hand it a list of its own each time.
 */
export function http2HeaderList(status: number, source: Readonly<OutgoingHttpHeaders>): string[] {
  const list = [h2.HTTP2_HEADER_STATUS, String(status)];
  for (const name in source) {
    const value = source[name];
    if (value === undefined || H2_FORBIDDEN.has(name)) continue;
    if (!Array.isArray(value)) list.push(name, String(value));
    else if (H2_SINGLE_VALUE.has(name)) list.push(name, value[0]);
    else for (const v of value) list.push(name, v);
  }
  return list;
}

/**
 * source.pipe(destination) with the failure paths stream.pipeline would give, without its cost: pipeline
 * makes an AbortController per call and aborts it on finish, a DOMException per response (4 % of CPU
 * on the pass-through path). A failing source fails the response; a client that goes away stops the source.
 * `endOnceWritten`: the destination is ended only after its writes have reported back (see endWith).
 * `beforeEnd`: runs when the source has ended, before the destination is (HTTP/1.1 trailers).
 * A client that stops taking the body is the connection's send watch's business (limits.sendTimeout:
 * idle-watch.ts socketWritesWatched over HTTP/1.1, h2-stalls.ts over HTTP/2), which sees what is
 * queued for the client and not taken; nothing is watched here per response, and a source that
 * goes quiet (a slow origin) is not taken for a stalled client: nothing waits to be sent.
 */
function sendBody(source: Readable, destination: Writable, fail: (err: Error) => void, tally: Tally | null, endOnceWritten = false, beforeEnd?: () => void): void {
  // A source that failed or was destroyed before it ended, now or earlier, fails the response.
  const failed = () => { if (!destination.destroyed) fail(source.errored ?? new Error('body ended prematurely')); };
  if (source.errored || source.destroyed) return failed();
  source.once('close', () => { if (!source.readableEnded) failed(); });
  source.on('error', () => {}); // handled through 'close'
  destination.once('close', () => {
    if (!source.readableEnded) source.destroy();
  });
  destination.on('error', () => {}); // reported by the server's own listeners
  if (beforeEnd !== undefined) {
    source.pipe(destination, { end: false });
    source.once('end', () => {
      beforeEnd();
      destination.end();
    });
  } else if (!endOnceWritten) source.pipe(destination);
  else {
    source.pipe(destination, { end: false });
    // Writable runs write callbacks in order: this one reports back after every chunk before it.
    source.once('end', () => writeThenEnd(destination, NO_BYTES));
  }
  if (tally !== null) source.on('data', (chunk: Buffer) => { tally.bytes += chunk.length; });
}

const NO_BYTES = Buffer.alloc(0);

/** Why a response was cut off: its client took no byte of it for limits.sendTimeout. */
export const SEND_TIMEOUT = 'ERR_SEND_TIMEOUT';

/** The error a response its client stopped taking is destroyed with (counted as the client's doing, not logged). */
export const sendTimeoutError = (): Error => Object.assign(new Error('the client took no byte of the response for limits.sendTimeout'), { code: SEND_TIMEOUT });

/** Writes `chunk`, and ends `destination` once that write (and so every one before it) has reported back. */
function writeThenEnd(destination: Writable, chunk: Buffer): void {
  destination.write(chunk, (err) => {
    if (err == null) destination.end();
  });
}

/** What the end report needs to know about a body while it is sent. */
export interface Tally { bytes: number; failed: boolean }

/**
 * Reports the response once its stream or ServerResponse closes: finished, or aborted with what
 * was buffered. An h2 stream reset by the client also reads as writableFinished (its destroy ends
 * the writable side): there `aborted` and the RST code tell.
 */
export function reportOnClose(destination: Writable, request: RequestFacts, reply: Reply, tally: Tally): void {
  // 'close' comes once; on() spares the wrapper once() makes on every response. The listener takes
  // itself off: an HTTP/2 stream can outlive its request in V8's eyes (stream-listeners.ts), and
  // must not keep the request and the reply with it.
  const onClose = () => {
    destination.removeListener('close', onClose);
    const h2stream = destination as Partial<ServerHttp2Stream>;
    const reset = h2stream.rstCode !== undefined && (h2stream.aborted === true || h2stream.rstCode !== h2.NGHTTP2_NO_ERROR);
    const finished = destination.writableFinished && !reset && !tally.failed;
    responseEndChannel.publish({
      request,
      status: reply.status,
      headers: reply.headers,
      bytes: Math.max(0, tally.bytes - (finished ? 0 : destination.writableLength)),
      durationMs: Number(process.hrtime.bigint() - request.startedAt) / 1e6,
      outcome: tally.failed ? 'body-error' : finished ? 'ok' : 'client-abort',
      cache: cacheResult(reply.headers['cache-status']),
    });
  };
  destination.on('close', onClose);
}

/** A response that could not be sent at all (the client was gone first). */
export function reportUnsent(request: RequestFacts, reply: Reply): void {
  responseEndChannel.publish({
    request, status: reply.status, headers: reply.headers, bytes: 0,
    durationMs: Number(process.hrtime.bigint() - request.startedAt) / 1e6, outcome: 'client-abort',
    cache: cacheResult(reply.headers['cache-status']),
  });
}

/** A file body as a stream that closes its handle when done, failed or destroyed. */
function fileStream(body: FileBody): Readable {
  if (body.length === 0) {
    void body.handle.close().catch(() => {});
    return Readable.from([]);
  }
  // 256 KB reads: a quarter of the syscalls and callbacks of the 64 KB default for large files.
  const stream = body.handle.createReadStream({ start: body.offset, end: body.offset + body.length - 1, autoClose: true, highWaterMark: 256 * 1024 });
  // Each read is a fresh Buffer (runtime/body-scavenge.ts). Listening before the pipe is attached
  // loses nothing: the first read reports back on a later turn.
  return stream.on('data', countBodyBytes);
}

const countBodyBytes = (chunk: Buffer | string) => noteBodyBytes(chunk.length);

export const END_STREAM = { endStream: true } as const;

/**
 * A header block Node refuses (a status or field the protocol cannot carry: from a record stored
 * by another version, say, or a check missed) costs that response a bare 502 in its place, never
 * the process: a throw here would be an unhandled rejection in the listener. The field checks
 * Node makes anyway decide; none is repeated here on the hot path (a try costs nothing when
 * nothing throws).
 */
export function respondOrFail(stream: ServerHttp2Stream, headers: string[], options: typeof END_STREAM | typeof WAIT_FOR_TRAILERS | undefined, status: number): boolean {
  try {
    stream.respond(headers, options);
    return true;
  } catch (error) {
    publishError({ ctx: null, error, where: `h2 response ${status}` });
    if (!stream.destroyed && !stream.headersSent) stream.respond([h2.HTTP2_HEADER_STATUS, '502', 'content-length', '0'], END_STREAM);
    return false;
  }
}

/** HTTP/1.1's writeHead, with the same fallback as respondOrFail. */
function writeHeadOrFail(res: ServerResponse, reply: Reply): boolean {
  try {
    res.writeHead(reply.status, reply.headers);
    return true;
  } catch (error) {
    publishError({ ctx: null, error, where: `HTTP/1.1 response ${reply.status}` });
    if (res.headersSent) res.destroy();
    else res.writeHead(502, { 'content-length': '0' }).end();
    return false;
  }
}

/**
 * Sends `body` and ends the stream. Once the client's side of the stream has ended and been read
 * (a request with a body), the end we send closes the stream, and Node destroys it before the
 * write that carried the end reports back; its Writable then builds an ERR_STREAM_DESTROYED,
 * stack trace and all, whether anything waits for it or not (lib/internal/streams/writable.js
 * errorBuffer). Ending only once the body's write has reported back costs an empty DATA frame
 * and spares that: a bare node:http2 server answering after the request's end, 26 → 21 µs of CPU
 * per GET and 1,605 → 1,540 per 1 MiB upload (2026-12-05). A stream whose request side was not
 * read to its end (a GET's: Outpost never reads it) is ended with its body, as before. A streamed
 * body is ended the same way (sendBody's `endOnceWritten`).
 */
function endWith(stream: ServerHttp2Stream, body: Buffer): void {
  if (!stream.readableEnded) {
    stream.end(body);
    return;
  }
  writeThenEnd(stream, body);
}

export function respondHttp2(stream: ServerHttp2Stream, method: string, reply: Reply, request?: RequestFacts): void {
  const tally: Tally | null = request !== undefined && responseEndChannel.hasSubscribers ? { bytes: 0, failed: false } : null;
  if (stream.destroyed || stream.headersSent) {
    disposeBody(reply.body);
    if (tally !== null && !stream.headersSent) reportUnsent(request!, reply);
    return;
  }
  const headers = http2HeaderList(reply.status, reply.headers);
  const body = reply.body;
  if (tally !== null) reportOnClose(stream, request!, reply, tally);
  // Trailers, when the origin may send some: a body in memory has ended, so whether any came is known.
  const trailers = reply.trailers === undefined || (Buffer.isBuffer(body) && reply.trailers.fields === null) ? undefined : reply.trailers;
  // An empty body with no trailers ends with the header block (gRPC's "trailers-only" answer, whose
  // status is in it, must come so: one HEADERS frame that ends the stream).
  if (body === null || hasNoContent(method, reply.status) || (trailers === undefined && Buffer.isBuffer(body) && body.length === 0)) {
    disposeBody(reply.body);
    respondOrFail(stream, headers, END_STREAM, reply.status);
  } else if (!respondOrFail(stream, headers, trailers === undefined ? undefined : WAIT_FOR_TRAILERS, reply.status)) {
    disposeBody(body);
  } else {
    if (trailers !== undefined) sendTrailersAtEnd(stream, trailers);
    if (Buffer.isBuffer(body)) sendWholeHttp2(stream, body, tally);
    // Files go through a read stream too: respondWithFD plus closing the handle when a client
    // resets mid-transfer crashed Node 24 (SIGSEGV, reproduced without Outpost code: the script is
    // in docs/performance.md, Large files over HTTP/2); a read stream closes its handle itself and
    // measured faster for 1 MB files.
    else sendHttp2Stream(stream, isFileBody(body) ? fileStream(body) : body, tally);
  }
}

const WAIT_FOR_TRAILERS = { waitForTrailers: true } as const;

/**
 * The origin's trailer fields after the body's last DATA frame (RFC 9113 §8.1: a HEADERS frame
 * that ends the stream), as `stream.respond(..., WAIT_FOR_TRAILERS)` asks for: without them the
 * stream would never end, so an empty block goes when none came, and a block Node refuses (a
 * pseudo-field, a connection field) closes the stream instead. gRPC's status travels this way.
 */
function sendTrailersAtEnd(stream: ServerHttp2Stream, trailers: Trailers): void {
  stream.once('wantTrailers', () => {
    const fields = trailerFields(trailers);
    try {
      stream.sendTrailers(fields);
    } catch (error) {
      publishError({ ctx: null, error, where: 'h2 trailers' });
      stream.close();
    }
  });
}

/** The origin's trailer fields that may go on: none of the connection's own, no pseudo-field. */
function trailerFields(trailers: Trailers): OutgoingHttpHeaders {
  const fields: OutgoingHttpHeaders = {};
  const from = trailers.fields;
  if (from !== null) {
    for (const name in from) if (!H2_FORBIDDEN.has(name) && name.charCodeAt(0) !== 58 /* ':' */) fields[name] = from[name];
  }
  return fields;
}

/** A body that is all in memory, after the headers: one write (h2-stalls.ts watches its progress). */
export function sendWholeHttp2(stream: ServerHttp2Stream, body: Buffer, tally: Tally | null): void {
  if (tally !== null) tally.bytes = body.length;
  endWith(stream, body);
}

/**
 * A streamed body, after the headers. One that fails half-way must not look complete: the stream
 * is reset (close(code) would first end it cleanly; destroy(err) resets it with INTERNAL_ERROR).
 */
function sendHttp2Stream(stream: ServerHttp2Stream, body: Readable, tally: Tally | null): void {
  sendBody(body, stream, (err) => {
    if (tally !== null) tally.failed = true;
    stream.destroy(err);
  }, tally, stream.readableEnded);
}

export function respondHttp1(res: ServerResponse, method: string, reply: Reply, request?: RequestFacts): void {
  const tally: Tally | null = request !== undefined && responseEndChannel.hasSubscribers ? { bytes: 0, failed: false } : null;
  if (res.destroyed || res.headersSent) {
    disposeBody(reply.body);
    if (tally !== null && !res.headersSent) reportUnsent(request!, reply);
    return;
  }
  if (tally !== null) reportOnClose(res, request!, reply, tally);
  const body = reply.body;
  // Trailers, when the origin may send some (RFC 9112 §7.1.2: after the last chunk): a body in
  // memory has ended, so whether any came is known; it then goes chunked to carry them, and so does
  // a streamed one, whose trailers come at its end (an HTTP/2 upstream may give a length too: kept,
  // it would frame the response without chunks and its trailers were lost). Not to an HTTP/1.0
  // client (no chunks: Node frames its response by closing, or by its length).
  const trailers = reply.trailers === undefined || !res.useChunkedEncodingByDefault || hasNoContent(method, reply.status) || (Buffer.isBuffer(body) && reply.trailers.fields === null) ? undefined : reply.trailers;
  if (!writeHeadOrFail(res, trailers === undefined ? reply : chunked(reply))) {
    disposeBody(body);
  } else if (body === null || hasNoContent(method, reply.status)) {
    disposeBody(reply.body);
    res.end();
  } else if (Buffer.isBuffer(body)) {
    if (tally !== null) tally.bytes = body.length;
    if (trailers !== undefined) addTrailersHttp1(res, trailers);
    res.end(body);
  } else {
    // A truncated body must not end with a clean chunk terminator: drop the connection.
    sendBody(isFileBody(body) ? fileStream(body) : body, res, (err) => {
      if (tally !== null) tally.failed = true;
      res.destroy(err);
    }, tally, false, trailers === undefined ? undefined : () => addTrailersHttp1(res, trailers));
  }
}

/** `reply` framed with chunks (its length dropped), for trailers to follow its body. */
function chunked(reply: Reply): Reply {
  const headers: OutgoingHttpHeaders = { 'transfer-encoding': 'chunked' };
  for (const name in reply.headers) if (name !== 'content-length') headers[name] = reply.headers[name];
  return { ...reply, headers };
}

/** The origin's trailers for the last chunk. A field Node refuses drops them all. */
function addTrailersHttp1(res: ServerResponse, trailers: Trailers): void {
  if (trailers.fields === null) return;
  try {
    res.addTrailers(trailerFields(trailers));
  } catch (error) {
    publishError({ ctx: null, error, where: 'HTTP/1.1 trailers' });
  }
}

/**
 * Interim responses (RFC 9110 §15.2), in practice 103 Early Hints forwarded from the origin.
 * Every 1xx is sent on both protocols except 101, which switches protocols instead of preceding a
 * final response (and is forbidden in HTTP/2, RFC 9113 §8.6). Whether a status should reach the
 * client at all (100 Continue does not) is the caller's policy. Both writers never throw: a hint
 * that cannot be sent is dropped, and the final response goes out as if it never came.
 */
type InterimHeaders = Readonly<Record<string, string | string[]>>;

const isInterim = (status: number) => status >= 100 && status < 200 && status !== 101;

/**
 * HTTP/2: a HEADERS frame ahead of the final one (RFC 9113 §8.1). Node throws once the final headers
 * went out (ERR_HTTP2_HEADERS_AFTER_RESPOND) or the stream is closed (ERR_HTTP2_INVALID_STREAM):
 * checked first. Connection-specific fields are left out as in a final response; a field Node still
 * refuses (an invalid name, a repeated single-value field) costs the hint, not the response.
 */
export function informationalHttp2(stream: ServerHttp2Stream, status: number, headers: InterimHeaders): void {
  if (stream.destroyed || stream.closed || stream.headersSent || !isInterim(status)) return;
  try {
    stream.additionalHeaders(http2Headers(status, headers));
  } catch (error) {
    publishError({ ctx: null, error, where: `h2 interim response ${status}` });
  }
}

/**
 * ServerResponse.writeInformation (Node 24.18) sends any 1xx; before it, writeEarlyHints sent only
 * 103 with a Link field, so older runtimes forward just that. Decided once, at load.
 */
const writeInformation: (res: ServerResponse, status: number, headers: InterimHeaders) => void =
  typeof http.ServerResponse.prototype.writeInformation === 'function'
    ? (res, status, headers) => res.writeInformation(status, headers as OutgoingHttpHeaders)
    : (res, status, headers) => { if (status === 103) res.writeEarlyHints(headers as Record<string, string | string[]>); };

/**
 * HTTP/1.1: an interim status line and fields ahead of the final response. The caller makes sure
 * the client speaks HTTP/1.1: "A server MUST NOT send a 1xx response to an HTTP/1.0 client"
 * (RFC 9110 §15.2). Once the final header is written (headersSent) another status line would land
 * in the body; Node throws for it (ERR_HTTP_HEADERS_SENT), and drops writes on a destroyed socket.
 */
export function informationalHttp1(res: ServerResponse, status: number, headers: InterimHeaders): void {
  if (res.destroyed || res.headersSent || !isInterim(status)) return;
  try {
    writeInformation(res, status, headers);
  } catch (error) {
    publishError({ ctx: null, error, where: `HTTP/1.1 interim response ${status}` });
  }
}
