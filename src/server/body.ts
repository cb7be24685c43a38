import { Readable } from 'node:stream';
import { clientError } from '../errors.ts';
import { frontCounters } from './counters.ts';
import { batchOriginWrites } from '../origin/upload-writes.ts';
import { noteBodyBytes } from '../runtime/body-scavenge.ts';
import type { Config } from '../config/schema.ts';
import type { Context } from '../pipeline/context.ts';

export interface BodyLimits {
  /** Bytes at most (413 beyond). */
  readonly maxBytes: number;
  /** One deadline for the whole body, in ms (408 after it). */
  readonly deadline: number;
  /** Bytes per second the body must average once `grace` has passed; 0 turns the rule off. */
  readonly minRate: number;
  /** Milliseconds before the rate counts. */
  readonly grace: number;
  /** How long a partial batch of chunks for an HTTP/1.1 origin waits (ms; origin/upload-writes.ts); tests set it. */
  readonly gatherWaitMs?: number;
  /** The clock, in ms; tests inject one. */
  readonly now?: () => number;
}

/**
 * Request-body limits Node does not have: a byte cap for bodies without Content-Length (chunked,
 * or HTTP/2 DATA frames), one deadline for the whole body, and a minimum data rate after a short
 * grace (Apache mod_reqtimeout's MinRate): by `grace + received / minRate` ms after the body
 * started, its bytes must be in, else 408. A client trickling 16 bytes every 2 s is cut off a
 * little after the grace instead of holding the request for the whole deadline, and its bytes
 * do not reset anything: the rate is checked by one timer, set to when the allowance runs out.
 *
 * The rate is the client's only while we are reading: bytes waiting in our buffers (an origin
 * slow to take the upload) mean the wait is ours, and the check moves on by another grace.
 *
 * A Readable fed from the client's 'data' events, not a Transform piped in between: no pipe and
 * transform callbacks per chunk. The chunks go to an HTTP/1.1 origin in fewer, larger writes
 * (origin/upload-writes.ts: its socket corked while they gather, no copies). (Joining them into
 * 64 KB Buffers made a quarter of the writes but cost as much in copies: measured, dropped.)
 */

/** What may wait unread in the limiter before the client's stream is paused. */
const HIGH_WATER = 64 * 1024;

/** The limited bodies' switch to the rule for message streams (`asMessageStream`). */
const toMessageStream = new WeakMap<Readable, () => void>();

/**
 * Turns a limited request body into a stream of messages (gRPC's client and bidirectional
 * streams, which last as long as the call): the whole-body deadline and the rate rule give way to
 * an idle limit, `deadline` ms between two chunks, as nginx's client_body_timeout counts for
 * gRPC; the byte cap stays. The proxy asks for it for gRPC requests to an HTTP/2 upstream, where
 * a held stream is one of many on a shared connection. A body not limited here is left alone.
 */
export function asMessageStream(body: Readable): void {
  toMessageStream.get(body)?.();
}

export function limitBody(body: Readable, limits: BodyLimits): Readable {
  const { maxBytes, deadline, minRate, grace } = limits;
  const now = limits.now ?? Date.now;
  const started = now();
  let seen = 0;
  let ourWait = 0; // ms of waiting that was ours, not the client's
  let idle: NodeJS.Timeout | undefined; // asMessageStream's limit

  const limited = new Readable({
    highWaterMark: HIGH_WATER,
    read() {
      if (body.isPaused() && !body.readableEnded) body.resume();
    },
    destroy(err, callback) {
      stopTimers();
      writes.end();
      // Stop reading, but leave the client's stream alone: it still has to carry our 413/408.
      body.off('data', onData);
      body.off('end', onEnd);
      body.pause();
      callback(err);
    },
  });

  const writes = batchOriginWrites(limited, limits.gatherWaitMs);

  function onData(chunk: Buffer): void {
    seen += chunk.length;
    idle?.refresh();
    noteBodyBytes(chunk.length);
    if (seen > maxBytes) {
      limited.destroy(clientError.tooLarge(`request body over ${maxBytes} bytes`));
      return;
    }
    writes.before();
    const more = limited.push(chunk);
    writes.after();
    if (!more) body.pause();
  }

  function onEnd(): void {
    stopTimers();
    writes.end();
    if (!limited.destroyed) limited.push(null);
  }

  const fail = () => limited.destroy(clientError.timeout('request body not received in time'));
  const total = setTimeout(fail, deadline);
  total.unref();

  let rate: NodeJS.Timeout | undefined;
  const allowanceEnds = () => started + grace + ourWait + (seen * 1000) / minRate;
  const checkRate = () => {
    const at = now();
    if (at < allowanceEnds()) return scheduleRate();
    // Unread bytes in our buffers: the consumer is behind, not the client.
    if (limited.readableLength > 0 || body.readableLength > 0) {
      ourWait += grace;
      return scheduleRate();
    }
    frontCounters.slowBodies++;
    fail();
  };
  function scheduleRate() {
    rate = setTimeout(checkRate, Math.max(1, allowanceEnds() - now()));
    rate.unref();
  }
  if (minRate > 0) scheduleRate();

  function stopTimers() {
    clearTimeout(total);
    clearTimeout(rate);
    clearTimeout(idle);
  }
  // Silence while bytes wait unread in our buffers is the upstream's (it is slow to take the
  // messages), not the client's: the idle limit starts again.
  const checkIdle = () => {
    if (limited.readableLength > 0 || body.readableLength > 0) idle!.refresh();
    else fail();
  };
  toMessageStream.set(limited, () => {
    if (limited.destroyed || limited.readableEnded || idle !== undefined) return;
    stopTimers();
    idle = setTimeout(checkIdle, deadline);
    idle.unref();
  });
  // The client's own stream failed (reset, or malformed: DATA past its Content-Length, a bad chunk):
  // the client's doing, whoever reads the body (an origin exchange must not count it as the origin's).
  body.on('error', (err) => limited.destroy(clientError.closed(err)));
  // Whoever reads the body handles its errors; one that ends before anyone reads (a stream reset
  // while the handler was still deciding) must not be an unhandled 'error' that ends the process.
  limited.on('error', () => {});
  body.on('data', onData);
  body.once('end', onEnd);
  return limited;
}

/**
 * The context with its body limited (`limits`: the config's), or a 413 thrown at once for a
 * declared length over maxBodySize. Only a request that has a body is touched, so the GET hit
 * path pays nothing.
 */
export function withBodyLimits(ctx: Context, limits: Config['limits']): Context {
  if (!ctx.hasBody) return ctx;
  const length = ctx.headers['content-length'];
  if (length !== undefined && Number(length) > limits.maxBodySize) {
    throw clientError.tooLarge(`request body over ${limits.maxBodySize} bytes`);
  }
  const body = limitBody(ctx.body, {
    maxBytes: limits.maxBodySize, deadline: limits.requestTimeout, minRate: limits.minBodyRate, grace: limits.bodyGrace,
  });
  return { ...ctx, body };
}
