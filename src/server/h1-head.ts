import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

/**
 * The head of an HTTP/1.1 response sent again and again (a reply kept ready, src/server/replies.ts).
 *
 * `res.writeHead(status, fields)` serializes the fields on every call: a name check, a value check
 * and a concatenation per field, then Date and the connection fields: 9.7k of the 111k instructions
 * a kept 1 KB file costs over HTTP/1.1 (callgrind, 10,000 responses). The fields of a kept reply
 * are the same object until its per-response fields change (once a second: Age, Date), so the text
 * Node made for it the first time is given to the next responses as it is.
 *
 * That text is Node's own, kept only where it depends on nothing but the fields and on inputs
 * checked again each time: a keep-alive connection with the same Keep-Alive timeout, no request
 * limit reached, no `Expect`. Fields without Date or Content-Length are never reused (Node would
 * add its clock's Date, or chunked framing, which changes the response object too). It relies on
 * two fields of Node's OutgoingMessage that @types/node leaves out, `_header` (the serialized
 * head, written out with the first body bytes) and `_headerSent`: where a Node version had no
 * `_header` string after writeHead, nothing is kept and every response is serialized as before.
 */
export interface KeptHead {
  /** The fields object `text` was made from. */
  fields: OutgoingHttpHeaders | undefined;
  text: string | undefined;
  keepAliveTimeout: number;
}

/** ServerResponse's fields this module reads or sets, beyond its public API. */
interface ResponseInternals {
  _header: string | null;
  _headerSent: boolean;
  _keepAliveTimeout: number;
  _last: boolean;
  _expect_continue: boolean;
  chunkedEncoding: boolean;
  shouldKeepAlive: boolean;
  maxRequestsOnConnectionReached?: boolean;
}

export const keptHead = (): KeptHead => ({ fields: undefined, text: undefined, keepAliveTimeout: 0 });

/** A response Node would give keep-alive connection fields that no per-response state changes. */
const keepsAlive = (r: ResponseInternals) =>
  r.shouldKeepAlive && r.maxRequestsOnConnectionReached !== true && r._expect_continue !== true;

/** Writes the head of `res` (as `res.writeHead(status, fields)` does), from `kept` when it holds these fields' text. */
export function writeKeptHead(res: ServerResponse, status: number, fields: OutgoingHttpHeaders, kept: KeptHead): void {
  const r = res as unknown as ResponseInternals;
  if (!keepsAlive(r)) {
    // Connection: close, written by Node; the kept text stays for the keep-alive responses.
    res.writeHead(status, fields);
    return;
  }
  if (kept.fields === fields && kept.text !== undefined && r._header === null && r._keepAliveTimeout === kept.keepAliveTimeout) {
    res.statusCode = status;
    r._header = kept.text;
    r._headerSent = false;
    return;
  }
  res.writeHead(status, fields);
  const text = r._header;
  // 1xx, 204 and 304 make writeHead change how the body is sent (RFC 9110 §6.4.1).
  const reusable = typeof text === 'string' && r._headerSent === false && status >= 200 && status !== 204 && status !== 304 &&
    fields.date !== undefined && fields['content-length'] !== undefined && r.shouldKeepAlive && !r.chunkedEncoding && !r._last;
  kept.fields = fields;
  kept.text = reusable ? text : undefined;
  kept.keepAliveTimeout = r._keepAliveTimeout;
}
