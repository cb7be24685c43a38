import { constants as h2, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { AbortSource } from '../pipeline/abort-watch.ts';

/**
 * The listeners the server puts on every HTTP/2 stream, made here, in functions of their own, so
 * that they hold the stream, its session and its abort source and nothing of the request's
 * context.
 *
 * Why it matters: Node keeps a session's open streams in a Map (one entry per stream, deleted when
 * it closes). Once that Map's table is in V8's old generation (a full collection while the
 * connection is busy moves it there), every table V8 makes for it when it fills up with deleted
 * entries is made in the old generation too, and each table it replaces keeps the entries it had
 * (V8's OrderedHashTable::Rehash: the new table where the old one lives, the old one left as it
 * was but for a link to the new one). Those replaced tables are garbage, but a young collection
 * cannot tell: every stream they point to, and everything the stream's listeners reach, is copied
 * and then promoted to the old generation, and freed only by the next full collection. A listener
 * closure made in the stream handler shares that handler's scope, which holds the request's whole
 * context (its fields, notes, reply and the pipeline's closures): ~2 KB per request promoted over a
 * long-lived connection, young collections 6.7-8.8 µs per request (1.4-1.9 while the Map is young),
 * full collections every few seconds (--trace-gc-nvp, pass-through over HTTP/2, 2 connections x 8
 * streams); with the listeners here 0.8-1.1 KB and 4.9-5.6 µs, the rest Node's own stream objects.
 * Over HTTP/1.1 nothing like it (~60 B per request). The tables themselves are renewed once a
 * second since (h2-stream-tables.ts), which ends the promotion of the streams; these listeners still
 * keep what a stream reaches small while a table is old.
 */

/** The stream's error: `failed` counts it against the session's resets and reports it. */
export function watchStreamErrors(stream: ServerHttp2Stream, failed: (session: Http2Session | undefined, stream: ServerHttp2Stream, err: Error) => void): void {
  const session = stream.session;
  stream.on('error', (err: Error) => failed(session, stream, err));
}

/**
 * The request's abort source: aborted when the client resets the stream (or the session dies)
 * before the response ended. And for a request with a body, RFC 9113 §8.1: a response may complete
 * before the request body; then RST_STREAM(NO_ERROR) tells the client to stop sending.
 */
export function abortOnReset(stream: ServerHttp2Stream): AbortSource {
  const abort = new AbortSource();
  // `on`, not `once` (a wrapper, its state and a closure per request, ~230 B): abort() is
  // idempotent. Not a property on the stream for one shared listener either: a second shape of
  // stream made Node's HTTP/2 code polymorphic, 4k instructions more per response (callgrind).
  stream.on('aborted', () => abort.abort());
  if (!stream.endAfterHeaders) {
    stream.once('finish', () => { if (!stream.readableEnded && !stream.destroyed) stream.close(h2.NGHTTP2_NO_ERROR); });
  }
  return abort;
}
