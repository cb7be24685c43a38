import { textReply } from '../pipeline/reply.ts';
import type { Reply } from '../pipeline/context.ts';

/**
 * The replies of a range request (RFC 9110 §14), for every stage that serves ranges of bytes it
 * holds (files, stored responses).
 */

/** `Content-Range` of a satisfiable single range (§14.4), `end` inclusive. */
export const contentRange = (start: number, end: number, size: number): string => `bytes ${start}-${end}/${size}`;

/** 416 with the representation's size (§15.5.17: "SHOULD generate a Content-Range ... unsatisfied-range"). */
export function unsatisfiableRange(size: number, headers: Reply['headers'] = {}): Reply {
  return textReply(416, 'Range Not Satisfiable', { ...headers, 'content-range': `bytes */${size}` });
}
