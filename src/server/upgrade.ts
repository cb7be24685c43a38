import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/schema.ts';
import { disposeBody, type Context, type Reply } from '../pipeline/context.ts';
import { AbortSource } from '../pipeline/abort-watch.ts';
import { errorReply } from '../pipeline/reply.ts';
import { clientError, originError } from '../errors.ts';
import { http } from './node-http.ts';
import { contextFromHttp1, factsFromHttp1 } from './request.ts';
import { withBodyLimits } from './body.ts';
import { listsToken } from '../http/field-syntax.ts';
import { webSocketAccept } from '../http/websocket.ts';
import { publishError, responseEndChannel, type RequestFacts } from '../observability/channels.ts';
import { http2HeaderList, reportOnClose, respondHttp1, respondHttp2, type Tally } from './respond.ts';
import type { Watched } from './idle-watch.ts';

/**
 * WebSocket upgrades over HTTP/1.1 (RFC 6455 §4, RFC 9110 §7.8), proxied as nginx does with
 * `proxy_set_header Upgrade/Connection` and Caddy does by default: the request goes through the
 * site's chain like any GET (routing, access rules, rate limits; the cache lets it pass), the
 * origin is asked to switch too, and only on its 101 do the two connections become one tunnel,
 * bytes copied both ways until either side closes. Any other answer from the chain (the origin's
 * 403, a 404 of a static route, a 429) is sent as an ordinary response and the connection is
 * closed: what the client sent after its request is never read as another request (the
 * smuggling a proxy that tunnels before the origin agreed lets through).
 *
 * HTTP/2 has no Upgrade (RFC 9113 §8.6): its clients open a WebSocket on a stream with RFC
 * 8441's extended CONNECT, which the listener offers (SETTINGS_ENABLE_CONNECT_PROTOCOL) and the
 * request adapter reads as the same GET (request.ts); the origin is asked as its own protocol has
 * it (an HTTP/1.1 Upgrade, or an extended CONNECT toward an HTTP/2 upstream, origin/proxy.ts), and
 * its switch becomes the stream's 200 (`tunnelResponder`).
 */

/**
 * Whether Node hands `req` over as an upgrade (the servers' `shouldUpgradeCallback`): a GET over
 * HTTP/1.1 asking for `websocket` in Upgrade with `upgrade` in Connection, and no content (one
 * with a body is no handshake, RFC 6455 §4.1). Anything else, `Upgrade: h2c` included, is
 * served as the plain request it also is, without switching.
 */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  if (req.method !== 'GET' || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1) return false;
  const headers = req.headers;
  if (headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')) return false;
  return listsToken(headers.upgrade, 'websocket') && listsToken(headers.connection, 'upgrade');
}

/** Tunnels open in this process, for metrics (`outpost_open_websockets`). */
let openCount = 0;
export const openTunnels = (): number => openCount;

/** The client connections of a listener's open tunnels: closed when it stops. */
export type Tunnels = Set<Duplex>;

/** What the listener lends the upgrade path. */
export interface UpgradeServing {
  readonly limits: Config['limits'];
  readonly tunnels: Tunnels;
  /** Whether the listener is closing: no new upgrade is taken. */
  draining(): boolean;
  /** Puts a connection Node handed over under the idle watch (limits.idleTimeout), unless it is there already. */
  watchIdle(socket: Socket): void;
  /** Puts an HTTP/2 tunnel under the idle watch; the returned function takes it off. */
  watchTunnel(tunnel: Watched): () => void;
  onError(where: string, error: unknown): void;
  /** Counts a request the adapter refused (a 400). */
  refused(error: unknown): void;
  /** Runs the site's chain for `ctx`; `respond` gets its reply, or its failure's. */
  runChain(ctx: Context, respond: (reply: Reply, request: Context) => void): void;
}

/**
 * The servers' 'upgrade' listener: Node hands over the connection and what came after the
 * request's head (`head`). An upgrade pipelined behind a request whose response is still going out
 * waits for it: answers go in order (RFC 9112 §9.3.2), one response at a time on a connection
 * (a second ServerResponse on it would throw here: a crash before this waited).
 */
export function upgradeListener(scheme: 'https' | 'http', serving: UpgradeServing): (req: IncomingMessage, socket: Socket, head: Buffer) => void {
  return (req, socket, head) => {
    // Node let go of the connection: its errors and its end are ours from here.
    socket.on('error', () => {});
    const ahead = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (ahead != null) return void ahead.once('finish', () => takeUpgrade(scheme, req, socket, head, serving));
    takeUpgrade(scheme, req, socket, head, serving);
  };
}

