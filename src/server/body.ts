import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { clientError } from '../errors.ts';

/**
 * Request-body limits Node does not have: a byte cap for bodies without Content-Length (chunked,
 * or HTTP/2 DATA frames), and one deadline for the whole body so a client trickling a byte at a
 * time cannot hold a stream open forever.
 */
export function limitBody(body: Readable, maxBytes: number, deadlineMs: number): Readable {
  let seen = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (seen > maxBytes) callback(clientError.tooLarge(`request body over ${maxBytes} bytes`));
      else callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      callback();
    },
  });
  const timer = setTimeout(() => limited.destroy(clientError.timeout('request body not received in time')), deadlineMs);
  timer.unref();
  body.on('error', (err) => limited.destroy(err));
  limited.on('close', () => {
    clearTimeout(timer);
    // Stop reading, but leave the client's stream alone: it still has to carry our 413/408.
    body.unpipe(limited);
    body.pause();
  });
  return body.pipe(limited);
}
