import type { Http2Session } from 'node:http2';
import type { Writable } from 'node:stream';
import { realTimers, recurring, type Timers } from '../timers.ts';
import { openStreamsOf } from './h2-stream-tables.ts';
import { socketOf } from './idle-watch.ts';

/**
 * limits.sendTimeout for HTTP/2 responses: a client can hold any stream back by flow control. One
 * that opens its streams with a window of 0 (SETTINGS_INITIAL_WINDOW_SIZE) and never grants more
 * gets the headers and no byte of any body, and the PINGs it sends keep its connection from
 * looking idle (idle-watch.ts counts the bytes of the connection). Each such stream holds its body
 * (a cache hit, a kept file, an error page written whole; a streamed body and the origin response
 * it paces) and one of the session's maxConcurrentStreams for as long as the client likes; nginx
 * resets it after `send_timeout`.
 *
 * Nothing is added per request: every sendTimeout / 4 the watch walks the open streams of each
 * session (Node's own table, h2-stream-tables.ts) and looks at what each has queued and not yet
 * sent (`writableLength`, which falls only when a write has gone out whole). A stream whose queue
 * stayed the same, and not empty, for sendTimeout is destroyed with `timedOut()`, so it ends within
 * 1 to 1.25 times sendTimeout; its session and other streams go on. A streamed body whose source
 * is slow (an origin that takes its time) has nothing queued, so it is never taken for a stalled
 * client: the origin's own timeouts (proxy.bodyTimeout) are for that. Where Node's state has
 * another shape (another version) the watch sees no streams.
 *
 * But only while its connection is not moving either. A slow client with many responses queued (a
 * phone loading a page's images) takes them one after another or a slice of each in turn, and a
 * stream can wait longer than sendTimeout for its write to go while the connection carries the
 * others: that is a slow client, not a stalled one; and a stream taken slowly can show the same
 * queue at two looks (a streamed body's pieces are often all one size). So a connection that
 * passed another MOVING bytes mark since the last look (`connectionSteps`: a DATA frame's worth;
 * PING answers and other control frames are a few bytes each) keeps its streams for another
 * sendTimeout. A client that keeps one stream flowing while it holds the others back keeps them
 * too, no longer than it goes on taking bytes, and for no more streams than maxConcurrentStreams.
 */

/** The connection's step: one DATA frame of the default size (RFC 9113 §4.2). */
export const MOVING = 16 * 1024;

export interface StalledStreamWatch {
  add(session: Http2Session): void;
  delete(session: Http2Session): void;
  stop(): void;
}

export interface StalledStreamOptions {
  /** The error a stalled stream is destroyed with (respond.ts sendTimeoutError). */
  readonly timedOut: () => Error;
  readonly timers?: Timers;
  /** The session's open streams (tests may give their own). */
  readonly streamsOf?: (session: Http2Session) => Iterable<unknown> | undefined;
  /** Bytes the session's connection has sent so far (tests may give their own). */
  readonly sentBy?: (session: Http2Session) => number;
}

interface Seen { queued: number; since: number }
/** A connection's step at the last look, and when it last took one. */
interface Moving { steps: number; movedAt: number }

const bytesSent = (session: Http2Session): number => socketOf(session)?.bytesWritten ?? -1;

/** How many MOVING marks `session`'s connection has passed in what it sent: moves when it sends, hardly when it only answers PINGs. */
export const connectionSteps = (session: Http2Session, sentBy: (session: Http2Session) => number = bytesSent): number =>
  Math.floor(sentBy(session) / MOVING);

export function stalledStreamWatch(sendTimeout: number, options: StalledStreamOptions): StalledStreamWatch {
  const { timedOut } = options;
  const timers = options.timers ?? realTimers;
  const streamsOf = options.streamsOf ?? openStreamsOf;
  const sentBy = options.sentBy ?? bytesSent;
  const sessions = new Map<Http2Session, Moving>();
  const seen = new WeakMap<object, Seen>();

  /** `stream`'s queue, looked at `now`; `idleSince`: since when its connection has not moved. */
  const look = (stream: Writable, now: number, idleSince: number) => {
    const queued = stream.destroyed ? 0 : stream.writableLength;
    const last = seen.get(stream);
    if (queued === 0) {
      if (last !== undefined) seen.delete(stream);
    } else if (last === undefined || last.queued !== queued) {
      seen.set(stream, { queued, since: now });
    } else if (now - Math.max(last.since, idleSince) >= sendTimeout) {
      seen.delete(stream);
      stream.destroy(timedOut());
    }
  };

  const sweep = recurring(timers, sendTimeout / 4, (now) => {
    for (const [session, moving] of sessions) {
      if (session.destroyed) continue;
      const steps = connectionSteps(session, sentBy);
      if (steps !== moving.steps) moving.movedAt = now;
      moving.steps = steps;
      const streams = streamsOf(session);
      if (streams !== undefined) for (const stream of streams) look(stream as Writable, now, moving.movedAt);
    }
    return sessions.size > 0;
  });

  return {
    add(session) {
      sessions.set(session, { steps: connectionSteps(session, sentBy), movedAt: timers.now() });
      sweep.arm();
    },
    delete(session) {
      sessions.delete(session);
    },
    stop() {
      sweep.stop();
      sessions.clear();
    },
  };
}
