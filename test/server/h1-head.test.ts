import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { keptHead, writeKeptHead, type KeptHead } from '../../src/server/h1-head.ts';

/**
 * HTTP/1.1 heads kept for the next response (src/server/h1-head.ts): what goes on the wire is what
 * `writeHead` writes, byte for byte, while only the text is reused.
 */

const BODY = Buffer.from('{"kept":true}\n');
const FIELDS: OutgoingHttpHeaders = {
  'content-type': 'application/json', etag: '"v1"', date: 'Tue, 01 Dec 2026 19:00:00 GMT', 'content-length': BODY.length,
};

/** A server answering every request with `fields()` and BODY; `kept`: through writeKeptHead, else writeHead. */
async function serve(fields: () => OutgoingHttpHeaders, kept?: KeptHead) {
  const heads: string[] = [];
  /** Heads Node serialized (writeHead calls). */
  const written = { count: 0 };
  const server = createServer({ keepAliveTimeout: 7_000 }, (_req, res) => {
    const writeHead = res.writeHead;
    res.writeHead = ((...args: Parameters<typeof writeHead>) => { written.count++; return writeHead.apply(res, args); }) as typeof writeHead;
    if (kept) writeKeptHead(res, 200, fields(), kept);
    else res.writeHead(200, fields());
    heads.push((res as ServerResponse & { _header: string })._header);
    res.end(BODY);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, heads, written, close: () => new Promise((r) => server.close(r)) };
}

/** Writes `raw` on one connection and reads until the server closes it or `until` holds. */
async function exchange(port: number, raw: string, until: (text: string) => boolean): Promise<{ text: string; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  let text = '';
  let closed = false;
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => { text += chunk; if (until(text)) socket.destroy(); });
  socket.on('end', () => { closed = true; });
  socket.write(raw);
  await once(socket, 'close');
  return { text, closed };
}

const get = (method = 'GET', extra = '') => `${method} /x HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
const responses = (text: string) => text.split('HTTP/1.1 ').length - 1;

test('the head kept for the same fields is sent as writeHead would send it: pipelined, once per response, in order', async (t) => {
  const kept = keptHead();
  const reused = await serve(() => FIELDS, kept);
  const plain = await serve(() => FIELDS);
  t.after(() => Promise.all([reused.close(), plain.close()]));
  const three = get() + get() + get();
  const a = await exchange(reused.port, three, (text) => responses(text) === 3 && text.endsWith(BODY.toString('latin1')));
  const b = await exchange(plain.port, three, (text) => responses(text) === 3 && text.endsWith(BODY.toString('latin1')));
  assert.equal(a.text, b.text);
  assert.match(a.text, /Connection: keep-alive\r\nKeep-Alive: timeout=7\r\n\r\n\{"kept":true\}\n$/);
  assert.equal(responses(a.text), 3);
  assert.ok(kept.text !== undefined, 'the text is kept');
  assert.ok(reused.heads.every((head) => head === kept.text), 'every response had the kept text');
  assert.equal(reused.written.count, 1, 'Node serialized the first head only');
  assert.equal(plain.written.count, 3);
});

test('a request that closes the connection gets Connection: close, and the kept text stays for the next', async (t) => {
  const kept = keptHead();
  const server = await serve(() => FIELDS, kept);
  t.after(server.close);
  await exchange(server.port, get(), (text) => text.endsWith(BODY.toString('latin1')));
  const text = kept.text;
  const closing = await exchange(server.port, get('GET', 'Connection: close\r\n'), () => false);
  assert.ok(closing.closed, 'the server closed the connection');
  assert.match(closing.text, /\r\nConnection: close\r\n\r\n/);
  assert.doesNotMatch(closing.text, /keep-alive/i);
  assert.equal(kept.text, text);
});

test('HEAD gets the head alone; other fields, or fields Node would add a Date to, get a head of their own', async (t) => {
  const kept = keptHead();
  let fields: OutgoingHttpHeaders = FIELDS;
  const server = await serve(() => fields, kept);
  t.after(server.close);
  const head = await exchange(server.port, get('HEAD') + get('HEAD'), (text) => responses(text) === 2 && text.endsWith('\r\n\r\n'));
  assert.equal(responses(head.text), 2);
  assert.doesNotMatch(head.text, /kept/);

  fields = { ...FIELDS, etag: '"v2"' };
  const changed = await exchange(server.port, get(), (text) => text.endsWith(BODY.toString('latin1')));
  assert.match(changed.text, /etag: "v2"/);
  assert.equal(server.written.count, 2, 'one head for HEAD, reused once; one for the new fields');

  // Without a Date Node adds its clock's: nothing is kept, each response is written afresh.
  const { date: _date, ...undated } = FIELDS;
  fields = undated;
  const fresh = await exchange(server.port, get() + get(), (text) => responses(text) === 2 && text.endsWith(BODY.toString('latin1')));
  assert.equal(kept.text, undefined);
  assert.equal(fresh.text.match(/\r\nDate: /g)?.length, 2);
});
