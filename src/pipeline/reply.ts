import type { Reply } from './context.ts';
import { isOutpostError } from '../errors.ts';

/** A reply with a short text body (errors, redirects). */
export function textReply(status: number, text: string, headers: Reply['headers'] = {}): Reply {
  const body = Buffer.from(text.endsWith('\n') ? text : `${text}\n`);
  return {
    status,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...headers },
    body,
  };
}

/** The reply for a thrown error: its own status and message; anything unexpected is a bare 500. */
export function errorReply(err: unknown): Reply {
  if (isOutpostError(err)) return textReply(err.status, err.message, err.headers);
  return textReply(500, 'Internal Server Error');
}
