/**
 * What clients did that the front refused, cut off or reset, counted per process (each worker has
 * its own, like the cache counters) for the admin API's /stats. Client-caused events are counted
 * here instead of each being an error line: one misbehaving client must not be able to flood the log.
 */
export interface FrontCounters {
  /** Connections closed before the TLS handshake: over `limits.connectionsPerClient` for their client (IPv4 address, IPv6 /64). */
  connectionsRefused: number;
  /** Request bodies cut off with 408 for arriving slower than `limits.minBodyRate`. */
  slowBodies: number;
  /** HTTP/2 connections closed for not sending their connection preface within `limits.headersTimeout`. */
  silentConnections: number;
  /** Requests refused by the request adapter: malformed, too large or not understood (400, 413, 431, 501). */
  badRequests: number;
  /** HTTP/2 sessions ended by a client's protocol error (GOAWAY from us, or one it sent with an error). */
  h2SessionErrors: number;
  /** HTTP/2 streams reset by a client, or by us for a malformed request (RFC 9113 §8.1.1). */
  h2StreamErrors: number;
  /** Of those, malformed requests reset alone where Node would have closed the connection. */
  h2StreamErrorsConfined: number;
  /** Connections that failed or were cut by the client (reset, broken pipe, TLS alerts). */
  connectionErrors: number;
  /** Responses sent from a reply kept ready (a fresh hit or a kept file sent again without the chain, replies.ts). */
  readyReplies: number;
}

export const frontCounters: FrontCounters = {
  connectionsRefused: 0,
  slowBodies: 0,
  silentConnections: 0,
  badRequests: 0,
  h2SessionErrors: 0,
  h2StreamErrors: 0,
  h2StreamErrorsConfined: 0,
  connectionErrors: 0,
  readyReplies: 0,
};

/** A copy for /stats. */
export const frontStats = (): Readonly<FrontCounters> => ({ ...frontCounters });
