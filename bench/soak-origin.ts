import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { prng, WORDS } from './fixtures.ts';

/**
 * The soak's origin (bench/soak.ts): `GET /soak/<n>` for n in 0..URLS-1, an HTML page of 1-15 KB
 * (fixed per n, made from the fixtures' word list), `Cache-Control: public, max-age=5` and an ETag
 * (a stale copy is revalidated: a 304 when the tag matches), except every tenth URL, which is
 * `private, no-store`. Plain HTTP/1.1 on loopback.
 *
 *   node bench/soak-origin.ts [--port N] [--urls 2000]   prints "soak-origin http://127.0.0.1:PORT" when listening
 */

const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : Number(process.argv[at + 1]);
};
const URLS = flag('--urls', 2000);
const MAX_AGE = 5;

function page(n: number): Buffer {
  const rand = prng(1000 + n);
  const size = 1024 + Math.floor(rand() * 14 * 1024);
  const parts = [`<!doctype html>\n<html><head><meta charset="utf-8"><title>soak ${n}</title></head>\n<body>\n`];
  let length = parts[0].length;
  while (length < size) {
    const words = Array.from({ length: 12 }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
    const line = `<p id="p${parts.length}">${words} ${Math.floor(rand() * 1e6)}.</p>\n`;
    parts.push(line);
    length += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

const pages = Array.from({ length: URLS }, (_, n) => {
  const body = page(n);
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`, cacheable: n % 10 !== 0 };
});

const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  const m = /^\/soak\/(\d+)(?:\?|$)/.exec(req.url ?? '');
  const p = m ? pages[Number(m[1])] : undefined;
  if (!p) {
    res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 10 }).end('not found\n');
    return;
  }
  const headers = { 'content-type': 'text/html; charset=utf-8', 'cache-control': p.cacheable ? `public, max-age=${MAX_AGE}` : 'private, no-store', etag: p.etag };
  if (req.headers['if-none-match'] === p.etag) {
    res.writeHead(304, headers).end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': p.body.length }).end(req.method === 'HEAD' ? undefined : p.body);
});

server.listen(flag('--port', 0), '127.0.0.1', () => {
  console.log(`soak-origin http://127.0.0.1:${(server.address() as { port: number }).port}`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
