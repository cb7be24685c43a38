import { readFileSync } from 'node:fs';
import {
  constants as h2, createSecureServer, type IncomingHttpHeaders, type Http2ServerRequest, type Http2ServerResponse,
  type OutgoingHttpHeaders, type ServerHttp2Stream,
} from 'node:http2';
import { brotliCompressSync, constants as zlib } from 'node:zlib';
import { Pool, buildConnector, type Dispatcher } from 'undici';
import { QUALITY, brotliWindowFor } from '../src/compress/encoders.ts';
import { CACHEABLE, PATHS, RELAYED_PATHS, UNCACHEABLE, fixtures, type Fixture } from './fixtures.ts';

/**
 * The ceiling: what a Node server reaches on this machine when it does nothing but answer. One
 * node:http2 createSecureServer({ allowHTTP1: true }), every answer from memory (precompressed where
 * the scenario asks for an encoding), no cache, no routing beyond one map lookup. HTTP/2 streams use
 * the core API (stream.respond with a flat header list), HTTP/1.1 the compatibility API: the
 * fastest path for each.
 *
 * Given the fixture origin (--origin), the answer no edge may keep (the uncacheable API of the pass
 * rows) is relayed to it instead, as simply as Node and undici allow: one `dispatch` per request
 * with the request's own fields, the whole answer collected, its fields copied once less the
 * hop-by-hop ones, sent in one write. For those rows the ceiling is then the floor of a proxy in
 * Node, not an answer from memory. The miss row's new URLs of the page are relayed too, and their
 * answer Brotli-encoded once at Outpost's fast quality and both bodies kept (missFloor): the floor
 * of a miss in Node. Uploads are still received and answered here: relayed this
 * simply (a Readable per body, one socket write per chunk) they cost more than Outpost's.
 *
 *   node bench/ceiling.ts --cert FILE --key FILE [--port N] [--origin URL --origin2 URL --origin-h2 URL]
 *     prints "ceiling https://127.0.0.1:PORT"
 */

type Answer = { status: number; headers: OutgoingHttpHeaders; body: Buffer; h2list?: string[] };

/** The h2 header block as a flat list, made once: stream.respond's cheapest form (an object is copied field by field first). */
function h2list(a: Answer): string[] {
  a.h2list ??= [h2.HTTP2_HEADER_STATUS, String(a.status), ...Object.entries(a.headers).flatMap(([name, value]) => Array.isArray(value) ? value.flatMap((v) => [name, v]) : [name, String(value)])];
  return a.h2list;
}

