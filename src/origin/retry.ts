import { Readable } from 'node:stream';

/**
 * When a request may be tried again on another upstream, and the request body that makes it
 * possible. RFC 9110 §9.2.2: "A user agent SHOULD NOT automatically retry a request with a
 * non-idempotent method unless it has some means to know that the request semantics are actually
 * idempotent, regardless of the method, or some means to detect that the original request was
 * never applied."
 */

/** RFC 9110 §9.2.2: methods whose repetition has the same intended effect as one request. */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** No connection was made: not one byte of the request left, whatever the method. */
const UNREACHED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
/** The connection broke before any byte of a response: the upstream may have acted on the request. */
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * unreached: the request provably never reached the upstream (the basis for passive health too);
 * reset: the connection broke before the response began; other: timeouts, TLS, protocol errors.
 */
export type Failure = 'unreached' | 'reset' | 'other';

export function classifyFailure(err: unknown): Failure {
  const code = (err as { code?: string })?.code ?? '';
  if (UNREACHED.has(code)) return 'unreached';
  if (RESET.has(code)) return 'reset';
  return 'other';
}

export interface RetryFacts {
  readonly method: string;
  /** Some of the request body was read for an earlier attempt: there is nothing left to send again. */
  readonly bodyTouched: boolean;
}

/** A failed attempt may be repeated on another upstream. */
export function mayRetryFailure(failure: Failure, facts: RetryFacts): boolean {
  if (facts.bodyTouched) return false;
  if (failure === 'unreached') return true; // never applied: any method
  return failure === 'reset' && IDEMPOTENT.has(facts.method);
}

/** An answer with this status may be replaced by another upstream's (the configured `retryOn`). */
export function mayRetryStatus(status: number, retryOn: ReadonlySet<number>, facts: RetryFacts): boolean {
  return retryOn.has(status) && IDEMPOTENT.has(facts.method) && !facts.bodyTouched;
}

export interface AttemptBodies {
  /** The body for the next attempt. */
  next(): Readable;
  /** Whether any attempt has read from the client's body. */
  readonly touched: boolean;
}

/**
 * The client's request body for several attempts. undici destroys the body of a request that
 * fails, so each attempt gets a stand-in that starts reading the client's body only when undici
 * first asks for data (after its connection is up): an attempt that failed before that leaves the
 * body untouched for the next one.
 */
export function attemptBodies(source: Readable): AttemptBodies {
  let touched = false;
  return {
    get touched() { return touched; },
    next() {
      let detach: (() => void) | undefined;
      const standIn: Readable = new Readable({
        read() {
          if (detach !== undefined) {
            source.resume();
            return;
          }
          touched = true;
          const onData = (chunk: Buffer) => { if (!standIn.push(chunk)) source.pause(); };
          const onEnd = () => standIn.push(null);
          const onError = (err: Error) => standIn.destroy(err);
          source.on('data', onData);
          source.once('end', onEnd);
          source.once('error', onError);
          detach = () => {
            source.off('data', onData);
            source.off('end', onEnd);
            source.off('error', onError);
          };
        },
        destroy(err, callback) {
          // An attempt that read nothing leaves the client's body to the next one.
          if (detach !== undefined) {
            detach();
            // As undici does with a failed request's body: nobody reads it any more.
            if (!source.readableEnded) source.on('error', () => {}).destroy(err ?? undefined);
          }
          callback(err);
        },
      });
      return standIn;
    },
  };
}
