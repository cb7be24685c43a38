import type { Context, Reply } from './context.ts';
import { isOutpostError } from '../errors.ts';
import { publishError } from '../observability/channels.ts';

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

/**
 * The reply for an error a request's handler chain threw or rejected with, where the response is
 * written (server/listener.ts): 5xx are logged with their cause, and the access log gets its code.
 */
export function replyForError(ctx: Context, error: unknown): Reply {
  const status = isOutpostError(error) ? error.status : 500;
  if (status >= 500) publishError({ ctx, error, where: 'request' });
  ctx.notes.set('error', isOutpostError(error) ? error.code : 'INTERNAL');
  return errorReply(error);
}
