import { publishClientError } from '../observability/channels.ts';
import { SEND_TIMEOUT } from './respond.ts';
import { frontCounters, type FrontCounters } from './counters.ts';

/**
 * Error codes a client causes, by what it sends or by going away: counted (and published on the
 * client-error channel), not written to the error log, where one misbehaving client could add a
 * line per stream.
 */
const CLIENT_CAUSED = new Set([
  'ERR_HTTP2_ERROR', // nghttp2 refused the peer's frames: a protocol error
  'ERR_HTTP2_SESSION_ERROR', // the peer sent GOAWAY with an error code
  'ERR_HTTP2_STREAM_ERROR', // a stream reset by the peer, or by nghttp2 for a malformed request
  'ERR_HTTP2_TOO_MANY_INVALID_FRAMES',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT',
  SEND_TIMEOUT, // the client took nothing of a response for limits.sendTimeout
]);

const isClientCaused = (error: unknown) => CLIENT_CAUSED.has((error as { code?: string } | undefined)?.code ?? '');

/**
 * The listeners' error reporting: what a client caused is counted under `counter` (and published
 * on the client-error channel), anything else goes to `onError`. Each error is reported once: a
 * session that dies with an error hands the same error to every stream it had open, and that is
 * one event, not one per stream.
 */
export function errorReporter(onError: (where: string, error: unknown) => void): (where: string, error: unknown, counter: keyof FrontCounters) => void {
  const reported = new WeakSet<object>();
  return (where, error, counter) => {
    if (typeof error === 'object' && error !== null) {
      if (reported.has(error)) return;
      reported.add(error);
    }
    if (!isClientCaused(error)) return onError(where, error);
    frontCounters[counter]++;
    publishClientError({ error, where });
  };
}
