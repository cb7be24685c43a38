import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import { pipeline } from 'node:stream';
import { isFileBody, type Reply } from '../pipeline/context.ts';

/**
 * The one place that turns a Reply into bytes: the HTTP/2 core API (stream.respond,
 * respondWithFD) for h2 sessions, ServerResponse for HTTP/1.x.
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
  else body.destroy();
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
  } else if (isFileBody(body)) {
    const close = () => void body.handle.close().catch(() => {});
    stream.once('close', close);
    stream.respondWithFD(body.handle, headers, { offset: body.offset, length: body.length });
  } else {
    stream.respond(headers);
    pipeline(body, stream, (err) => {
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
    const source = isFileBody(body)
      ? body.handle.createReadStream({ start: body.offset, end: body.offset + body.length - 1, autoClose: true })
      : body;
    if (isFileBody(body) && body.length === 0) {
      source.destroy();
      res.end();
      return;
    }
    pipeline(source, res, (err) => {
      // A truncated body must not end with a clean chunk terminator: drop the connection.
      if (err && !res.destroyed) res.destroy(err);
    });
  }
}
