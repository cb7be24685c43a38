import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxiedForFile } from '../helpers/outpost.ts';
import { rawH2, frame, FRAME, FLAG, headerBlock, requestFields, errorCodeOf, type RawH2, type Frame } from './h2-frames.ts';

/**
 * The HTTP/2 listener against the cases of the public h2spec suite (RFC 7540 / 9113 frame and
 * stream rules), frame by frame: each malformed or out-of-place frame gets the connection or
 * stream error the RFC names, and the well-formed requests get a response. The cases where
 * Node's HTTP/2 engine (nghttp2) answers otherwise, frames on closed streams and PRIORITY
 * frames it ignores, are listed in docs/conformance.md and not here.
 */

const running = proxiedForFile();

const E = { PROTOCOL: 1, FLOW: 3, STREAM_CLOSED: 5, FRAME_SIZE: 6, REFUSED: 7, COMPRESSION: 9 };
const GET = headerBlock(requestFields('/a'));
/** HEADERS that is a whole request: END_HEADERS and END_STREAM. */
const WHOLE = FLAG.END_HEADERS | FLAG.END_STREAM;
/** A frame type no extension defines (RFC 9113 §5.5: ignored). */
const UNKNOWN_TYPE = 0x16;
const settingsPayload = (pairs: Array<[number, number]>) => {
  const b = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, v], i) => { b.writeUInt16BE(id, i * 6); b.writeUInt32BE(v >>> 0, i * 6 + 2); });
  return b;
};
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };

/**
 * What the server did, as h2spec judges it: 'conn' wants a GOAWAY with one of `codes` (or the
 * connection closed), 'stream' a RST_STREAM or GOAWAY with one of them; 'ping' that the
 * connection still answers a PING, 'headers' a response, 'data1' a first DATA frame of one byte.
 */
type Expect = 'conn' | 'stream' | 'ping' | 'headers' | 'data1';
async function outcome(c: RawH2, codes: number[], kind: Expect): Promise<string> {
  if (kind === 'ping') c.send(frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7)));
  try {
    const f = await c.waitFor((f: Frame) => {
      if (kind === 'ping') return f.type === FRAME.PING && (f.flags & FLAG.ACK) !== 0;
      if (kind === 'headers') return f.type === FRAME.HEADERS;
      if (kind === 'data1') return f.type === FRAME.DATA && f.payload.length > 0;
      return f.type === FRAME.GOAWAY || (kind === 'stream' && f.type === FRAME.RST_STREAM);
    }, 3000);
    if (kind === 'ping' || kind === 'headers') return 'ok';
    if (kind === 'data1') return f.payload.length === 1 ? 'ok' : `a DATA frame of ${f.payload.length} bytes`;
    const code = errorCodeOf(f);
    return codes.includes(code) ? 'ok' : `${f.type === FRAME.GOAWAY ? 'GOAWAY' : 'RST_STREAM'} with code ${code}`;
  } catch (error) {
    const closed = (error as Error).message.includes('closed');
    return closed && (kind === 'conn' || kind === 'stream') ? 'ok' : (error as Error).message;
  }
}

