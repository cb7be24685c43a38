import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer as createH2cServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
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
      echoFrames(socket, head);
    }
  });
  const close = async () => {
    for (const socket of opened) socket.destroy();
    await closeServer();
  };
  return Object.assign(origin, { upgrades, sockets, close });
}

/**
 * Echoes each WebSocket frame the client sends on `socket` (RFC 6455 §5.2: short unfragmented
 * masked frames, what the tests send) as a server frame; a close frame is echoed and ends it.
 * `head`: what came with the handshake.
 */
export function echoFrames(socket: Duplex, head: Buffer = Buffer.alloc(0)): void {
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

export interface H2WsOrigin {
  readonly url: string;
  /** The request fields of each extended CONNECT the origin saw. */
  readonly connects: Array<Record<string, string | string[] | undefined>>;
  /** Tunnel streams not yet closed. */
  openStreams(): number;
  close(): Promise<void>;
}

/**
 * An HTTP/2 (h2c) origin that takes WebSockets as RFC 8441 has it: it offers
 * SETTINGS_ENABLE_CONNECT_PROTOCOL (unless `extendedConnect: false`), answers an extended CONNECT
 * to `/refuse` with a 403 and a body, and any other with a 200 (the first subprotocol offered),
 * then echoes each frame. Plain requests get a 200 saying what they were.
 */
export async function h2WsOrigin(options: { extendedConnect?: boolean } = {}): Promise<H2WsOrigin> {
  const connects: H2WsOrigin['connects'] = [];
  const streams = new Set<ServerHttp2Stream>();
  const server = createH2cServer({ settings: { enableConnectProtocol: options.extendedConnect !== false } });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      return void stream.end(`plain ${headers[':method']} ${headers[':path']}`);
    }
    connects.push({ ...headers });
    streams.add(stream);
    stream.once('close', () => streams.delete(stream));
    if (headers[':path'] === '/refuse') {
      stream.respond({ ':status': 403, 'content-type': 'text/plain' });
      return void stream.end('no, no.');
    }
    const protocol = String(headers['sec-websocket-protocol'] ?? '').split(',')[0].trim();
    stream.respond({ ':status': 200, ...(protocol ? { 'sec-websocket-protocol': protocol } : {}) });
    echoFrames(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    openStreams: () => streams.size,
    close: async () => {
      for (const stream of streams) stream.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
