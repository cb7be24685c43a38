import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { once } from 'node:events';
import { h2session, proxiedForFile } from '../helpers/outpost.ts';
import { rawH2, FRAME, statusOf } from './h2-frames.ts';

/** Hostile HTTP/1.1 framing sent byte for byte; each gets its precise status and nothing reaches the origin. */
const running = proxiedForFile();

function send(raw: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port: running.outpost.httpsPort, host: '127.0.0.1', ca: running.outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => socket.write(raw));
    let out = '';
    socket.on('data', (d: Buffer) => { out += d; });
    socket.on('close', () => resolve(out));
    socket.on('error', () => resolve(out));
    setTimeout(() => socket.destroy(), 2000);
  });
}

const cases: Array<[string, string, string]> = [
  ['Content-Length with Transfer-Encoding (smuggling)', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', '400'],
  ['two different Content-Lengths', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde', '400'],
  ['obsolete line folding', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n', '400'],
  ['NUL in a header value', 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\u0000c\r\n\r\n', '400'],
  ['more than one Host (RFC 9112 §3.2)', 'GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n', '400'],
  ['missing Host in HTTP/1.1', 'GET /a HTTP/1.1\r\n\r\n', '400'],
  ['a transfer coding we do not know (RFC 9112 §6.1)', 'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', '501'],
  ['negative Content-Length', 'POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', '400'],
  ['a fragment in the target', 'GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n', '400'],
  ['CONNECT: not a forward proxy', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', '405'],
];

for (const [name, raw, status] of cases) {
  test(`HTTP/1.1 framing: ${name} → ${status}`, async () => {
    const before = running.origin.seen.length;
    const out = await send(raw);
    assert.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), out.slice(0, 80));
    assert.equal(running.origin.seen.length, before, 'nothing reached the origin');
  });
}

test('HTTP/1.0 with Transfer-Encoding (RFC 9112 §6.1: faulty framing, even with Content-Length) → 400; it and every other framing refusal close the connection, and nothing pipelined behind them is served or forwarded', async () => {
  const faulty: Array<[string, string]> = [
    ['400', 'POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
    ['400', 'POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
    ['400', 'GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n'],
    ['501', 'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
  ];
  const before = running.origin.seen.length;
  for (const [status, first] of faulty) {
    const out = await send(`${first}GET /behind HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(out, new RegExp(`^HTTP/1\\.1 ${status} `), out.slice(0, 80));
    assert.match(out, /\r\nConnection: close\r\n/i, out.slice(0, 300));
    assert.equal(out.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, out);
  }
  assert.deepEqual(running.origin.seen.slice(before).map((r) => r.url), [], 'nothing reached the origin');
});

test('HTTP/1.1: pipelined requests are answered in order; chunked bodies are re-framed for the origin', async () => {
  const out = await send('GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  const bodies = [...out.matchAll(/origin \w+ \/p\d/g)].map((m) => m[0]);
  assert.deepEqual(bodies, ['origin GET /p1', 'origin POST /p2']);
});

test('HTTP/2 CONNECT (RFC 9113 §8.5: no :path) gets the 405 with Allow that HTTP/1.1 gets; nothing reaches the origin', async () => {
  const before = running.origin.seen.length;
  const session = await h2session(running.outpost.url);
  try {
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' }, { endStream: true });
    const [headers] = await once(stream, 'response');
    stream.resume();
    await once(stream, 'end');
    assert.equal(headers[':status'], 405);
    assert.match(String(headers.allow), /^GET, HEAD/);
    assert.equal(running.origin.seen.length, before);
  } finally {
    session.close();
  }
});

test('OPTIONS * (RFC 9110 §9.3.7, the server in general) is answered here: 200 with Allow and no body, over HTTP/1.1 (the connection kept) and HTTP/2; nothing reaches the origin', async () => {
  const before = running.origin.seen.length;
  const out = await send('OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200 /, out.slice(0, 80));
  assert.match(out, /\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/i, out);
  assert.match(out, /\r\ncontent-length: 0\r\n/i, out);
  assert.match(out, /origin GET \/after/, 'the next request on the connection is served');
  const raw = await rawH2(running.outpost.httpsPort, running.outpost.ca);
  try {
    raw.request(1, [[':method', 'OPTIONS'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '*']]);
    const head = await raw.waitFor((f) => f.type === FRAME.HEADERS && f.stream === 1);
    assert.equal(statusOf(head.payload), 200);
    // GET * is still no request (RFC 9113 §8.3.1: '*' only for OPTIONS).
    raw.request(3, [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '*']]);
    const refused = await raw.waitFor((f) => (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM) && f.stream === 3);
    assert.ok(refused.type === FRAME.RST_STREAM || statusOf(refused.payload) === 400);
  } finally {
    raw.close();
  }
  assert.deepEqual(running.origin.seen.slice(before).map((r) => r.url), ['/after']);
});
