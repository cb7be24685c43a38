import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { Readable, type Writable } from 'node:stream';
import { disposeBody, isFileBody, type FileBody, type Reply } from '../pipeline/context.ts';

/**
 * The one place that turns a Reply into bytes: the HTTP/2 core API (stream.respond) for h2
 * sessions, ServerResponse for HTTP/1.x.
 */

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2); Node throws on them.
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** The h2 header block: copied field by field (no `delete`, which turns the object into a slow dictionary). */
function http2Headers(reply: Reply): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { [h2.HTTP2_HEADER_STATUS]: reply.status };
  const source = reply.headers;
  for (const name in source) {
    const value = source[name];
    if (value !== undefined && !H2_FORBIDDEN.has(name)) headers[name] = value;
  }
  return headers;
}

/** HEAD and statuses that never carry content (RFC 9110 §6.4.1). */
const hasNoContent = (method: string, status: number) =>
  method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);

/**
 * source.pipe(destination) with the failure paths stream.pipeline would give, without its cost: pipeline
 * makes an AbortController per call and aborts it on finish, a DOMException per response (4 % of CPU
 * on the pass-through path). A failing source fails the response; a client that goes away stops the source.
 */
function sendBody(source: Readable, destination: Writable, fail: (err: Error) => void): void {
  // A source that failed or was destroyed before it ended, now or earlier, fails the response.
  const failed = () => { if (!destination.destroyed) fail(source.errored ?? new Error('body ended prematurely')); };
  if (source.errored || source.destroyed) return failed();
  source.once('close', () => { if (!source.readableEnded) failed(); });
  source.on('error', () => {}); // handled through 'close'
  destination.once('close', () => { if (!source.readableEnded) source.destroy(); });
  destination.on('error', () => {}); // reported by the server's own listeners
  source.pipe(destination);
}

/** A file body as a stream that closes its handle when done, failed or destroyed. */
function fileStream(body: FileBody): Readable {
  if (body.length === 0) {
    void body.handle.close().catch(() => {});
    return Readable.from([]);
  }
  // 256 KB reads: a quarter of the syscalls and callbacks of the 64 KB default for large files.
  return body.handle.createReadStream({ start: body.offset, end: body.offset + body.length - 1, autoClose: true, highWaterMark: 256 * 1024 });
}

export function respondHttp2(stream: ServerHttp2Stream, method: string, reply: Reply): void {
  if (stream.destroyed || stream.headersSent) {
    disposeBody(reply.body);
    return;
  }
  const headers = http2Headers(reply);
  const body = reply.body;
  if (body === null || hasNoContent(method, reply.status)) {
    disposeBody(reply.body);
    stream.respond(headers, { endStream: true });
  } else if (Buffer.isBuffer(body)) {
    stream.respond(headers);
    stream.end(body);
  } else {
    stream.respond(headers);
    // Files go through a read stream too: respondWithFD plus closing the handle when a client
    // resets mid-transfer crashed Node 24 (SIGSEGV, reproduced without Outpost code); a read
    // stream closes its handle itself and measured faster for 1 MB files.
    // A body that fails half-way must not look complete: reset the stream.
    // (close(code) would first end the stream cleanly; destroy(err) resets it with INTERNAL_ERROR.)
    sendBody(isFileBody(body) ? fileStream(body) : body, stream, (err) => stream.destroy(err));
  }
}

export function respondHttp1(res: ServerResponse, method: string, reply: Reply): void {
  if (res.destroyed || res.headersSent) {
    disposeBody(reply.body);
    return;
  }
  res.writeHead(reply.status, reply.headers);
  const body = reply.body;
  if (body === null || hasNoContent(method, reply.status)) {
    disposeBody(reply.body);
    res.end();
  } else if (Buffer.isBuffer(body)) {
    res.end(body);
  } else {
    // A truncated body must not end with a clean chunk terminator: drop the connection.
    sendBody(isFileBody(body) ? fileStream(body) : body, res, (err) => res.destroy(err));
  }
}
