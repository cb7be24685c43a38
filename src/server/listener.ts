import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { createSecureServer, constants as h2, type Http2SecureServer, type Http2Session, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Server as NetServer, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.ts';
import { chainReply, type Handler } from '../pipeline/compose.ts';
import { errorReply, replyForError } from '../pipeline/reply.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { AbortSource } from '../pipeline/abort-watch.ts';
import { clientError, isOutpostError } from '../errors.ts';
import { contextFromHttp1, contextFromHttp2, expectsContinue, factsFromHttp1, factsFromHttp2, framingFault, isServerOptions, serverOptionsReply } from './request.ts';
import { informationalHttp2, respondHttp1, respondHttp2, sendTimeoutError } from './respond.ts';
import { errorReporter } from './error-report.ts';
import { stalledStreamWatch } from './h2-stalls.ts';
import { lingeringSockets } from './linger.ts';
import { withBodyLimits } from './body.ts';
import { answerClientError } from './client-error.ts';
import { loadCertificates, sniSelector, tlsProfile } from './tls.ts';
import { clientConnectionLimit } from './client-limit.ts';
import { nodeAdmission } from './node-connections.ts';
import { sharedWorkers } from '../runtime/primary-channel.ts';
import { confineStreamErrors, noteStreamReset } from './h2-confine.ts';
import { abortOnReset, watchStreamErrors } from './stream-listeners.ts';
import { renewBusySessions } from './h2-stream-tables.ts';
import { H2_SESSION_WINDOW, h2Limits, headerListSize } from './h2-limits.ts';
import { idleWatch, prefaceWatch, sessionWatched, socketWatched, socketWritesWatched } from './idle-watch.ts';
import { closeIfBodyUnread } from './unread-body.ts';
import type { Timers } from '../timers.ts';
import { frontCounters } from './counters.ts';
import { publishError } from '../observability/channels.ts';

export { frontStats, type FrontCounters } from './counters.ts';
import { frontDoorFor } from './front-doors.ts';
import { createPlainServer } from './plain-listener.ts';
import { isWebSocketUpgrade, tunnelResponder, upgradeListener, type Tunnels, type UpgradeServing } from './upgrade.ts';
import { PROXIED_METHODS } from '../http/methods.ts';
import type { ReadyReplies } from './replies.ts';
import { fixedChain, type Dispatch } from './dispatch.ts';
import type { FrontDoorStats } from './front-door.ts';

export interface Running {
  readonly httpsPort: number;
  readonly httpPort: number | null;
  readonly urls: readonly string[];
  /** PROXY headers, passed-through connections and connections closed before they were served, per listener with a front door. */
  stats(): { https: FrontDoorStats | null; http: FrontDoorStats | null };
  /** Stop accepting, let in-flight requests finish within the shutdown deadline, then close everything. */
  close(): Promise<void>;
  /** Re-reads the certificates (a reload): new handshakes use them, open connections keep theirs. */
  updateTls(tls: Config['tls']): Promise<void>;
  /** The listeners themselves, for metrics (handshakes, connections, sessions, streams). */
  readonly servers: { readonly https: Http2SecureServer; readonly http: HttpServer | null };
}

export interface ServerEvents {
  /** Errors with no client to tell (a failed write), for the log; the error channel by default. */
  onError?: (where: string, err: unknown) => void;
  /** The clock and timers that close idle connections (idleWatch); tests move them by hand. */
  timers?: Timers;
}

const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/** A request the adapter refused (400, 413, 431, 501) is the client's doing: counted, answered, not logged. */
function countRefused(err: unknown): void {
  if (isOutpostError(err)) frontCounters.badRequests++;
}

export async function startServers(config: Config, chain: Handler | Dispatch, events: ServerEvents = {}, replies?: ReadyReplies): Promise<Running> {
  const { limits } = config;
  const dispatch = typeof chain === 'function' ? fixedChain(chain) : chain;
  const onError = events.onError ?? ((where: string, error: unknown) => publishError({ ctx: null, error, where }));
  const report = errorReporter(onError);
  // With several workers the limit is the node's: the cluster primary counts (node-connections.ts).
  const node = sharedWorkers() > 1 ? nodeAdmission({ onError: (error) => onError('connections per client (the primary did not answer; this worker counted alone)', error) }) : undefined;
  const perClient = clientConnectionLimit(limits.connectionsPerClient, config.trustedProxies, node);
  const profile = tlsProfile(config.tls.profile);
  const certificates = await loadCertificates(config.tls);
  let sni = sniSelector(certificates, profile); // replaced by updateTls

  const server: Http2SecureServer = createSecureServer({
    allowHTTP1: true,
    ...profile,
    cert: sni.defaultPair.cert,
    key: sni.defaultPair.key,
    SNICallback: (servername, cb) => cb(null, sni.select(servername)),
    ...h2Limits(limits),
    // A connection that does not finish its TLS handshake in time is dropped (Node's default is 120 s).
    handshakeTimeout: limits.headersTimeout,
    unknownProtocolTimeout: limits.headersTimeout,
    http1Options: { keepAliveTimeout: limits.keepAliveTimeout },
  });
  // The HTTP/1.1 fallback reads these from the server object. Its timeouts are enforced only when
  // the server sweeps its connections, every connectionsCheckingInterval: make that a second.
  Object.assign(server, {
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    connectionsCheckingInterval: 1000,
  });
  // Idle connections are closed by idleWatch, not by Node's per-read, per-write timers (server.setTimeout).
  const idle = idleWatch(limits.idleTimeout, events.timers);
  // limits.sendTimeout: HTTP/1.1 connections whose client takes nothing of what is queued for it are
  // closed the same way (idle-watch.ts socketWritesWatched), HTTP/2 streams whose client holds back
  // what is queued for them by flow control are reset (h2-stalls.ts); responses sent whole and
  // streamed alike, with nothing watched per request.
  const stalls = idleWatch(limits.sendTimeout, events.timers);
  const stalledStreams = stalledStreamWatch(limits.sendTimeout, { timedOut: sendTimeoutError, timers: events.timers });
  /** An HTTP/1.1 connection under the send watch while it is open (idle-watch.ts socketWritesWatched). */
  const watchWrites = (socket: Socket) => {
    const writes = socketWritesWatched(socket);
    stalls.add(writes);
    socket.once('close', () => stalls.delete(writes));
  };
  // Beyond this many open connections new ones are refused, so a flood cannot exhaust descriptors.
  server.maxConnections = limits.maxConnections;

  // An HTTP/2 client's preface must come within limits.headersTimeout (idle-watch.ts).
  const prefaces = prefaceWatch(limits.headersTimeout, () => { frontCounters.silentConnections++; }, events.timers);

  const sessions = new Set<ServerHttp2Session>();
  const http1Sockets = new Map<Socket, number>(); // socket → requests in flight
  let draining = false;

  const h2Sockets = lingeringSockets(events.timers);
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    const watched = sessionWatched(session);
    idle.add(watched);
    stalledStreams.add(session);
    prefaces.add(session);
    session.once('close', () => {
      sessions.delete(session);
      idle.delete(watched);
      stalledStreams.delete(session);
    });
    // Session errors reach the log through the server's 'sessionError' below, once; Node keeps its
    // own 'error' listener on every server session, so none is needed here.
    confineStreamErrors(session);
    // The connection's window, shared by all its streams (RFC 9113 §6.9.2: 65,535 until we say more).
    try { session.setLocalWindowSize(H2_SESSION_WINDOW); } catch { /* the session is already closing */ }
    if (draining) session.close();
  });
  server.on('sessionError', (err) => report('h2 session', err, 'h2SessionErrors'));
  // Scanners and handshake failures: counted, not worth a log line each.
  server.on('tlsClientError', () => { frontCounters.connectionErrors++; });
  server.on('secureConnection', (socket: TLSSocket) => {
    // Nagle off: a streamed body's small writes must not wait for the peer's delayed ACK (40 ms
    // stalls per response on the HTTP/1.1 miss path before this).
    socket.setNoDelay(true);
    if (socket.alpnProtocol === 'h2') return void h2Sockets.add(socket);
    http1Sockets.set(socket, 0);
    const watched = socketWatched(socket);
    idle.add(watched);
    watchWrites(socket);
    socket.once('close', () => {
      http1Sockets.delete(socket);
      idle.delete(watched);
    });
  });

  /** A stream's error, counted against its session's resets (h2-confine.ts). */
  const streamFailed = (session: Http2Session | undefined, stream: ServerHttp2Stream, err: Error) => {
    noteStreamReset(session, stream);
    // A stream taken down with its session is the session's event, reported by 'sessionError'.
    if (session?.destroyed) return;
    report('h2 stream', err, 'h2StreamErrors');
  };

  /**
   * The chain's answer to `ctx`, written to `destination` by `respond` (either protocol's writer);
   * a reply the server may keep ready for the next request of its shape is learned first. The one
   * reaction per request (a failed chain's reply is made here: pipeline/reply.ts replyForError).
   */
  const answerFromChain = <D>(ctx: Context, readyKey: string | undefined, epoch: number, respond: (destination: D, method: string, reply: Reply, request: Context) => void, destination: D, method: string): void => {
    const served = dispatch.begin();
    chainReply(served.handler, ctx).then(
      (reply) => {
        served.settled();
        if (readyKey !== undefined) replies!.learn(readyKey, ctx, reply, epoch);
        respond(destination, method, reply, ctx);
      },
      (err) => {
        served.settled();
        respond(destination, method, replyForError(ctx, err), ctx);
      },
    );
  };

  // Busy sessions get fresh stream tables each second, so that their streams die young (h2-stream-tables.ts).
  const tables = renewBusySessions({ timers: events.timers });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    // The stream's listeners hold nothing of the request (stream-listeners.ts says why).
    watchStreamErrors(stream, streamFailed);
    const session = stream.session;
    if (session !== undefined) tables.opened(session);
    const oversized = headerListSize(rawHeaders) > limits.maxHeaderSize;
    // A request whose reply is kept ready (a hit, a kept file) is answered without the chain.
    const readyKey = oversized || replies === undefined ? undefined : replies.keyOfHttp2(rawHeaders, stream.endAfterHeaders);
    if (readyKey !== undefined && replies!.sendHttp2(readyKey, stream, headers)) return;
    const epoch = replies?.epoch ?? 0;
    const method = (headers[':method'] as string) ?? 'GET';
    const abort = abortOnReset(stream);
    let ctx: Context;
    try {
      // The target alone over the limit is 414 URI Too Long, as over HTTP/1.1 (client-error.ts).
      if (oversized) throw String(headers[':path']).length >= limits.maxHeaderSize ? clientError.uriTooLong() : clientError.headersTooLarge();
      ctx = withBodyLimits(contextFromHttp2(stream, headers, abort, rawHeaders), limits);
      // A client that waits for 100 (Continue) before its body is told to go on at once, as Node's
      // HTTP/1.1 server does: otherwise it would wait out a timer of its own (curl: 1 s).
      if (!stream.endAfterHeaders && expectsContinue(headers)) informationalHttp2(stream, 100, NO_FIELDS);
      // A WebSocket on a stream (RFC 8441) is one more origin connection, as an HTTP/1.1 one would
      // be: it counts against limits.connectionsPerClient from now until the stream closes, so
      // one connection's streams cannot open maxConcurrentStreams origin connections each.
      if (ctx.upgrade !== undefined) {
        const release = perClient.take(session?.socket?.remoteAddress);
        if (release === null) throw clientError.tooManyConnections();
        stream.once('close', release);
      }
    } catch (err) {
      if (!oversized && isServerOptions(method, headers[':path'])) return void respondHttp2(stream, method, serverOptionsReply(), factsFromHttp2(stream, headers));
      countRefused(err);
      respondHttp2(stream, method, errorReply(err), factsFromHttp2(stream, headers));
      return;
    }
    answerFromChain(ctx, readyKey, epoch, ctx.upgrade === undefined ? respondHttp2 : respondTunnel, stream, method);
  });

  // Listening on 'request' would make Node wrap every h2 stream in compat req/res objects too.
  // Remove that hook first: h2 stays on the core 'stream' API, 'request' carries only HTTP/1.1.
  server.removeAllListeners('newListener');
  /**
   * Connections whose framing failed (request.ts checkFraming): their answer ends them, and what
   * Node parsed behind it from the same bytes is not served, nor forwarded (RFC 9112 §6.1, §6.3:
   * where one message's framing is in doubt, so is the next one's start).
   */
  const faultyFraming = new Set<Socket>();
  const onHttp1 = (scheme: 'https' | 'http') => (req: IncomingMessage, res: ServerResponse) => {
    if (faultyFraming.size > 0 && faultyFraming.has(req.socket)) return;
    const readyKey = draining || replies === undefined ? undefined : replies.keyOfHttp1(req, scheme);
    if (readyKey !== undefined && replies!.sendHttp1(readyKey, req, res)) return;
    const epoch = replies?.epoch ?? 0;
    const socket = req.socket;
    if (http1Sockets.has(socket)) http1Sockets.set(socket, http1Sockets.get(socket)! + 1);
    const abort = new AbortSource();
    // 'close' comes once: on() spares the wrapper once() makes per request.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
      const inFlight = (http1Sockets.get(socket) ?? 1) - 1;
      if (http1Sockets.has(socket)) http1Sockets.set(socket, inFlight);
      if (draining && inFlight === 0) socket.end();
    });
    if (draining) res.shouldKeepAlive = false;
    // A request without body framing is complete once the parser returns from this handler: only
    // an answer given right here, in the catch below, can come before that.
    const framed = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    if (framed) closeIfBodyUnread(req, res);
    const method = req.method ?? 'GET';
    let ctx: Context;
    try {
      ctx = withBodyLimits(contextFromHttp1(req, res, scheme, abort), limits);
    } catch (err) {
      if (!framed) closeIfBodyUnread(req, res);
      if (!res.shouldKeepAlive && !faultyFraming.has(socket)) {
        faultyFraming.add(socket);
        socket.once('close', () => faultyFraming.delete(socket));
      }
      if (isServerOptions(method, req.url) && framingFault(req) === undefined) return void respondHttp1(res, method, serverOptionsReply(), factsFromHttp1(req));
      countRefused(err);
      respondHttp1(res, method, errorReply(err), factsFromHttp1(req));
      return;
    }
    answerFromChain(ctx, readyKey, epoch, respondHttp1, res, method);
  };
  server.on('request', onHttp1('https'));

  // WebSocket upgrades (upgrade.ts): through the chain, then a tunnel to the origin on its 101.
  const tunnels: Tunnels = new Set();
  const upgrades: UpgradeServing = {
    limits,
    tunnels,
    draining: () => draining,
    // The HTTPS listener's connections are in the idle watch already; the plain one's had Node's
    // socket timeout, which no longer runs on a connection handed over.
    watchIdle(socket) {
      if (http1Sockets.has(socket)) return;
      const watched = socketWatched(socket);
      idle.add(watched);
      socket.once('close', () => idle.delete(watched));
    },
    watchTunnel(tunnel) {
      idle.add(tunnel);
      return () => idle.delete(tunnel);
    },
    onError,
    refused: countRefused,
    runChain: (ctx, respond) => answerFromChain(ctx, undefined, replies?.epoch ?? 0, (_none: null, _method, reply, request) => respond(reply, request), null, 'GET'),
  };
  const onUpgrade = (scheme: 'https' | 'http') => upgradeListener(scheme, upgrades);
  const respondTunnel = tunnelResponder(upgrades);
  Object.assign(server, { shouldUpgradeCallback: isWebSocketUpgrade }); // read by the HTTP/1.1 fallback, as the fields above
  server.on('upgrade', onUpgrade('https'));
  // HTTP/1.1 CONNECT: we are not a forward proxy. A precise 405 instead of Node's silent close.
  const refuseConnect = (_req: IncomingMessage, socket: import('node:stream').Duplex) => {
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: ${PROXIED_METHODS}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  };
  server.on('connect', refuseConnect);
  server.on('clientError', answerClientError); // HTTP/1.1 requests the parser refused: answered and logged

  // With passthrough hosts or PROXY protocol, a front door accepts connections and reads their first bytes.
  const door = frontDoorFor(config, server, 'https');
  // The per-client limit sits where connections are accepted: the front door when there is one
  // (so passed-through connections count too, and nothing is counted twice), else the server.
  perClient.attach(door?.server ?? server);
  let plainDoor: ReturnType<typeof frontDoorFor> = null;
  const listenOn = (s: NetServer, port: number) => new Promise<number>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ port, host: config.listen.host }, () => {
      s.off('error', reject);
      resolve((s.address() as { port: number }).port);
    });
  });

  let plain: HttpServer | null = null;
  const httpsPort = await listenOn(door?.server ?? server, config.listen.https);
  let httpPort: number | null = null;
  try {
    if (config.listen.http !== null) {
      plain = createPlainServer(config, httpsPort, { serve: onHttp1('http'), upgrade: onUpgrade('http'), refuseConnect, watchWrites });
      plainDoor = frontDoorFor(config, plain, 'http');
      perClient.attach(plainDoor?.server ?? plain);
      httpPort = await listenOn(plainDoor?.server ?? plain, config.listen.http);
    }
  } catch (err) {
    (door?.server ?? server).close();
    throw err;
  }

  const shownHost = ['::', '0.0.0.0', ''].includes(config.listen.host) ? 'localhost'
    : config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
  const urls = [`https://${shownHost}:${httpsPort}/`];
  if (httpPort !== null) urls.push(`http://${shownHost}:${httpPort}/`);

  let closing: Promise<void> | null = null;
  const close = () => (closing ??= (async () => {
    draining = true;
    const closed = Promise.all([
      // The front door counts every connection it accepted, terminated ones included.
      new Promise<void>((resolve) => (door?.server ?? server).close(() => resolve())),
      plain ? new Promise<void>((resolve) => (plainDoor?.server ?? plain!).close(() => resolve())) : Promise.resolve(),
    ]);
    // HTTP/2: GOAWAY, then the session closes once its open streams finish.
    for (const session of sessions) session.close();
    // HTTP/1.1: idle keep-alive sockets go now; busy ones after their response; tunnels at the deadline.
    for (const [socket, inFlight] of http1Sockets) if (inFlight === 0 && !tunnels.has(socket)) socket.end();
    plain?.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => { timer = setTimeout(resolve, limits.shutdownTimeout); });
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
    for (const session of sessions) session.destroy(undefined, h2.NGHTTP2_CANCEL);
    h2Sockets.destroyAll();
    for (const socket of http1Sockets.keys()) socket.destroy();
    for (const socket of tunnels) socket.destroy();
    door?.destroyAll();
    plainDoor?.destroyAll();
    plain?.closeAllConnections();
    idle.stop();
    prefaces.stop();
    stalls.stop();
    stalledStreams.stop();
    tables.stop();
    await closed;
  })());

  const updateTls = async (tls: Config['tls']) => {
    const next = tlsProfile(tls.profile);
    const selector = sniSelector(await loadCertificates(tls), next);
    server.setSecureContext({ ...next, cert: selector.defaultPair.cert, key: selector.defaultPair.key });
    sni = selector;
  };

  return {
    httpsPort, httpPort, urls, close, updateTls,
    stats: () => ({ https: door?.stats() ?? null, http: plainDoor?.stats() ?? null }),
    servers: { https: server, http: plain },
  };
}
