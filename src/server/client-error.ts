import type { Duplex } from 'node:stream';
import { http } from './node-http.ts';
import { responseEndChannel, NO_HEADERS, type RequestFacts } from '../observability/channels.ts';

/**
 * HTTP/1.x requests Node's parser refuses before any request object exists (headers over
 * maxHeaderSize, a malformed request line, a header deadline): answered as Node would (status
 * line, Connection: close), and reported like every other response so the access log and
 * metrics see them too.
 */

/**
 * Node's HTTP parser errors → the status a client gets (RFC 9110 §15.5); null for everything else
 * (a reset connection, a TLS handshake that failed or timed out): no HTTP to answer with, the
 * socket is dropped as Node would without this listener.
 */
export function clientErrorStatus(code: string | undefined, raw?: Buffer, stoppedAt?: number): number | null {
  if (code === 'HPE_HEADER_OVERFLOW') return endsTarget(raw, stoppedAt) ? 414 : 431;
  // RFC 9110 §9.1: a method the server does not know, in an otherwise well-formed request line,
  // is 501 (Node's parser knows a fixed list); garbage that only fails at its method stays a 400.
  if (code === 'HPE_INVALID_METHOD' && raw !== undefined && WELL_FORMED_LINE.test(firstLine(raw))) return 501;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  if (code !== undefined && code.startsWith('HPE_')) return 400;
  return null;
}

/**
 * Whether the parser stopped in the request target: the target alone was over
 * `limits.maxHeaderSize` (RFC 9110 §15.5.15: 414 URI Too Long, as nginx and Apache answer),
 * rather than the fields after it (431). Node's parser counts the target's bytes toward the same
 * limit and stops where the target ends, so the bytes it did not take start with the request
 * line's " HTTP/1.x"; where it stops at the end of a field value, they start with its line end.
 * A target that goes on past the read the parser stopped at (a 100 KB one) is told by that read:
 * it holds the request's start and no line end. A read further into such a target (a later
 * TLS record, when the limit falls past the first) looks like one into a long field value: 431.
 */
function endsTarget(raw: Buffer | undefined, stoppedAt: number | undefined): boolean {
  if (raw === undefined || stoppedAt === undefined || stoppedAt < 0) return false;
  if (raw.toString('latin1', stoppedAt, stoppedAt + 7) === ' HTTP/1') return true;
  const read = raw.subarray(0, stoppedAt);
  return REQUEST_START.test(read.toString('latin1', 0, 34)) && !read.includes(0x0a) && !read.includes(0x0d);
}

/** A request line's start: a method token, one space and the target's first byte. */
const REQUEST_START = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [\x21-\x7e]/;

/** A request line with a method token (RFC 9110 §9.1: any token), a target and HTTP/1.x. */
const WELL_FORMED_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} [\x21-\x7e]{1,8000} HTTP\/1\.[01]$/;

const firstLine = (raw: Buffer): string => raw.subarray(0, 8192).toString('latin1').split('\r\n', 1)[0];

/** "GET /path HTTP/1.1" from the bytes received, when they start with a plausible request line. */
function requestLine(raw: Buffer | undefined): { method: string; target: string; httpVersion: string } {
  const line = raw === undefined ? '' : firstLine(raw);
  const match = /^([A-Z]{1,20}) ([\x21-\x7e]{1,2000}) HTTP\/(1\.[01])$/.exec(line);
  return match ? { method: match[1], target: match[2], httpVersion: match[3] } : { method: '-', target: '-', httpVersion: '1.1' };
}

/** The response Node has attached to the connection, not yet finished, and its request. */
interface AttachedResponse {
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  readonly req?: { readonly complete: boolean };
  once(event: 'finish', listener: () => void): unknown;
}
type ClientSocket = Duplex & { remoteAddress?: string; destroySoon?: () => void; _httpMessage?: AttachedResponse | null };

/** Closes `socket` once what is written to it is flushed, whatever the client does. */
function closeSoon(socket: ClientSocket): void {
  if (socket.destroySoon) socket.destroySoon();
  else socket.end(() => socket.destroy());
}

/**
 * Connections closing softly from here (answered, or left to finish an earlier response). Node's
 * parser reports an error again for bytes read after the first (a pipelined request behind headers
 * over the limit, over TLS): such a report must not destroy the socket, which would cut off the
 * answer still on its way out.
 */
const closing = new WeakSet<ClientSocket>();

export function answerClientError(err: NodeJS.ErrnoException & { rawPacket?: Buffer; bytesParsed?: number }, socket: ClientSocket): void {
  if (closing.has(socket)) return;
  const status = clientErrorStatus(err.code, err.rawPacket, err.bytesParsed);
  if (status === null || !socket.writable) {
    socket.destroy();
    return;
  }
  const attached = socket._httpMessage;
  if (attached != null) {
    // A pipelined request the parser refused behind one still being answered (whose request was
    // received whole): responses go in request order (RFC 9112 §9.3.2), so an answer now would be
    // read as the earlier request's. That response is finished first; then the connection closes
    // with no answer to this one.
    if (attached.req?.complete === true) {
      closing.add(socket);
      if (attached.writableFinished) closeSoon(socket);
      else attached.once('finish', () => closeSoon(socket));
      return;
    }
    // The attached request's own failure (its body malformed or too slow): answered, unless its
    // response is on its way already, which cannot be followed by another status line.
    if (attached.headersSent) {
      socket.destroy();
      return;
    }
  }
  const text = `${http.STATUS_CODES[status]}\n`;
  closing.add(socket);
  socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
  closeSoon(socket);
  if (!responseEndChannel.hasSubscribers) return;
  const line = requestLine(err.rawPacket);
  const address = socket.remoteAddress ?? '';
  const request: RequestFacts = {
    ...line,
    host: '',
    remoteAddress: address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address,
    headers: NO_HEADERS,
    startedAt: process.hrtime.bigint(),
  };
  responseEndChannel.publish({ request, status, headers: { 'content-length': text.length }, bytes: text.length, durationMs: 0, outcome: 'ok', cache: 'none' });
}
