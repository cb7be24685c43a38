import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { MAX_HELLO, MAX_RECORDS, readClientHello } from '../../src/server/client-hello.ts';

/**
 * The ClientHello reader against real ClientHellos (Node's TLS client, captured on a plain TCP
 * server) and hand-made broken ones.
 */

/** The bytes a TLS client sends first, with this SNI name (none for undefined). */
async function captureHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const captured = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      let data = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        if (readClientHello(data).kind !== 'more') {
          socket.destroy();
          resolve(data);
        }
      });
    });
  });
  const client = connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] });
  client.on('error', () => {});
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}

let hello: Buffer;
let anonymous: Buffer;

before(async () => {
  hello = await captureHello('Legacy.Example.com');
  anonymous = await captureHello(undefined);
});

/** The handshake message inside a one-record ClientHello. */
const messageOf = (record: Buffer) => record.subarray(5, 5 + record.readUInt16BE(3));

/** The same handshake message split into records of `size` bytes. */
function fragmented(message: Buffer, size: number): Buffer {
  const records: Buffer[] = [];
  for (let i = 0; i < message.length; i += size) {
    const piece = message.subarray(i, i + size);
    const header = Buffer.from([22, 3, 1, 0, 0]);
    header.writeUInt16BE(piece.length, 3);
    records.push(header, piece);
  }
  return Buffer.concat(records);
}

const record = (message: Buffer, type = 22, version = [3, 1]) => {
  const header = Buffer.from([type, version[0], version[1], 0, 0]);
  header.writeUInt16BE(message.length, 3);
  return Buffer.concat([header, message]);
};

test('a real ClientHello: the server name, lower-cased; none when the client sent none', () => {
  assert.deepEqual(readClientHello(hello), { kind: 'hello', servername: 'legacy.example.com' });
  assert.deepEqual(readClientHello(anonymous), { kind: 'hello', servername: null });
});

test('every prefix asks for more: a ClientHello may arrive a byte at a time', () => {
  for (let n = 0; n < hello.length; n++) assert.equal(readClientHello(hello.subarray(0, n)).kind, 'more', `${n} bytes`);
});

test('a ClientHello fragmented over several records is read, up to a bound', () => {
  const message = messageOf(hello);
  const size = Math.ceil(message.length / MAX_RECORDS);
  assert.deepEqual(readClientHello(fragmented(message, size)), { kind: 'hello', servername: 'legacy.example.com' });
  assert.deepEqual(readClientHello(fragmented(message, Math.ceil(message.length / (MAX_RECORDS + 1)))),
    { kind: 'invalid', reason: `ClientHello split over more than ${MAX_RECORDS} records` });
  // the bound holds before the rest has arrived
  assert.equal(readClientHello(fragmented(message, 4).subarray(0, (MAX_RECORDS + 1) * 9)).kind, 'invalid');
});

test('what is not a ClientHello Outpost routes is invalid, each with its reason', () => {
  const message = messageOf(hello);
  const invalid = (data: Buffer) => {
    const result = readClientHello(data);
    assert.equal(result.kind, 'invalid', data.subarray(0, 16).toString('hex'));
    return (result as { reason: string }).reason;
  };
  assert.equal(invalid(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'not a TLS handshake');
  assert.equal(invalid(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), 'not a TLS handshake');
  assert.equal(invalid(record(message, 22, [2, 0])), 'unknown record version');
  assert.equal(invalid(Buffer.from([22, 3, 1, 0, 0])), 'bad record length');
  assert.equal(invalid(Buffer.from([22, 3, 1, 0x40, 0x01])), 'bad record length');
  const serverHello = Buffer.from(message);
  serverHello[0] = 2;
  assert.equal(invalid(record(serverHello)), 'the first handshake message is not a ClientHello');
  const huge = Buffer.from([1, 0, 0, 0]);
  huge.writeUIntBE(MAX_HELLO + 1, 1, 3);
  assert.equal(invalid(record(huge)), `ClientHello over ${MAX_HELLO} bytes`);
  // a record of another type between the fragments
  const split = fragmented(message, 100);
  assert.equal(invalid(Buffer.concat([split.subarray(0, 105), record(Buffer.from([1, 0]), 21), split.subarray(105)])),
    'a record other than the handshake inside the ClientHello');
  // a session id length past its limit, an extensions length past the end
  const badSession = Buffer.from(message);
  badSession[4 + 2 + 32] = 33;
  assert.equal(invalid(record(badSession)), 'session id over 32 bytes');
  const truncated = Buffer.from(message.subarray(0, message.length - 10));
  truncated.writeUIntBE(truncated.length - 4, 1, 3);
  assert.equal(invalid(record(truncated)), 'a length runs past its field');
});

/** A minimal ClientHello with these extensions (type, data). */
function helloWith(extensions: Array<[number, Buffer]>): Buffer {
  const ext = Buffer.concat(extensions.map(([type, data]) => {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(type, 0);
    head.writeUInt16BE(data.length, 2);
    return Buffer.concat([head, data]);
  }));
  const extLength = Buffer.alloc(2);
  extLength.writeUInt16BE(ext.length);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), Buffer.from([0, 2, 0x13, 0x01]), Buffer.from([1, 0]), extLength, ext]);
  const head = Buffer.from([1, 0, 0, 0]);
  head.writeUIntBE(body.length, 1, 3);
  return record(Buffer.concat([head, body]));
}

function sni(...names: Array<[number, string]>): Buffer {
  const entries = Buffer.concat(names.map(([type, name]) => {
    const head = Buffer.alloc(3);
    head[0] = type;
    head.writeUInt16BE(name.length, 1);
    return Buffer.concat([head, Buffer.from(name, 'latin1')]);
  }));
  const list = Buffer.alloc(2);
  list.writeUInt16BE(entries.length);
  return Buffer.concat([list, entries]);
}

test('server_name (RFC 6066 §3): one host name, a host name, in its own extension once', () => {
  assert.deepEqual(readClientHello(helloWith([[0, sni([0, 'a.example'])]])), { kind: 'hello', servername: 'a.example' });
  assert.deepEqual(readClientHello(helloWith([[16, Buffer.from([0, 3, 2, 0x68, 0x32])], [0, sni([0, 'b.example'])]])), { kind: 'hello', servername: 'b.example' });
  const reason = (data: Buffer) => (readClientHello(data) as { reason?: string }).reason;
  assert.equal(reason(helloWith([[0, sni([0, 'a.example'], [0, 'b.example'])]])), 'two host names');
  assert.equal(reason(helloWith([[0, sni([0, 'a.example'])], [0, sni([0, 'b.example'])]])), 'an extension appears twice');
  assert.equal(reason(helloWith([[0, sni([0, 'bad name!'])]])), 'a server name that is not a host name');
  assert.equal(reason(helloWith([[0, sni([0, 'trailing.dot.'])]])), 'a server name that is not a host name');
  assert.equal(reason(helloWith([[0, sni([1, 'other-type'])]])), 'an empty server name list');
  assert.equal(reason(helloWith([[0, Buffer.from([0, 9, 0, 0, 3, 0x61])]])), 'a length runs past its field');
});