function takeUpgrade(scheme: 'https' | 'http', req: IncomingMessage, socket: Socket, head: Buffer, serving: UpgradeServing): void {
  if (serving.draining() || socket.destroyed) return void socket.destroy();
  // No timer of Node's closes it from here (the keep-alive one a response before may have set).
  socket.setTimeout(0);
  serving.watchIdle(socket);
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  try {
    res.assignSocket(socket);
  } catch (error) {
    // Another response on it after all (Node's state of another shape): never a crash.
    serving.onError('HTTP/1.1 upgrade', error);
    return void socket.destroy();
  }
  const abort = new AbortSource();
  socket.once('close', () => abort.abort());
  let ctx: Context;
  try {
    ctx = withBodyLimits(contextFromHttp1(req, res, scheme, abort, 'websocket'), serving.limits);
  } catch (err) {
    serving.refused(err);
    answerUpgrade(res, errorReply(err), factsFromHttp1(req), head, serving.tunnels);
    return;
  }
  serving.runChain(ctx, (reply, request) => answerUpgrade(res, reply, request, head, serving.tunnels));
}

/**
 * Answers an upgrade request with the chain's `reply` on `res` (a ServerResponse on the client's
 * connection, which Node has let go of): the origin's 101 and then the tunnel, or any other
 * answer, after which the connection is closed. `head`: what the client sent after its request's
 * head (its first frames), for the origin.
 */
export function answerUpgrade(res: ServerResponse, reply: Reply, request: RequestFacts, head: Buffer, tunnels: Tunnels): void {
  const client = res.socket;
  const origin = reply.tunnel;
  if (origin === undefined || reply.status !== 101 || client === null || client.destroyed) {
    origin?.destroy();
    respondHttp1(res, 'GET', reply, request);
    // Node's server no longer ends this connection after the response: here it is ended, and
    // nothing more is read from it.
    if (client !== null) {
      if (res.writableFinished) client.end();
      else res.once('finish', () => client.end());
    }
    return;
  }
  disposeBody(reply.body);
  // RFC 9110 §7.8: the 101 says what the connection switches to; Connection names Upgrade as
  // the hop-by-hop field it is. The rest are the origin's (Sec-WebSocket-Accept, -Protocol,
  // -Extensions, cookies), Via and Cache-Status.
  const headers = { ...reply.headers, connection: 'upgrade', upgrade: 'websocket' };
  try {
    res.writeHead(101, headers);
    res.flushHeaders();
  } catch (error) {
    // A field Node refuses (checked as for every response): nothing was sent, both connections go.
    publishError({ ctx: null, error, where: 'HTTP/1.1 upgrade 101' });
    origin.destroy();
    client.destroy();
    return;
  }
  counted(client, origin, request, { status: 101, headers, body: null }, tunnels);
  join(client, origin, head);
}

/**
 * An open tunnel's bookkeeping until `client` closes: in `tunnels` (the shutdown deadline's), in
 * `outpost_open_websockets`, and one access report then, `answer` with the bytes the origin sent.
 */
function counted(client: Duplex, origin: Duplex, request: RequestFacts, answer: Reply, tunnels: Tunnels, closed?: () => void): void {
  tunnels.add(client);
  const tally: Tally | null = responseEndChannel.hasSubscribers ? { bytes: 0, failed: false } : null;
  if (tally !== null) {
    reportOnClose(client, request, answer, tally);
    origin.on('data', (chunk: Buffer) => { tally.bytes += chunk.length; });
  }
  openCount++;
  client.once('close', () => {
    openCount--;
    tunnels.delete(client);
    closed?.();
  });
}

/**
 * The HTTP/2 listener's writer for extended CONNECT requests (RFC 8441): the origin's 101 becomes
 * the stream's 200 (§5: without Sec-WebSocket-Accept, whose key Outpost made up for the origin
 * and checks here, as a WebSocket client must: RFC 6455 §4.1), and then the stream and the
 * origin's connection are one tunnel; any other answer is an ordinary response, which ends the
 * stream. Tunnels close after `limits.idleTimeout` without a byte either way, and at the
 * shutdown deadline; the HTTP/2 stall sweep resets one whose client takes nothing (sendTimeout).
 * (The session's own idle watch counts the connection's bytes, which other streams may move, and
 * closes gracefully: it waits for open streams.)
 */
