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
 * Here that destroy waits one turn of the event loop. If a stream of the session was reset with
 * PROTOCOL_ERROR meanwhile, the error was nghttp2's stream error and the session lives on; if not,
 * it was a connection error (nghttp2 has already sent its own GOAWAY) and the session is destroyed
 * as Node would have. A reset that cannot reach the socket within that turn (a congested
 * connection) also ends in the destroy: never worse than Node's own behaviour.
 */

/** NGHTTP2_ERR_PROTO as Node reports it: an NghttpError with this errno. */
const NGHTTP2_ERR_PROTO = -505;

const isProtocolReport = (error: unknown) =>
  (error as { code?: string } | undefined)?.code === 'ERR_HTTP2_ERROR' && (error as { errno?: number }).errno === NGHTTP2_ERR_PROTO;

const resetSeen = new WeakMap<Http2Session, { seen: boolean }>();

export function confineStreamErrors(session: ServerHttp2Session): void {
  const state = { seen: false };
  resetSeen.set(session, state);
  const destroy = session.destroy;
  let pending = false;
  session.destroy = function confinedDestroy(this: ServerHttp2Session, error?: Error, code?: number) {
    if (!isProtocolReport(error) || pending || this.destroyed) return destroy.call(this, error, code);
    pending = true;
    state.seen = false;
    setImmediate(() => {
      pending = false;
      if (state.seen) frontCounters.h2StreamErrorsConfined++;
      else destroy.call(this, error, code);
    });
    return this;
  };
}

/**
 * Call from a stream's 'error' listener with the session it belongs to (a destroyed stream no
 * longer knows it): a PROTOCOL_ERROR reset tells a pending report it was this stream's.
 */
export function noteStreamReset(session: Http2Session | undefined, stream: ServerHttp2Stream): void {
  if (session === undefined || stream.rstCode !== h2.NGHTTP2_PROTOCOL_ERROR) return;
  const state = resetSeen.get(session);
  if (state) state.seen = true;
}