const cases: Array<[string, (c: RawH2) => Promise<string>]> = [
  ['4.1 unknown frame type ignored', async (c) => { c.send(frame(UNKNOWN_TYPE, 0, 0, Buffer.alloc(8))); return outcome(c, [], 'ping'); }],
  ['4.1 undefined flags ignored', async (c) => { c.send(frame(FRAME.PING, 0x16 /* undefined flags */, 0, Buffer.alloc(8))); return outcome(c, [], 'ping'); }],
  ['4.2 DATA over max frame size', async (c) => { c.request(1, requestFields('/a', [], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.alloc(16385))); return outcome(c, [E.FRAME_SIZE], 'stream'); }],
  ['4.2 HEADERS over max frame size', async (c) => { const big = headerBlock([...requestFields('/'), ...Array.from({ length: 5 }, (_, i) => [`x-${i}`, 'a'.repeat(4000)] as const)]); c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, big)); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['4.3 invalid header block', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))); return outcome(c, [E.COMPRESSION], 'conn'); }],
  ['4.3 PRIORITY while header block', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, GET), frame(FRAME.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 16]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['4.3 HEADERS on other stream while header block', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, GET), frame(FRAME.HEADERS, WHOLE, 3, GET)); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1 idle: DATA', async (c) => { c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('x'))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1 idle: RST_STREAM', async (c) => { c.send(frame(FRAME.RST_STREAM, 0, 1, u32(8))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1 idle: WINDOW_UPDATE', async (c) => { c.send(frame(FRAME.WINDOW_UPDATE, 0, 1, u32(100))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1 idle: CONTINUATION', async (c) => { c.send(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, GET)); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1 half-closed(remote): DATA', async (c) => { c.request(1, requestFields('/a')); c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('x'))); return outcome(c, [E.STREAM_CLOSED], 'stream'); }],
  ['5.1.1 even stream id', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE, 2, GET)); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.1.2 over max concurrent streams', async (c) => { for (let i = 0; i <= 128; i++) c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1 + 2 * i, GET)); return outcome(c, [E.PROTOCOL, E.REFUSED], 'stream'); }],
  ['5.3.1 HEADERS depends on itself', async (c) => { const p = Buffer.concat([u32(1), Buffer.from([16])]); c.send(frame(FRAME.HEADERS, WHOLE | FLAG.PRIORITY, 1, Buffer.concat([p, GET]))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['5.5 unknown extension frame in header block', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, GET), frame(UNKNOWN_TYPE, 0, 1, Buffer.alloc(8))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.1 DATA stream 0', async (c) => { c.send(frame(FRAME.DATA, FLAG.END_STREAM, 0, Buffer.from('x'))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.1 DATA invalid pad length', async (c) => { c.request(1, requestFields('/a', [], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, FLAG.END_STREAM | FLAG.PADDED, 1, Buffer.from([6, 0x61, 0x62]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.2 HEADERS stream 0', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE, 0, GET)); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.2 HEADERS invalid pad length', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE | FLAG.PADDED, 1, Buffer.concat([Buffer.from([GET.length + 10]), GET]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.3 PRIORITY length 4', async (c) => { c.request(1, requestFields('/a'), { endStream: false }); c.send(frame(FRAME.PRIORITY, 0, 1, u32(0))); return outcome(c, [E.FRAME_SIZE], 'stream'); }],
  ['6.4 RST_STREAM stream 0', async (c) => { c.send(frame(FRAME.RST_STREAM, 0, 0, u32(8))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.4 RST_STREAM length 3', async (c) => { c.request(1, requestFields('/a'), { endStream: false }); c.send(frame(FRAME.RST_STREAM, 0, 1, Buffer.alloc(3))); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['6.5 SETTINGS ACK with payload', async (c) => { c.send(frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(6))); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['6.5 SETTINGS stream 1', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 1, Buffer.alloc(6))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.5 SETTINGS length 3', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(3))); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['6.5.2 ENABLE_PUSH 2', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[2, 2]]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.5.2 INITIAL_WINDOW_SIZE 2^31', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 2 ** 31]]))); return outcome(c, [E.FLOW], 'conn'); }],
  ['6.5.2 MAX_FRAME_SIZE 16383', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[5, 16383]]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.5.2 MAX_FRAME_SIZE 2^24', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[5, 2 ** 24]]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.5.2 unknown setting ignored', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[0xff, 1]]))); return outcome(c, [], 'ping'); }],
  ['6.7 PING stream 1', async (c) => { c.send(frame(FRAME.PING, 0, 1, Buffer.alloc(8))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.7 PING length 6', async (c) => { c.send(frame(FRAME.PING, 0, 0, Buffer.alloc(6))); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['6.8 GOAWAY stream 1', async (c) => { c.send(frame(FRAME.GOAWAY, 0, 1, Buffer.alloc(8))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.9 WINDOW_UPDATE 0 on connection', async (c) => { c.send(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(0))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.9 WINDOW_UPDATE 0 on stream', async (c) => { c.request(1, requestFields('/a'), { endStream: false }); c.send(frame(FRAME.WINDOW_UPDATE, 0, 1, u32(0))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['6.9 WINDOW_UPDATE length 3', async (c) => { c.send(frame(FRAME.WINDOW_UPDATE, 0, 0, Buffer.alloc(3))); return outcome(c, [E.FRAME_SIZE], 'conn'); }],
  ['6.9.1 initial window 1 → DATA of 1', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 1]]))); await new Promise((r) => setTimeout(r, 50)); c.request(1, requestFields('/a')); return outcome(c, [], 'data1'); }],
  ['6.9.1 connection window overflow', async (c) => { c.send(frame(FRAME.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1)), frame(FRAME.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1))); return outcome(c, [E.FLOW], 'conn'); }],
  ['6.9.1 stream window overflow', async (c) => { c.request(1, requestFields('/a'), { endStream: false }); c.send(frame(FRAME.WINDOW_UPDATE, 0, 1, u32(2 ** 31 - 1)), frame(FRAME.WINDOW_UPDATE, 0, 1, u32(2 ** 31 - 1))); return outcome(c, [E.FLOW], 'stream'); }],
  ['6.9.2 window change makes overflow', async (c) => { c.request(1, requestFields('/a'), { endStream: false }); c.send(frame(FRAME.WINDOW_UPDATE, 0, 1, u32(2 ** 31 - 1 - 65535))); c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 65536]]))); return outcome(c, [E.FLOW], 'conn'); }],
  ['6.10 CONTINUATION without HEADERS', async (c) => { c.request(1, requestFields('/a')); c.send(frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, GET)); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.10 CONTINUATION after END_HEADERS', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, GET), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, headerBlock([['x-a', 'b']]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.10 CONTINUATION other stream', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, GET), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 3, headerBlock([['x-a', 'b']]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['6.10 CONTINUATION stream 0', async (c) => { c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, GET), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 0, headerBlock([['x-a', 'b']]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['8.1 second HEADERS without END_STREAM', async (c) => { c.request(1, requestFields('/a', [], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, 0, 1, Buffer.from('x')), frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock([['x-t', 'a']]))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2 uppercase field name', async (c) => { c.request(1, requestFields('/a', [['X-Upper', 'a']])); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.1 unknown pseudo', async (c) => { c.request(1, [...requestFields('/a'), [':foo', 'a']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.1 pseudo in trailers', async (c) => { c.request(1, requestFields('/a', [], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, 0, 1, Buffer.from('x')), frame(FRAME.HEADERS, WHOLE, 1, headerBlock([[':method', 'GET']]))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.1 duplicate pseudo', async (c) => { c.request(1, [...requestFields('/a'), [':method', 'GET']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.1 pseudo after regular', async (c) => { c.request(1, [[':method', 'GET'], [':scheme', 'https'], ['x-a', 'b'], [':path', '/'], [':authority', 'localhost']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.2 connection header', async (c) => { c.request(1, requestFields('/a', [['connection', 'keep-alive']])); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.2 TE not trailers', async (c) => { c.request(1, requestFields('/a', [['te', 'trailers, deflate']])); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.3 empty :path', async (c) => { c.request(1, [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.3 no :method', async (c) => { c.request(1, [[':scheme', 'https'], [':authority', 'localhost'], [':path', '/']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.3 no :scheme', async (c) => { c.request(1, [[':method', 'GET'], [':authority', 'localhost'], [':path', '/']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.3 no :path', async (c) => { c.request(1, [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.3 duplicate :path', async (c) => { c.request(1, [...requestFields('/a'), [':path', '/']]); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.6 content-length mismatch', async (c) => { c.request(1, requestFields('/a', [['content-length', '1']], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('test'))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.1.2.6 content-length mismatch, several DATA', async (c) => { c.request(1, requestFields('/a', [['content-length', '1']], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, 0, 1, Buffer.from('test')), frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('test'))); return outcome(c, [E.PROTOCOL], 'stream'); }],
  ['8.2 PUSH_PROMISE from client', async (c) => { c.send(frame(FRAME.PUSH_PROMISE, FLAG.END_HEADERS, 1, Buffer.concat([u32(2), GET]))); return outcome(c, [E.PROTOCOL], 'conn'); }],
  ['5.3 PRIORITY on an idle stream accepted', async (c) => { c.send(frame(FRAME.PRIORITY, 0, 3, Buffer.concat([u32(0), Buffer.from([16])]))); return outcome(c, [], 'ping'); }],
  ['6.5.3 several INITIAL_WINDOW_SIZE values: the last one counts', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 100], [4, 1]]))); await new Promise((r) => setTimeout(r, 50)); c.request(1, requestFields('/a')); return outcome(c, [], 'data1'); }],
  ['6.9.2 a window made negative by SETTINGS still works', async (c) => { c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 0]]))); c.request(1, requestFields('/a')); await c.waitFor((f) => f.type === FRAME.HEADERS && f.stream === 1); c.send(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 1]]))); return outcome(c, [], 'data1'); }],
  ['HPACK: an index past the tables', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE, 1, Buffer.from([0xff, 0x70]))); return outcome(c, [E.COMPRESSION], 'conn'); }],
  ['HPACK: a table size update over SETTINGS_HEADER_TABLE_SIZE', async (c) => { c.send(frame(FRAME.HEADERS, WHOLE, 1, Buffer.concat([Buffer.from([0x3f, 0xe1, 0x3f]) /* size update to 8192 */, GET]))); return outcome(c, [E.COMPRESSION], 'conn'); }],
  ['generic GET', async (c) => { c.request(1, requestFields('/a')); return outcome(c, [], 'headers'); }],
  ['generic HEAD', async (c) => { c.request(1, requestFields('/a', [], 'HEAD')); return outcome(c, [], 'headers'); }],
  ['generic POST', async (c) => { c.request(1, requestFields('/', [], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, FLAG.END_STREAM, 1, Buffer.from('test'))); return outcome(c, [], 'headers'); }],
  ['generic POST with trailers', async (c) => { c.request(1, requestFields('/', [['trailer', 'x-test']], 'POST'), { endStream: false }); c.send(frame(FRAME.DATA, 0, 1, Buffer.from('test')), frame(FRAME.HEADERS, WHOLE, 1, headerBlock([['x-test', 'ok']]))); return outcome(c, [], 'headers'); }],
];

for (const [name, run] of cases) {
  test(`h2spec ${name}`, async () => {
    const c = await rawH2(running.outpost.httpsPort, running.outpost.ca);
    try {
      await c.waitFor((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) !== 0);
      assert.equal(await run(c), 'ok');
    } finally {
      c.close();
    }
  });
}