export function tunnelResponder(serving: Pick<UpgradeServing, 'tunnels' | 'draining' | 'watchTunnel'>): (stream: ServerHttp2Stream, method: string, reply: Reply, request: Context) => void {
  return (stream, _method, reply, request) => {
    const origin = reply.tunnel;
    const key = request.headers['sec-websocket-key'];
    if (origin === undefined || reply.status !== 101 || stream.destroyed) {
      origin?.destroy();
      // RFC 8441 §5: a 2xx is the client's sign that the WebSocket is open. An answer without a
      // tunnel (a static file, an origin that served a page) must not read so.
      if (reply.status >= 200 && reply.status < 300) {
        disposeBody(reply.body);
        return void refuse(stream, errorReply(clientError.notImplemented('Not Implemented: no WebSocket is served here')), request);
      }
      return void refuse(stream, reply, request);
    }
    if (serving.draining()) {
      origin.destroy();
      return void stream.close(h2.NGHTTP2_REFUSED_STREAM); // RFC 9113 §8.7: safe to retry elsewhere
    }
    if (typeof key !== 'string' || reply.headers['sec-websocket-accept'] !== webSocketAccept(key)) {
      origin.destroy();
      return void refuse(stream, errorReply(originError.badGateway('Bad Gateway: the origin\'s WebSocket handshake did not answer the key it was sent')), request);
    }
    disposeBody(reply.body);
    const headers: OutgoingHttpHeaders = {};
    for (const name in reply.headers) if (name !== 'sec-websocket-accept') headers[name] = reply.headers[name];
    try {
      stream.respond(http2HeaderList(200, headers));
    } catch (error) {
      publishError({ ctx: null, error, where: 'HTTP/2 WebSocket 200' });
      origin.destroy();
      stream.close(h2.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const unwatch = serving.watchTunnel({ bytes: tunnelBytes(stream, origin), close: () => stream.close(h2.NGHTTP2_CANCEL) });
    counted(stream, origin, request, { status: 200, headers, body: null }, serving.tunnels, unwatch);
    joinStream(stream, origin);
  };
}

/**
 * The bytes a tunnel has carried both ways, for its idle watch. An HTTP/1.1 origin's connection
 * carries them, and only them: its counts. An HTTP/2 upstream's stream (RFC 8441) has none of its
 * own: what goes through it is counted as it goes.
 */
function tunnelBytes(stream: ServerHttp2Stream, origin: Duplex): () => number {
  const carried = origin as Partial<Socket>;
  if (typeof carried.bytesRead === 'number') return () => (carried.bytesRead ?? 0) + (carried.bytesWritten ?? 0);
  let bytes = 0;
  const count = (chunk: Buffer) => { bytes += chunk.length; };
  stream.on('data', count);
  origin.on('data', count);
  return () => bytes;
}

/**
 * An answer other than the tunnel, as an ordinary response; then the stream is closed (RST_STREAM
 * NO_ERROR once the response is out, RFC 9113 §8.1): what the client would send on it is no
 * request body, and nothing else ends it.
 */
function refuse(stream: ServerHttp2Stream, reply: Reply, request: Context): void {
  respondHttp2(stream, 'GET', reply, request);
  closeOnceSent(stream);
}

/** Closes `stream` once our side of it has ended and all of it is sent. */
function closeOnceSent(stream: ServerHttp2Stream): void {
  if (stream.destroyed) return;
  if (stream.writableFinished) return void stream.close(h2.NGHTTP2_NO_ERROR);
  stream.once('finish', () => stream.close(h2.NGHTTP2_NO_ERROR));
}

/**
 * A stream and the origin's connection as one tunnel. Either side's end ends the other's writing
 * (the client's END_STREAM is the origin's FIN, and back); once the origin's side has gone and all
 * it sent is written, the stream is closed (RST_STREAM NO_ERROR: the client's side is not needed
 * any more, RFC 9113 §8.1). A reset stream or a failed connection takes the other down.
 */
function joinStream(stream: ServerHttp2Stream, origin: Duplex): void {
  const teardown = () => {
    stream.destroy();
    origin.destroy();
  };
  origin.on('error', teardown);
  stream.on('error', teardown);
  stream.once('close', () => origin.destroy());
  origin.once('close', () => {
    if (!stream.destroyed && !stream.writableEnded) stream.end();
    closeOnceSent(stream);
  });
  stream.pipe(origin);
  origin.pipe(stream);
}

/**
 * Copies bytes both ways (pipe: each side's pace holds the other back) until either closes or
 * fails; then both go. One side's end (a TCP FIN) ends the other's writing, as a tunnel should.
 */
function join(client: Duplex, origin: Duplex, head: Buffer): void {
  const teardown = () => {
    client.destroy();
    origin.destroy();
  };
  client.on('error', teardown);
  origin.on('error', teardown);
  client.once('close', teardown);
  origin.once('close', teardown);
  if (head.length > 0) origin.write(head);
  client.pipe(origin);
  origin.pipe(client);
}
