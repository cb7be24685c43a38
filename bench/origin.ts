import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2cServer } from 'node:http2';
import { BURST_DELAY_MS, CACHEABLE, UNCACHEABLE, fixtures, type Fixture } from './fixtures.ts';

/**
 * The fixture origin: plain HTTP/1.1 on loopback, fixed bytes, and a count of the requests that
 * reach it per path (GET /__counts, not counted), so the runner sees what each edge let through.
 * Paths are accepted with or without the edge's /o (or /o2, /o3) prefix. It listens on two HTTP/1.1
 * ports, one process behind both, so a pool of two upstreams costs the origin what one does, and on
 * a third port for HTTP/2 over cleartext (h2c, prior knowledge): the same answers over HTTP/2.
 *
 *   node bench/origin.ts [--port N] [--port2 M] [--port3 K]
 *     prints "origin http://127.0.0.1:PORT http://127.0.0.1:PORT2 h2c http://127.0.0.1:PORT3" when listening
 */

const CACHEABLE_PATHS: Record<string, Fixture> = {
  '/page.html': fixtures.page,
  '/small.json': fixtures.small,
  '/large.bin': fixtures.large,
};

const counts = new Map<string, number>();
let total = 0;

function send(res: ServerResponse, status: number, headers: Record<string, string | number>, body?: Buffer): void {
  res.writeHead(status, headers);
  res.end(body);
}

function cacheable(req: IncomingMessage, res: ServerResponse, f: Fixture): void {
  const headers = { 'content-type': f.type, 'cache-control': CACHEABLE, etag: f.etag };
  if (req.headers['if-none-match'] === f.etag) return send(res, 304, headers);
  send(res, 200, { ...headers, 'content-length': f.body.length }, req.method === 'HEAD' ? undefined : f.body);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = (q === -1 ? url : url.slice(0, q)).replace(/^\/o[23]?(?=\/)/, '');
  if (path === '/__counts') {
    return send(res, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' },
      Buffer.from(JSON.stringify({ total, paths: Object.fromEntries(counts) })));
  }
  total++;
  counts.set(path, (counts.get(path) ?? 0) + 1);

  if (req.method === 'POST' && path === '/upload') {
    let received = 0;
    req.on('data', (chunk: Buffer) => { received += chunk.length; });
    req.on('end', () => {
      const body = Buffer.from(JSON.stringify({ received }));
      send(res, 200, { 'content-type': 'application/json', 'cache-control': UNCACHEABLE, 'content-length': body.length }, body);
    });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { allow: 'GET, HEAD', 'content-length': 0 });
  const f = CACHEABLE_PATHS[path];
  if (f) return cacheable(req, res, f);
  if (path === '/api') {
    return send(res, 200, { 'content-type': fixtures.api.type, 'cache-control': UNCACHEABLE, 'content-length': fixtures.api.body.length },
      req.method === 'HEAD' ? undefined : fixtures.api.body);
  }
  if (path === '/download') {
    return send(res, 200, { 'content-type': fixtures.large.type, 'cache-control': UNCACHEABLE, 'content-length': fixtures.large.body.length },
      req.method === 'HEAD' ? undefined : fixtures.large.body);
  }
  if (path === '/feed') {
    // gzipped once (as an origin's compression middleware would on every response): the edge's work is what is measured
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? fixtures.feed.gzip : fixtures.feed.body;
    return send(res, 200, { 'content-type': fixtures.feed.type, 'cache-control': UNCACHEABLE, vary: 'Accept-Encoding', 'content-length': body.length, ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
      req.method === 'HEAD' ? undefined : body);
  }
  if (path.startsWith('/burst/')) {
    setTimeout(() => cacheable(req, res, fixtures.page), BURST_DELAY_MS);
    return;
  }
  send(res, 404, { 'content-type': 'text/plain', 'content-length': 10 }, Buffer.from('not found\n'));
}

const flag = (name: string) => {
  const at = process.argv.indexOf(name);
  return at === -1 ? 0 : Number(process.argv[at + 1]);
};
// keepAliveTimeout above the edges' idle timeouts, so a proxy never reuses a socket we are closing.
const servers = [flag('--port'), flag('--port2')].map((port) => {
  const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 60_000 }, handle);
  return new Promise<{ server: typeof server; port: number }>((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
});
const listening = await Promise.all(servers);
// The compatibility API gives handle() the request and response shapes it already knows.
const h2c = createH2cServer({ settings: { maxConcurrentStreams: 256 } }, handle as unknown as Parameters<typeof createH2cServer>[1]);
const h2cPort = await new Promise<number>((resolve) => h2c.listen(flag('--port3'), '127.0.0.1', () => resolve((h2c.address() as { port: number }).port)));
console.log(`origin ${listening.map((l) => `http://127.0.0.1:${l.port}`).join(' ')} h2c http://127.0.0.1:${h2cPort}`);
process.on('SIGTERM', () => {
  let open = listening.length;
  for (const { server } of listening) {
    server.closeAllConnections();
    server.close(() => { if (--open === 0) process.exit(0); });
  }
});
