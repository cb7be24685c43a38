import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Session, ServerHttp2Stream, IncomingHttpHeaders as Http2Headers } from 'node:http2';
import type { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { clientError, type OutpostError } from '../errors.ts';
import { PROXIED_METHODS } from '../http/methods.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { informationalHttp1, informationalHttp2 } from './respond.ts';
import { NO_HEADERS, type RequestFacts } from '../observability/channels.ts';
import type { AbortSource } from '../pipeline/abort-watch.ts';

/**
 * The request adapter: HTTP/2 stream headers or an HTTP/1.1 IncomingMessage become one Context.
 * Everything here is client input: each check throws a precise 400.
 */

// RFC 3986 host: reg-name (letters, digits, '-', '.', '_' seen in the wild) or an IP literal; optional port.
const AUTHORITY = /^(?:[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?\.?|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/i;
// Visible ASCII without '#': the characters an origin-form target may carry (RFC 9112 §3.2.1).
const TARGET = /^\/[\x21-\x22\x24-\x7e]*$/;

/** The last authority checked and its host: nearly every request on a connection names the same one. */
let lastAuthority = '';
let lastHost = '';

function splitAuthority(authority: string): string {
  if (authority === lastAuthority) return lastHost;
  if (!AUTHORITY.test(authority)) throw clientError.badRequest(`invalid host ${JSON.stringify(authority.slice(0, 100))}`);
  const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.replace(/:\d+$/, '');
  lastHost = host.toLowerCase().replace(/\.$/, '');
  lastAuthority = authority;
  return lastHost;
}

interface Parsed { path: string; query: string; target: string; authority?: string }

/** Origin-form, or absolute-form whose authority then replaces Host (RFC 9112 §3.2.2). */
function parseTarget(raw: string | undefined): Parsed {
  if (raw === undefined || raw === '') throw clientError.badRequest('missing request target');
  let target = raw;
  let authority: string | undefined;
  if (!raw.startsWith('/')) {
    const match = /^https?:\/\/([^/?#]*)(.*)$/i.exec(raw);
    if (!match || match[1] === '' || match[1].includes('@')) throw clientError.badRequest('invalid request target');
    authority = match[1];
    target = match[2] === '' ? '/' : match[2].startsWith('?') ? `/${match[2]}` : match[2];
  }
  if (!TARGET.test(target)) throw clientError.badRequest('invalid request target');
  const q = target.indexOf('?');
  return q === -1
    ? { target, path: target, query: '', authority }
    : { target, path: target.slice(0, q), query: target.slice(q), authority };
}

const EMPTY_NOTES = () => new Map<string, string>();

/** IPv4-mapped IPv6 peers (::ffff:1.2.3.4, as a dual-stack socket reports them) read as IPv4, once, here. */
export const plainAddress = (address: string | undefined) =>
  address === undefined ? '' : address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;

interface Peer {
  readonly address: string;
  readonly port: number;
}
const NO_PEER: Peer = { address: '', port: 0 };
const sessionPeers = new WeakMap<Http2Session, Peer>();

/**
 * The client of an HTTP/2 stream, read once per session: `session.socket` is a Proxy (node:http2),
 * and its two fields cost ~155 ns per request through it against ~20 for this lookup. Not kept
 * while the socket is gone (its address reads undefined).
 */
export function peerOf(stream: ServerHttp2Stream): Peer {
  const session = stream.session;
  if (session === undefined) return NO_PEER;
  const kept = sessionPeers.get(session);
  if (kept !== undefined) return kept;
  const socket = session.socket;
  const address = socket?.remoteAddress;
  if (address === undefined) return NO_PEER;
  const peer = { address: plainAddress(address), port: socket.remotePort ?? 0 };
  sessionPeers.set(session, peer);
  return peer;
}

/**
 * Where a context's interim responses go: its HTTP/2 stream or HTTP/1.1 ServerResponse, in an own
 * enumerable symbol field, so the `{ ...ctx, headers }` copies stages hand on keep it.
 */
const CLIENT = Symbol('outpost.client');
interface Client<T> { [CLIENT]?: T }
type InterimHeaders = Readonly<Record<string, string | string[]>>;

/**
 * `ctx.sendInformational`: one shared function per protocol that finds the client through `this`
 * (the context or a copy of it), so a request allocates no closure for a hook most responses never
 * use. Called other than as a method (`ctx.sendInformational?.(…)`) they find no client and do nothing.
 */
function sendInformationalHttp2(this: Client<ServerHttp2Stream> | undefined, status: number, headers: InterimHeaders): void {
  const stream = this?.[CLIENT];
  if (stream !== undefined) informationalHttp2(stream, status, headers);
}

function sendInformationalHttp1(this: Client<ServerResponse> | undefined, status: number, headers: InterimHeaders): void {
  const res = this?.[CLIENT];
  if (res !== undefined) informationalHttp1(res, status, headers);
}

/**
 * The request's fields without the pseudo-fields, from the flat list the 'stream' event hands over
 * beside Node's object ([name, value, ...], in the order received): that object has a null
 * prototype, a dictionary to V8, and a for-in over it cost ~250 ns for seven fields against ~40
 * for this loop (micro-benchmark, Node 24). A field that comes more
 * than once (and Set-Cookie, always a list) is taken from Node's object, which merged it: Cookie
 * lines joined with "; " (RFC 9113 §8.2.3), a single-value field's first line kept, others joined
 * with ", ".
 */
function regularFieldsOf(rawHeaders: readonly string[], merged: Http2Headers): IncomingHttpHeaders {
  const plain: IncomingHttpHeaders = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    plain[name] = plain[name] === undefined && name !== 'set-cookie' ? rawHeaders[i + 1] : merged[name] as string;
  }
  return plain;
}

/** An HTTP/2 request that waits for a 100 (Continue) before it sends its body (RFC 9110 §10.1.1). */
export function expectsContinue(headers: Http2Headers): boolean {
  const expect = headers.expect;
  return typeof expect === 'string' && expect.toLowerCase() === '100-continue';
}

/**
 * RFC 9113 §8.2.1 field validity, as far as it can be checked here. nghttp2 checks every field of
 * a HEADERS frame before Node builds `headers`: an invalid name or pseudo-header value resets the
 * stream with PROTOCOL_ERROR, as the RFC asks. A regular field whose value has CR, LF, NUL, another
 * control character or leading/trailing whitespace is a malformed request too, but Node 24 installs
 * an invalid-header callback that tells nghttp2 to drop the field and go on (node_http2.cc,
 * OnInvalidHeader: "we are intentionally being more lenient"), so such a field never reaches
 * JavaScript, the stages or the origin: no injection is possible, and the request is served
 * without it instead of being refused. No option changes that; the test that pins it
 * (test/server/protection.test.ts) will tell when a Node upgrade lets such values through, and
 * then they are to be refused here.
 */
export function contextFromHttp2(stream: ServerHttp2Stream, headers: Http2Headers, abort: AbortSource, rawHeaders: readonly string[]): Context {
  let method = headers[':method'] as string;
  const path = headers[':path'] as string | undefined;
  let upgrade: string | undefined;
  if (method === 'CONNECT') {
    // RFC 8441 §4: a CONNECT with :protocol (nghttp2 lets one through because we advertise
    // SETTINGS_ENABLE_CONNECT_PROTOCOL, and only with :scheme and :path) asks for a WebSocket on
    // this stream: it goes through the chain as the GET of an HTTP/1.1 handshake would
    // (server/upgrade.ts). RFC 9113 §8.5's CONNECT, without :path, is a forward proxy's job, and
    // HTTP/1.1's CONNECT gets the same 405 (listener.ts refuseConnect), as does another :protocol.
    if (headers[':protocol'] !== 'websocket') throw clientError.methodNotAllowed(PROXIED_METHODS);
    method = 'GET';
    upgrade = 'websocket';
  }
  // RFC 9113 §8.3.1: :path is origin-form (or '*' for OPTIONS: the listener answers it, isServerOptions).
  if (path === undefined || path.charCodeAt(0) !== 47 /* '/' */) throw clientError.badRequest('invalid :path');
  // RFC 9113 §8.3.1 lets :scheme name other schemes for a proxy that translates them; this is no
  // forward proxy, and a request for ftp://... is not one for this site, nor to be cached as an
  // https one (nginx 1.22 serves it as if it were).
  const scheme = headers[':scheme'];
  if (scheme !== 'https' && scheme !== 'http') throw clientError.badRequest('invalid :scheme');
  const parsed = parseTarget(path);
  const hostHeader = headers.host;
  const authority = (headers[':authority'] as string | undefined) ?? (typeof hostHeader === 'string' ? hostHeader : undefined);
  if (authority === undefined) throw clientError.badRequest('missing :authority');
  // RFC 9113 §8.3.1: a Host that names another entity than :authority makes the request malformed.
  if (headers[':authority'] !== undefined && typeof hostHeader === 'string' && hostHeader.toLowerCase() !== authority.toLowerCase()) {
    throw clientError.badRequest('Host and :authority differ');
  }
  // RFC 9110 §10.1.1: 100-continue is the only expectation; any other on a request with content
  // gets 417, as Node's HTTP/1.1 server answers it (the 100 itself: the listener, expectsContinue).
  // Looked at only then: a field read from Node's header object costs every GET a dictionary look-up.
  if (!stream.endAfterHeaders && headers.expect !== undefined && !expectsContinue(headers)) throw clientError.expectationFailed();
  const plain = regularFieldsOf(rawHeaders, headers);
  // RFC 8441 §5: no Sec-WebSocket-Key over HTTP/2; the origin is asked over HTTP/1.1, where the
  // handshake needs one (RFC 6455 §4.1), and its Accept is checked against it (upgrade.ts).
  if (upgrade !== undefined) plain['sec-websocket-key'] = randomBytes(16).toString('base64');
  const peer = peerOf(stream);
  const ctx: Context & Client<ServerHttp2Stream> = {
    method,
    scheme: 'https',
    authority,
    host: splitAuthority(authority),
    target: parsed.target,
    path: parsed.path,
    query: parsed.query,
    headers: plain,
    remoteAddress: peer.address,
    remotePort: peer.port,
    httpVersion: '2',
    body: stream as unknown as Readable,
    // An extended CONNECT's stream carries the tunnel's bytes once the origin agrees, not a body.
    hasBody: upgrade === undefined && !stream.endAfterHeaders,
    signal: abort.signal,
    startedAt: process.hrtime.bigint(),
    sendInformational: sendInformationalHttp2,
    notes: EMPTY_NOTES(),
    // Declared here, set by the router: the object keeps one shape on the hot path.
    site: undefined,
    route: undefined,
    upgrade, // RFC 9113 §8.6: HTTP/2 has no Upgrade; RFC 8441's extended CONNECT stands in for it
  };
  // Assigned, not a computed key in the literal: that one cost ~60 ns per request (Node 24, measured).
  ctx[CLIENT] = stream;
  return ctx;
}

/** How many Host field lines an HTTP/1.1 request carried (`req.headers.host` keeps only the first). */
export function hostLines(req: IncomingMessage): number {
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++;
  return hosts;
}

/**
 * HTTP/1.1 framing checks Node leaves to us. Each failure also ends the connection after its
 * answer (`res.shouldKeepAlive`): where the message's framing is in doubt, so is where the next
 * request starts, and the listener serves nothing Node parsed behind it (`faultyFraming`), as nginx
 * closes after such a 400.
 * - a request line naming another major version (`HTTP/2.0`, which Node's parser reads as
 *   2.0 and would have served as 1.1) → 505 (RFC 9110 §15.6.6), as nginx answers;
 * - RFC 9112 §3.2: "more than one Host header field line" → 400 (Node keeps the first);
 * - RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
 *   Transfer-Encoding header field MUST treat the message as if the framing is faulty, even if a
 *   Content-Length is present, and close the connection after processing the message" → 400, as
 *   nginx answers (Node decodes the chunked body and keeps the connection: what follows would be
 *   read as the next request, where an HTTP/1.0 hop before us saw body bytes);
 * - RFC 9112 §6.1: a transfer coding other than chunked is not understood → 501 (Node passes
 *   `gzip, chunked` bodies through still coded).
 */
function checkFraming(req: IncomingMessage, res: ServerResponse): void {
  const faulty = framingFault(req);
  if (faulty === undefined) return;
  res.shouldKeepAlive = false;
  throw faulty;
}

export function framingFault(req: IncomingMessage): OutpostError | undefined {
  if (req.httpVersionMajor !== 1) return clientError.versionNotSupported(`HTTP/${req.httpVersion} is not supported: use HTTP/1.1 or HTTP/2 (ALPN)`);
  if (hostLines(req) > 1) return clientError.badRequest('more than one Host header');
  const te = req.headers['transfer-encoding'];
  if (te === undefined) return undefined;
  if (req.httpVersionMinor === 0) return clientError.badRequest('Transfer-Encoding in an HTTP/1.0 request');
  if (te.trim().toLowerCase() !== 'chunked') return clientError.notImplemented(`transfer coding ${JSON.stringify(te.slice(0, 50))} not supported`);
  return undefined;
}

/**
 * RFC 9110 §9.3.7: `OPTIONS *` asks about the server in general, not a resource ("ping"). It is
 * answered here, with the methods Outpost forwards, as Apache and Go's server do (nginx answers
 * 400); nothing reaches an origin. The request adapters refuse `*` as a target, so the listener
 * asks this only for a request they refused.
 */
export const isServerOptions = (method: string, target: unknown): boolean => method === 'OPTIONS' && target === '*';

export function serverOptionsReply(): Reply {
  return { status: 200, headers: { allow: PROXIED_METHODS, 'content-length': 0 }, body: null };
}

/** `upgrade`: the protocol the request asks to switch to, when the listener takes that upgrade (server/upgrade.ts). */
export function contextFromHttp1(req: IncomingMessage, res: ServerResponse, scheme: 'https' | 'http', abort: AbortSource, upgrade?: string): Context {
  checkFraming(req, res);
  const parsed = parseTarget(req.url);
  const host = req.headers.host;
  const authority = parsed.authority ?? host ?? '';
  // Node already answers 400 to an HTTP/1.1 request without Host (RFC 9112 §3.2); HTTP/1.0 may omit it.
  const ctx: Context & Client<ServerResponse> = {
    method: req.method ?? 'GET',
    scheme,
    authority,
    host: authority === '' ? '' : splitAuthority(authority),
    target: parsed.target,
    path: parsed.path,
    query: parsed.query,
    headers: req.headers,
    remoteAddress: plainAddress(req.socket.remoteAddress),
    remotePort: req.socket.remotePort ?? 0,
    httpVersion: req.httpVersion,
    body: req,
    hasBody: req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined,
    signal: abort.signal,
    startedAt: process.hrtime.bigint(),
    // RFC 9110 §15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client."
    sendInformational: req.httpVersionMajor === 1 && req.httpVersionMinor === 0 ? undefined : sendInformationalHttp1,
    notes: EMPTY_NOTES(),
    // Declared here, set by the router: the object keeps one shape on the hot path.
    site: undefined,
    route: undefined,
    upgrade,
  };
  ctx[CLIENT] = res;
  return ctx;
}

/**
 * For the access log of a request that never became a Context (the listener refused it: 400,
 * 413, 431, 501): what could be read, unvalidated, cut to a sane length.
 */
export function factsFromHttp2(stream: ServerHttp2Stream, headers: Http2Headers): RequestFacts {
  const authority = headers[':authority'] ?? headers.host;
  return {
    method: String(headers[':method'] ?? '-').slice(0, 32),
    target: String(headers[':path'] ?? '-').slice(0, 2048),
    host: typeof authority === 'string' ? authority.slice(0, 256).toLowerCase() : '',
    remoteAddress: peerOf(stream).address,
    httpVersion: '2',
    headers: NO_HEADERS,
    startedAt: process.hrtime.bigint(),
  };
}

export function factsFromHttp1(req: IncomingMessage): RequestFacts {
  return {
    method: (req.method ?? '-').slice(0, 32),
    target: (req.url ?? '-').slice(0, 2048),
    host: (req.headers.host ?? '').slice(0, 256).toLowerCase(),
    remoteAddress: plainAddress(req.socket.remoteAddress),
    httpVersion: req.httpVersion,
    headers: req.headers,
    startedAt: process.hrtime.bigint(),
  };
}
