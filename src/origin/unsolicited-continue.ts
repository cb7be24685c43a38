import type { Socket } from 'node:net';

/**
 * RFC 9110 §15.2: "A client MUST be able to parse one or more 1xx responses received prior to a
 * final response, even if the client does not expect one." undici 8.13, the origin client, takes
 * other 1xx (103 Early Hints reach the client) but destroys an HTTP/1.1 connection that answers
 * 100 (Continue) (client-h1.js `onHeadersComplete`), so the request failed with a 502. Outpost
 * never forwards `Expect` (proxy.ts), so every 100 an origin sends is one it was not asked for:
 * some servers (IIS, older Java containers) send one to every POST. It is taken off the front of
 * the response here, on the connection, before undici's parser reads it, and the final response
 * after it goes on as the answer.
 *
 * undici writes each request's head as one string that starts with the method, and reads its
 * socket with `read()` (paused mode): after a head is written, the next bytes read are the start of
 * a response (one request at a time on a connection: `pipelining: 1`, dispatcher.ts). A 100 there,
 * status line and fields up to the empty line, is dropped, as often as it comes; the first bytes
 * that are not one end the look until the next request. HTTP/1.1 connections only: an HTTP/2
 * session reads its socket itself.
 */
export function skipUnsolicitedContinue(socket: Socket): void {
  let atResponseStart = false;
  /** 100s skipped in front of this response. */
  let skipped = 0;
  /** The start of a 100 not complete yet: held until the rest comes. */
  let held: Buffer | null = null;
  const write = socket.write;
  socket.write = function (this: Socket, chunk: unknown, encoding?: unknown, callback?: unknown) {
    if (typeof chunk === 'string' && startsWithMethod(chunk)) {
      atResponseStart = true;
      skipped = 0;
    }
    return (write as (chunk: unknown, encoding?: unknown, callback?: unknown) => boolean).call(this, chunk, encoding, callback);
  } as Socket['write'];
  const read = socket.read;
  socket.read = function (this: Socket, size?: number) {
    let chunk = read.call(this, size) as Buffer | null;
    if (!atResponseStart) return chunk;
    if (held !== null && chunk !== null) chunk = Buffer.concat([held, chunk]);
    else if (held !== null) return null;
    held = null;
    while (chunk !== null && atResponseStart) {
      // Past a storm's worth (the exchange passes on at most 8 interim responses per request,
      // exchange.ts MAX_INTERIM), the next one goes to undici, which ends the exchange: a 502.
      const end = skipped < MAX_SKIPPED ? continueEnd(chunk) : NOT_CONTINUE;
      if (end === NOT_CONTINUE) {
        atResponseStart = false;
      } else if (end === INCOMPLETE) {
        // Read on: the stream asks for more, and the next 'readable' brings it here.
        held = chunk;
        return null;
      } else {
        skipped++;
        chunk = end === chunk.length ? null : chunk.subarray(end);
      }
    }
    return chunk;
  } as Socket['read'];
}

/** A request head written by undici: it starts with the method (A-Z); a chunk's framing starts with CR or a hex digit. */
function startsWithMethod(text: string): boolean {
  const c = text.charCodeAt(0);
  return c >= 65 && c <= 90;
}

/** At most this many 100s are skipped in front of one response. */
const MAX_SKIPPED = 8;
const NOT_CONTINUE = -1;
const INCOMPLETE = 0;
/** A 100 larger than this is no 100 we skip: undici gets it, and refuses it as before. */
const MAX_CONTINUE = 8192;
const PREFIX_11 = Buffer.from('HTTP/1.1 100');
const PREFIX_10 = Buffer.from('HTTP/1.0 100');
const BLANK_LINE = Buffer.from('\r\n\r\n');

/**
 * Where a 100 response at the front of `bytes` ends (after its empty line), INCOMPLETE when it may
 * be one whose end has not come yet, NOT_CONTINUE when it is not one.
 */
function continueEnd(bytes: Buffer): number {
  const prefix = bytes[7] === 0x30 ? PREFIX_10 : PREFIX_11;
  const n = Math.min(bytes.length, prefix.length);
  if (bytes.compare(prefix, 0, n, 0, n) !== 0) return NOT_CONTINUE;
  if (bytes.length <= prefix.length) return INCOMPLETE;
  // "HTTP/1.1 100" then SP (reason phrase) or CR: not "HTTP/1.1 1000".
  const next = bytes[prefix.length];
  if (next !== 0x20 && next !== 0x0d) return NOT_CONTINUE;
  const blank = bytes.indexOf(BLANK_LINE);
  if (blank !== -1 && blank + 4 <= MAX_CONTINUE) return blank + 4;
  return bytes.length < MAX_CONTINUE ? INCOMPLETE : NOT_CONTINUE;
}
