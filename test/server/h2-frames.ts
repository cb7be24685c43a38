import { connect, type TLSSocket } from 'node:tls';

/**
 * A raw HTTP/2 client for the frames Node's own client refuses to send (a field value with CR, LF
 * or NUL, a Content-Length the DATA frames contradict, more streams than the peer allows). It
 * writes frames byte for byte (RFC 9113 §4.1) and reads back frame types and error codes; header
 * blocks are HPACK literals without Huffman coding or indexing (RFC 7541 §6.2.2), so a value goes
 * on the wire exactly as given.
 */

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

export interface Frame { type: number; flags: number; stream: number; payload: Buffer }

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** RFC 7541 §5.1: an integer with an N-bit prefix. */
function hpackInteger(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const bytes = [firstByteFlags | max];
  let rest = value - max;
  while (rest >= 128) { bytes.push((rest % 128) + 128); rest = Math.floor(rest / 128); }
  bytes.push(rest);
  return Buffer.from(bytes);
}

const hpackString = (value: Buffer) => Buffer.concat([hpackInteger(value.length, 7, 0x00), value]);

/** A header block of literal fields, "without indexing, new name" (RFC 7541 §6.2.2), in the order given. */
export function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0x00]), hpackString(Buffer.from(name, 'latin1')), hpackString(Buffer.from(value, 'latin1'))]));
}

/** Huffman codes of the ten digits (RFC 7541 Appendix B): enough to read a :status. */
const DIGIT_CODES = new Map<string, string>([
  ['00000', '0'], ['00001', '1'], ['00010', '2'], ['011001', '3'], ['011010', '4'],
  ['011011', '5'], ['011100', '6'], ['011101', '7'], ['011110', '8'], ['011111', '9'],
]);
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/**
 * The :status of a response header block. The client announced a header table of size 0, so the
 * server indexes only into the static table; :status comes first (RFC 9113 §8.3).
 */
export function statusOf(block: Buffer): number | undefined {
  let i = 0;
  while (i < block.length && (block[i] & 0xe0) === 0x20) i++; // dynamic table size updates (to 0)
  const first = block[i];
  if (first === undefined) return undefined;
  if (first & 0x80) return STATIC_STATUS[first & 0x7f];
  // A literal with the indexed name :status (8), incremental, without or never indexed.
  if (first !== 0x48 && first !== 0x08 && first !== 0x18) return undefined;
  const huffman = (block[i + 1] & 0x80) !== 0;
  const length = block[i + 1] & 0x7f;
  const value = block.subarray(i + 2, i + 2 + length);
  if (!huffman) return Number(value.toString('latin1'));
  let bits = '';
  for (const byte of value) bits += byte.toString(2).padStart(8, '0');
  let digits = '';
  let code = '';
  for (const bit of bits) {
    code += bit;
    const digit = DIGIT_CODES.get(code);
    if (digit !== undefined) { digits += digit; code = ''; }
    if (digits.length === 3) break;
  }
  return Number(digits);
}

export interface RawH2 {
  readonly socket: TLSSocket;
  /** Every frame received so far, in order. */
  readonly frames: Frame[];
  send(...frames: Buffer[]): void;
  /** HEADERS (with END_HEADERS) for a request; END_STREAM unless `body` follows. */
  request(stream: number, fields: ReadonlyArray<readonly [string, string]>, options?: { endStream?: boolean }): void;
  /** Resolves with the first received frame matching, or rejects after `timeoutMs`. */
  waitFor(match: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  /** Resolves when the connection has closed. */
  closed: Promise<void>;
  close(): void;
}

/** Opens TLS with ALPN h2, sends the preface and SETTINGS (header table 0), ACKs the server's SETTINGS. */
export async function rawH2(port: number, ca: string, options: { ackSettings?: boolean } = {}): Promise<RawH2> {
  const socket = connect({ port, host: '127.0.0.1', ca, servername: 'localhost', ALPNProtocols: ['h2'] });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${socket.alpnProtocol}`);
  const frames: Frame[] = [];
  const waiters = new Set<{ match: (f: Frame) => boolean; resolve: (f: Frame) => void }>();
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const received: Frame = { type: pending[3], flags: pending[4], stream: pending.readUInt32BE(5) & 0x7fffffff, payload: pending.subarray(9, 9 + length) };
      pending = pending.subarray(9 + length);
      frames.push(received);
      if (received.type === FRAME.SETTINGS && !(received.flags & FLAG.ACK) && options.ackSettings !== false) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      for (const waiter of waiters) if (waiter.match(received)) { waiters.delete(waiter); waiter.resolve(received); }
    }
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // SETTINGS_HEADER_TABLE_SIZE (0x1) = 0: the server's HPACK stays within the static table.
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x1, 0);
  settings.writeUInt32BE(0, 2);
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(FRAME.SETTINGS, 0, 0, settings)]));
  const send = (...out: Buffer[]) => { if (!socket.destroyed) socket.write(Buffer.concat(out)); };
  return {
    socket,
    frames,
    send,
    request(stream, fields, options = {}) {
      send(frame(FRAME.HEADERS, FLAG.END_HEADERS | (options.endStream === false ? 0 : FLAG.END_STREAM), stream, headerBlock(fields)));
    },
    waitFor(match, timeoutMs = 3000) {
      const seen = frames.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve: (f: Frame) => { clearTimeout(timer); resolve(f); } };
        const timer = setTimeout(() => { waiters.delete(waiter); reject(new Error('no matching frame in time')); }, timeoutMs);
        waiters.add(waiter);
        void closed.then(() => { if (waiters.delete(waiter)) { clearTimeout(timer); reject(new Error('connection closed before a matching frame')); } });
      });
    },
    closed,
    close: () => socket.destroy(),
  };
}

/** The error code of a RST_STREAM or GOAWAY frame. */
export const errorCodeOf = (f: Frame) => (f.type === FRAME.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0));

export const requestFields = (path: string, extra: ReadonlyArray<readonly [string, string]> = [], method = 'GET') =>
  [[':method', method], [':scheme', 'https'], [':authority', 'localhost'], [':path', path], ...extra] as const;
