import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { pipeline, Readable } from 'node:stream';
import { isFileBody, type FileBody, type Reply } from '../pipeline/context.ts';

/**
 * The one place that turns a Reply into bytes: the HTTP/2 core API (stream.respond) for h2
 * sessions, ServerResponse for HTTP/1.x.
 */

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2); Node throws on them.
const H2_FORBIDDEN = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

/** HEAD and statuses that never carry content (RFC 9110 §6.4.1). */
const hasNoContent = (method: string, status: number) =>
  method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);

function discardBody(reply: Reply): void {
  const body = reply.body;
  if (body === null || Buffer.isBuffer(body)) return;
  if (isFileBody(body)) void body.handle.close().catch(() => {});
  else {
    // An origin body destroyed unread may still report its abort: that is not a crash.
    body.on('error', () => {});
    body.destroy();
  }
}

/** A file body as a stream that closes its handle when done, failed or destroyed. */
function fileStream(body: FileBody): Readable {
  if (body.length === 0) {
    void body.handle.close().catch(() => {});
    return Readable.from([]);
  }
  return body.handle.createReadStream({ start: body.offset, end: body.offset + body.length - 1, autoClose: true });
}

export function respondHttp2(stream: ServerHttp2Stream, method: string, reply: Reply): void {
  if (stream.destroyed || stream.headersSent) {
    discardBody(reply);
    return;
  }
  const headers: OutgoingHttpHeaders = { ...reply.headers, [h2.HTTP2_HEADER_STATUS]: reply.status };
  for (const name of H2_FORBIDDEN) if (name in headers) delete headers[name];
  const body = reply.body;
  if (body === null || hasNoContent(method, reply.status)) {
    discardBody(reply);
    stream.respond(headers, { endStream: true });
  } else if (Buffer.isBuffer(body)) {
    stream.respond(headers);
    stream.end(body);
  } else {
    stream.respond(headers);
    // Files go through a read stream too: respondWithFD plus closing the handle when a client
    // resets mid-transfer crashed Node 24 (SIGSEGV, reproduced without Outpost code); a read
    // stream closes its handle itself and measured faster for 1 MB files.
    const source = isFileBody(body) ? fileStream(body) : body;
    pipeline(source, stream, (err) => {
      // A body that fails half-way must not look complete: reset the stream.
      if (err && !stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    });
  }
}

export function respondHttp1(res: ServerResponse, method: string, reply: Reply): void {
  if (res.destroyed || res.headersSent) {
    discardBody(reply);
    return;
  }
  res.writeHead(reply.status, reply.headers);
  const body = reply.body;
  if (body === null || hasNoContent(method, reply.status)) {
    discardBody(reply);
    res.end();
  } else if (Buffer.isBuffer(body)) {
    res.end(body);
  } else {
    const source = isFileBody(body) ? fileStream(body) : body;
    pipeline(source, res, (err) => {
      // A truncated body must not end with a clean chunk terminator: drop the connection.
      if (err && !res.destroyed) res.destroy(err);
    });
  }
}
