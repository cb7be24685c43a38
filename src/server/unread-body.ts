import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * After a response sent before the request body ended (413, 408, an early error): our side of the
 * connection ends after the response, and what the client still sends is read and dropped for a
 * moment before the socket is closed (nginx's lingering close). Left as it was, the paused request
 * kept the socket until the requestTimeout sweep (60 s, measured: the response's keep-alive was
 * decided when its header was written); destroying it at once with unread bytes makes the kernel
 * send a reset that can destroy the response before the client reads it.
 */
const LINGER_MS = 2000;
function lingerAndClose(req: IncomingMessage): void {
  const socket = req.socket;
  socket.end();
  req.resume();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/**
 * A response sent before the whole request body arrived ends the connection: reading and
 * discarding an unwanted body is the client's time, not ours.
 */
export function closeIfBodyUnread(req: IncomingMessage, res: ServerResponse): void {
  res.once('prefinish', () => {
    if (req.complete) return;
    res.shouldKeepAlive = false;
    res.once('finish', () => { if (!req.complete) lingerAndClose(req); });
  });
}
