import { constants as h2, type Http2Session, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { frontCounters } from './counters.ts';

/**
 * RFC 9113 §8.1.1: "Malformed requests or responses that are detected MUST be treated as a stream
 * error (Section 5.4.2) of type PROTOCOL_ERROR." nghttp2 does that for a request whose DATA frames
 * run past its Content-Length: it queues RST_STREAM(PROTOCOL_ERROR) for that stream and carries on.
 * But it also reports the frame as invalid (NGHTTP2_ERR_PROTO), and Node 24 answers that report by
 * destroying the whole session (GOAWAY INTERNAL_ERROR): one malformed upload ends every other
 * request on the connection. Measured on Node 24.21 with hand-written frames.
 *
 * Here that destroy waits one turn of the event loop. If as many streams of the session were reset
 * with PROTOCOL_ERROR meanwhile as reports came (several malformed uploads can arrive in one read),
 * the errors were nghttp2's stream errors and the session lives on; if fewer, one was a connection
 * error (nghttp2 has already sent its own GOAWAY) and the session is destroyed as Node would have.
 * A reset that cannot reach the socket within that turn (a congested connection) also ends in the
 * destroy: never worse than Node's own behaviour.
 */

/** NGHTTP2_ERR_PROTO as Node reports it: an NghttpError with this errno. */
const NGHTTP2_ERR_PROTO = -505;

const isProtocolReport = (error: unknown) =>
  (error as { code?: string } | undefined)?.code === 'ERR_HTTP2_ERROR' && (error as { errno?: number }).errno === NGHTTP2_ERR_PROTO;

/** Per session, in the turn being looked at: protocol-error reports, and PROTOCOL_ERROR resets. */
const tallies = new WeakMap<Http2Session, { reports: number; resets: number }>();

export function confineStreamErrors(session: ServerHttp2Session): void {
  const tally = { reports: 0, resets: 0 };
  tallies.set(session, tally);
  const destroy = session.destroy;
  session.destroy = function confinedDestroy(this: ServerHttp2Session, error?: Error, code?: number) {
    if (!isProtocolReport(error) || this.destroyed) return destroy.call(this, error, code);
    if (tally.reports++ > 0) return this; // a turn is being looked at already: it counts this one too
    tally.resets = 0;
    setImmediate(() => {
      const { reports, resets } = tally;
      tally.reports = 0;
      if (resets >= reports) frontCounters.h2StreamErrorsConfined += reports;
      else destroy.call(this, error, code);
    });
    return this;
  };
}

/**
 * Call from a stream's 'error' listener with the session it belongs to (a destroyed stream no
 * longer knows it): a PROTOCOL_ERROR reset answers for one pending report (a stream's error, not
 * the connection's).
 */
export function noteStreamReset(session: Http2Session | undefined, stream: ServerHttp2Stream): void {
  if (session === undefined || stream.rstCode !== h2.NGHTTP2_PROTOCOL_ERROR) return;
  const tally = tallies.get(session);
  if (tally) tally.resets++;
}