function variants(f: Fixture, cacheControl: string, negotiate: boolean): (acceptEncoding: string | undefined) => Answer {
  const base = { 'content-type': f.type, 'cache-control': cacheControl, ...(negotiate ? { vary: 'accept-encoding' } : {}) };
  const identity: Answer = { status: 200, headers: { ...base, etag: f.etag, 'content-length': f.body.length }, body: f.body };
  if (!negotiate) return () => identity;
  const br: Answer = { status: 200, headers: { ...base, etag: f.etag.replace(/"$/, '-br"'), 'content-encoding': 'br', 'content-length': f.br.length }, body: f.br };
  const gzip: Answer = { status: 200, headers: { ...base, etag: f.etag.replace(/"$/, '-gz"'), 'content-encoding': 'gzip', 'content-length': f.gzip.length }, body: f.gzip };
  // The runner sends exactly "br", "gzip" or nothing; a substring test is all the negotiation needed.
  return (ae) => (ae === undefined ? identity : ae.includes('br') ? br : ae.includes('gzip') ? gzip : identity);
}

const page = variants(fixtures.page, CACHEABLE, true);
const GET: Record<string, ((ae: string | undefined) => Answer) | undefined> = {
  [PATHS.small]: variants(fixtures.small, CACHEABLE, false),
  [PATHS.large]: variants(fixtures.large, CACHEABLE, false),
  [PATHS.page]: page,
  [PATHS.staticPage]: page,
  [PATHS.api]: variants(fixtures.api, UNCACHEABLE, false),
  [PATHS.apiPool]: variants(fixtures.api, UNCACHEABLE, false),
  [PATHS.apiH2]: variants(fixtures.api, UNCACHEABLE, false),
  [PATHS.feed]: variants(fixtures.feed, UNCACHEABLE, false),
  [PATHS.download]: variants(fixtures.large, UNCACHEABLE, false),
};
const notFound: Answer = { status: 404, headers: { 'content-type': 'text/plain', 'content-length': 10 }, body: Buffer.from('not found\n') };

function answerFor(method: string | undefined, url: string, ae: string | undefined): Answer {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const get = GET[path] ?? (path.startsWith(PATHS.burst) ? page : undefined);
  return get && method === 'GET' ? get(ae) : notFound;
}

function uploaded(received: number): Answer {
  const body = Buffer.from(JSON.stringify({ received }));
  return { status: 200, headers: { 'content-type': 'application/json', 'cache-control': UNCACHEABLE, 'content-length': body.length }, body };
}

const arg = (name: string) => { const i = process.argv.indexOf(name); return i === -1 ? undefined : process.argv[i + 1]; };

// --- relaying to the origin (--origin): the uncacheable API ------------------------------------------

const pool = (url: string | undefined, h2c = false): Pool | undefined => url === undefined ? undefined
  : new Pool(url, { connections: 128, ...(h2c ? { allowH2: true, connect: buildConnector({ allowH2: true, useH2c: true } as buildConnector.BuildOptions) } : {}) });
const origin = pool(arg('--origin'));
const origin2 = pool(arg('--origin2')) ?? origin;
const originH2 = pool(arg('--origin-h2'), true) ?? origin;
let turn = 0;
/** The pool a request is relayed to (round-robin over two for the pool route), or undefined: answered from memory. */
function relayTo(method: string | undefined, path: string): Pool | undefined {
  if (method !== 'GET' && method !== 'HEAD') return undefined;
  const q = path.indexOf('?');
  const target = q === -1 ? path : path.slice(0, q);
  if (!RELAYED_PATHS.includes(target)) return undefined;
  if (target === PATHS.apiH2) return originH2;
  return target === PATHS.apiPool && turn++ % 2 === 1 ? origin2 : origin;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);
/** The request's fields as the origin gets them: its own, less HTTP/2 pseudo-fields and hop-by-hop ones. */
function forwardedFields(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = { host: String(headers[':authority'] ?? headers.host ?? 'localhost') };
  for (const name in headers) {
    const value = headers[name];
    if (name.charCodeAt(0) !== 58 /* ':' */ && name !== 'host' && !HOP_BY_HOP.has(name) && value !== undefined) out[name] = value;
  }
  return out;
}

/** One exchange with the origin; `done` gets the answer, or a 502 when the exchange fails. */
function relay(to: Dispatcher, method: string, path: string, headers: IncomingHttpHeaders, done: (a: Answer) => void): void {
  const chunks: Buffer[] = [];
  let status = 502;
  let fields: IncomingHttpHeaders = {};
  to.dispatch({ method: method as Dispatcher.HttpMethod, path, headers: forwardedFields(headers) }, {
    onRequestStart() {},
    onResponseStart(_c, statusCode, responseHeaders) {
      status = statusCode;
      fields = responseHeaders;
    },
    onResponseData(_c, chunk) { chunks.push(chunk); },
    onResponseEnd() {
      const out: OutgoingHttpHeaders = {};
      for (const name in fields) if (!HOP_BY_HOP.has(name)) out[name] = fields[name];
      done({ status, headers: out, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
    },
    onResponseError() { done({ status: 502, headers: { 'content-length': 0 }, body: Buffer.alloc(0) }); },
  });
}

// --- the miss floor (--origin): a new URL of the page, fetched, encoded once and kept -------------

/** What a miss keeps: both bodies, up to config/bench.yaml's cache.maxSize, the oldest let go first. */
const KEEP_BYTES = 512 * 1024 * 1024;
const kept = new Map<string, Buffer[]>();
let keptBytes = 0;
const MISS_PREFIX = `${PATHS.page}?miss=`;
const isMiss = (method: string | undefined, path: string) => method === 'GET' && path.startsWith(MISS_PREFIX);

/**
 * The miss row's work done as simply as Node allows: the origin asked for identity (one `dispatch`,
 * the answer collected), the body Brotli-encoded once at Outpost's fast quality with the size hint
 * and the window Outpost fits to it (brotliCompressSync costs what Outpost's reused encoder does
 * within a few µs) when the client takes br, both bodies kept as they are, the answer sent in one
 * write. No cache semantics, no key, no coalescing: the floor of a miss in Node, which a
 * comparison with nginx's CPU per miss needs.
 */
function missFloor(to: Dispatcher, path: string, headers: IncomingHttpHeaders, done: (a: Answer) => void): void {
  const { 'accept-encoding': acceptEncoding, ...rest } = headers;
  relay(to, 'GET', path, rest, (a) => {
    if (a.status !== 200 || !String(acceptEncoding ?? '').includes('br')) return done(a);
    const br = brotliCompressSync(a.body, { params: {
      [zlib.BROTLI_PARAM_QUALITY]: QUALITY.fast.br,
      [zlib.BROTLI_PARAM_SIZE_HINT]: a.body.length,
      [zlib.BROTLI_PARAM_LGWIN]: brotliWindowFor(a.body.length),
    } });
    kept.set(path, [a.body, br]);
    keptBytes += a.body.length + br.length;
    for (const [oldest, [identity, encoded]] of kept) {
      if (keptBytes <= KEEP_BYTES) break;
      kept.delete(oldest);
      keptBytes -= identity.length + encoded.length;
    }
    const etag = typeof a.headers.etag === 'string' ? { etag: a.headers.etag.replace(/"$/, '-br"') } : {};
    done({ status: 200, headers: { ...a.headers, ...etag, 'content-encoding': 'br', vary: 'accept-encoding', 'content-length': br.length }, body: br });
  });
}

function onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
  const method = headers[h2.HTTP2_HEADER_METHOD] as string;
  const path = headers[h2.HTTP2_HEADER_PATH] as string;
  const respond = (a: Answer) => {
    if (stream.destroyed) return;
    stream.respond(h2list(a).slice()); // a copy: Node appends `date` to the list it is given
    stream.end(a.body);
  };
  const to = relayTo(method, path);
  if (to !== undefined) {
    stream.on('error', () => {}); // a reset while the origin answers
    return relay(to, method, path, headers, respond);
  }
  if (origin !== undefined && isMiss(method, path)) {
    stream.on('error', () => {});
    return missFloor(origin, path, headers, respond);
  }
  if (method === 'POST' && path === PATHS.upload) {
    let received = 0;
    stream.on('data', (chunk: Buffer) => { received += chunk.length; });
    stream.on('end', () => respond(uploaded(received)));
    return;
  }
  respond(answerFor(method, path, headers['accept-encoding'] as string | undefined));
}

function onRequest(req: Http2ServerRequest, res: Http2ServerResponse): void {
  const respond = (a: Answer) => { res.writeHead(a.status, a.headers); res.end(a.body); };
  const to = relayTo(req.method, req.url);
  if (to !== undefined) return relay(to, req.method, req.url, req.headers, respond);
  if (origin !== undefined && isMiss(req.method, req.url)) return missFloor(origin, req.url, req.headers, respond);
  if (req.method === 'POST' && req.url === PATHS.upload) {
    let received = 0;
    req.on('data', (chunk: Buffer) => { received += chunk.length; });
    req.on('end', () => respond(uploaded(received)));
    return;
  }
  respond(answerFor(req.method, req.url, req.headers['accept-encoding']));
}

const server = createSecureServer({
  allowHTTP1: true,
  cert: readFileSync(arg('--cert')!),
  key: readFileSync(arg('--key')!),
  settings: { maxConcurrentStreams: 128 },
});
// Adding a 'request' listener makes node:http2 wrap every HTTP/2 stream in the compatibility API
// too; drop that wrapper so HTTP/2 streams reach onStream alone and HTTP/1.1 reaches onRequest.
server.on('request', onRequest);
server.removeAllListeners('stream');
server.on('stream', onStream);
server.listen(Number(arg('--port') ?? 0), '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') console.log(`ceiling https://127.0.0.1:${address.port}`);
});
process.on('SIGTERM', () => { server.close(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
