import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { startOrigin, type TestOrigin } from './outpost.ts';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
export const acceptOf = (key: string) => createHash('sha1').update(key + GUID).digest('base64');

export interface WsOrigin extends TestOrigin {
  /** The upgrade requests the origin saw. */
  readonly upgrades: Array<{ url: string; headers: IncomingMessage['headers'] }>;
  /** The origin's side of each tunnel. */
  readonly sockets: Duplex[];
}

/**
 * An origin that answers upgrades: `/refuse` with a 403; `/wrong` with a 101 to another protocol;
 * `/flood` with a 101 and then bytes as fast as the tunnel takes them; `/raw` with a 101 and then
 * an echo of the bytes (`echo:` before each read); `/badaccept` as `/ws` with an Accept for another
 * key; `/ws` with a 101 (the first subprotocol
 * offered) and an echo of each WebSocket frame (RFC 6455 §5.2, short unfragmented frames: what
 * the tests send). Plain requests: `/cached` is cacheable, anything else says what it saw.
 */
export async function wsOrigin(): Promise<WsOrigin> {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/cached') return void res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' }).end('stored body');
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(`plain ${req.url} upgrade=${req.headers.upgrade ?? '-'}`);
  });
  const upgrades: WsOrigin['upgrades'] = [];
  const sockets: Duplex[] = [];
  // Node's server lets go of upgraded connections: closing it waits for them, so they go first.
  const opened = new Set<Duplex>();
  const closeServer = origin.close;
  origin.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    socket.on('error', () => {});
    socket.on('end', () => socket.end()); // the tunnel's other side went: so does this one
    opened.add(socket);
    if (req.url === '/refuse') return void socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nno, no.');
    sockets.push(socket);
    if (req.url === '/wrong') return void socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
    const protocol = req.headers['sec-websocket-protocol']?.split(',')[0].trim();
    const key = req.url === '/badaccept' ? 'not the key it was sent' : String(req.headers['sec-websocket-key']);
    socket.write([
      'HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Accept: ${acceptOf(key)}`,
      ...(protocol ? [`Sec-WebSocket-Protocol: ${protocol}`] : []), '', '',
    ].join('\r\n'));
    if (req.url === '/flood') {
      // As much as the tunnel takes (up to 256 MiB): a client that stops reading holds it back.
      const chunk = Buffer.alloc(64 * 1024, 120);
      let sent = 0;
      const pump = () => {
        while (!socket.destroyed && sent < 256 * 1024 * 1024) {
          sent += chunk.length;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
      };
      pump();
    } else if (req.url === '/raw') {
      const echo = (chunk: Buffer) => socket.write(`echo:${chunk.toString()}`);
      if (head.length > 0) echo(head);
      socket.on('data', echo);
    } else {
      let pending = head;
      const frames = (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 6) {
          const opcode = pending[0] & 0x0f;
          const length = pending[1] & 0x7f; // under 126 in these tests
          if (pending.length < 6 + length) return;
          const mask = pending.subarray(2, 6);
          const payload = Buffer.from(pending.subarray(6, 6 + length).map((byte, i) => byte ^ mask[i % 4]));
          pending = pending.subarray(6 + length);
          socket.write(Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]));
          if (opcode === 8) return void socket.end();
        }
      };
      frames(Buffer.alloc(0));
      socket.on('data', frames);
    }
  });
  const close = async () => {
    for (const socket of opened) socket.destroy();
    await closeServer();
  };
  return Object.assign(origin, { upgrades, sockets, close });
}
