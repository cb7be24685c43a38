import { createHash } from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3

/** RFC 6455 §4.2.2: the Sec-WebSocket-Accept a server owes the Sec-WebSocket-Key it was sent. */
export const webSocketAccept = (key: string): string => createHash('sha1').update(key + GUID).digest('base64');
