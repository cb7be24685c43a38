import type { Config } from '../config/schema.ts';

/** What HTTP/2 clients may send: header lists and flow-control windows, as the listener gives them to node:http2. */

/**
 * RFC 9113 §6.5.2: the size of a header list is its names and values plus 32 octets per field.
 * Counted on the fields as received (Node's flat raw list: names and values alternate), which is
 * also cheaper than walking the merged headers object.
 */
export function headerListSize(rawHeaders: readonly string[]): number {
  let size = 16 * rawHeaders.length; // 32 per name/value pair
  for (let i = 0; i < rawHeaders.length; i++) size += rawHeaders[i].length;
  return size;
}

/**
 * HTTP/2 flow-control windows for request bodies (RFC 9113 §6.9). With the protocol's 65,535 bytes,
 * for each stream and for the whole connection, a client uploading 1 MiB stops every 64 KB until
 * our WINDOW_UPDATE comes back, and parallel uploads on one connection share that one window.
 * What a client may send ahead stays bounded: a stream's window refills only as its body is read
 * (the limiter pauses the stream when the origin is slow), so an unread stream holds at most 1 MiB
 * (measured; Node refills the connection window on receipt, so that one is no bound), and
 * maxSessionMemory (32 MB) refuses a session that buffers more. 256 KB per stream cost ~15 % more
 * CPU per 1 MiB upload than 1 MiB did.
 */
export const H2_STREAM_WINDOW = 1024 * 1024;
export const H2_SESSION_WINDOW = 8 * 1024 * 1024;
/** The fields of a request head Node's HTTP/1.1 parser reads (its maxHeadersCount default): HTTP/2 gets as many. */
const H1_MAX_HEADERS = 2000;

/** createSecureServer's HTTP/2 options for `limits`. */
export function h2Limits(limits: Config['limits']) {
  return {
    // RFC 9113 §6.5.2: advertise our limits. The header list gets the same cap as HTTP/1.1 headers,
    // checked by the listener's 'stream' handler (headerListSize), which answers 431 as HTTP/1.1
    // does; Node resets a stream past the advertised size or pair count itself (ENHANCE_YOUR_CALM,
    // no status), so both are set above what the check lets through: twice the size, and as many
    // fields as HTTP/1.1 reads (Node's default of 128 pairs refused ordinary requests with many
    // cookie crumbs, which RFC 9113 §8.2.3 lets a client split into one field each).
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: 2 * limits.maxHeaderSize,
      enablePush: false,
      initialWindowSize: H2_STREAM_WINDOW,
      // RFC 8441 §3: clients may open WebSockets on a stream of this connection (extended CONNECT,
      // server/upgrade.ts) instead of a connection of their own over HTTP/1.1.
      enableConnectProtocol: true,
    },
    maxHeaderListPairs: H1_MAX_HEADERS,
    maxSessionMemory: 32, // MB of buffered frames per session before it is refused
  };
}
