import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { h1, h2, startOutpost } from '../helpers/outpost.ts';
import { makeCa, makeLeaf, type PemFiles } from '../helpers/pki.ts';

/**
 * HTTP/2 towards the origin (`http2` per upstream): the origin is a node:http2 server that also
 * speaks HTTP/1.1, so what it observes shows which protocol Outpost chose.
 */

let ca: PemFiles;
let secure: Http2SecureServer;
let cleartext: Http2Server;
let secureUrl: string;
let cleartextUrl: string;
const sessions = new Set<unknown>();
let open = 0;
let mostOpen = 0;

/** Answers the protocol it was asked over; `/slow` holds the answer 30 ms, counting streams open at once. */
function answer(req: Http2ServerRequest, res: Http2ServerResponse) {
  if (req.httpVersion === '2.0') sessions.add(req.stream.session);
  const send = () => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`protocol ${req.httpVersion} ${req.method} ${req.url} ${req.headers['x-forwarded-proto']}`);
  };
  if (req.url !== '/slow') return send();
  open++;
  mostOpen = Math.max(mostOpen, open);
  setTimeout(() => { open--; send(); }, 30);
}

before(async () => {
  ca = await makeCa('Outpost Test H2 CA');
  const leaf = await makeLeaf(ca, 'h2.internal', { dns: ['h2.internal'] });
  secure = createSecureServer({ cert: leaf.cert, key: leaf.key, allowHTTP1: true }, answer);
  cleartext = createServer(answer);
  const listen = (server: Http2SecureServer | Http2Server, scheme: string) =>
    new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`${scheme}://127.0.0.1:${(server.address() as { port: number }).port}`)));
  secureUrl = await listen(secure, 'https');
  cleartextUrl = await listen(cleartext, 'http');
});

after(() => {
  secure.close();
  cleartext.close();
});

const tls = () => ({ ca: ca.certFile, servername: 'h2.internal' });

test('http2: true: the origin observes protocol 2 (ALPN over TLS), for HTTP/2 and HTTP/1.1 clients alike; without it, 1.1', async () => {
  const outpost = await startOutpost({
    sites: [{
      hosts: ['*'], cache: { enabled: false },
      origin: { upstreams: [{ url: secureUrl, http2: true, tls: tls() }] },
      routes: [{ path: '/h1/', origin: { upstreams: [{ url: secureUrl, tls: tls() }] } }],
    }],
  });
  try {
    assert.equal((await h2(`${outpost.url}/a?x=1`)).body.toString(), 'protocol 2.0 GET /a?x=1 https');
    assert.equal((await h1(`${outpost.url}/b`, { method: 'POST', body: 'data' })).body.toString(), 'protocol 2.0 POST /b https');
    assert.equal((await h2(`${outpost.url}/h1/c`)).body.toString(), 'protocol 1.1 GET /h1/c https');
  } finally {
    await outpost.close();
  }
});

test('http2 on an http:// upstream is h2c with prior knowledge', async () => {
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [{ url: cleartextUrl, http2: true }] } }] });
  try {
    assert.equal((await h2(`${outpost.url}/clear`)).body.toString(), 'protocol 2.0 GET /clear https');
  } finally {
    await outpost.close();
  }
});

test('its own limits: one connection, at most 2 streams at once on it', async () => {
  const outpost = await startOutpost({
    sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [{ url: secureUrl, http2: { connections: 1, maxConcurrentStreams: 2 }, tls: tls() }] } }],
  });
  try {
    sessions.clear();
    mostOpen = 0;
    const answers = await Promise.all(Array.from({ length: 6 }, () => h2(`${outpost.url}/slow`)));
    for (const res of answers) assert.equal(res.body.toString(), 'protocol 2.0 GET /slow https');
    assert.equal(sessions.size, 1, 'one connection');
    assert.equal(mostOpen, 2, 'two streams at a time');
  } finally {
    await outpost.close();
  }
});
