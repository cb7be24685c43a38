import { errors as undiciErrors } from './undici.ts';
import type { Readable } from 'node:stream';
import type { BlockList } from 'node:net';
import { tmpdir } from 'node:os';
import type { Handler, MappingHandler, ReplyMap } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import { OutpostError, clientError, isOutpostError, originError, withDetail } from '../errors.ts';
import { endToEnd } from './hop-by-hop.ts';
import { PROXIED_METHODS } from '../http/methods.ts';
import { listsToken } from '../http/field-syntax.ts';
import { webSocketAccept } from '../http/websocket.ts';
import { addForwarded, isTrusted } from './forwarded.ts';
import { asMessageStream } from '../server/body.ts';
import { exchange, type SpillOptions } from './exchange.ts';
import { QueueDeadline } from './queue-deadline.ts';
import { realTimers } from '../timers.ts';
import { droppedFields, droppedFromClients, forwardsBody } from './hygiene.ts';
import { createUpstreamPool, type PoolOptions, type Upstream, type UpstreamPool } from './pool.ts';
import { createAttempts } from './attempts.ts';
import { classifyFailure, type Failure } from './retry.ts';

export interface ProxyOptions extends PoolOptions {
  trusted: BlockList;
  /** Name in Via. */
  viaName: string;
  /** limits.tempFileSpace: bytes all proxy temp files of this process may hold together. */
  tempFileSpace: number;
  /** The route caches: fields that override the URL are not sent (hygiene.ts). */
  caching: boolean;
  /** The key hash balancing keeps on one upstream: the cache's primary key, so each URL has one home. */
  hashKey?: (ctx: Context) => string;
  /** The Accept-Encoding sent in place of the client's (the origin decoder's, compress/origin-decode.ts). */
  acceptEncoding?: (ctx: Context) => string;
  /** What `handler`'s replies go through (the origin decoder), in each attempt's own reaction. */
  decode?: ReplyMap;
  /** The same for `passHandler`'s (the decoder that lets a coding the client takes pass). */
  decodePassing?: ReplyMap;
}

export interface ProxyHandler {
  /** Asks the origin with `acceptEncoding`'s Accept-Encoding (for a response that may be stored). */
  handler: Handler;
  /**
   * Asks the origin with the client's own Accept-Encoding: for a response that will not be stored,
   * whose coding the client can then take as it comes (origin-decode.ts, `passAccepted`).
   */
  passHandler: Handler;
  /** `passHandler`, with the caller's maps applied in its attempt's own reaction (the cache's Cache-Status: compose.ts MappingHandler). */
  passMapped: MappingHandler;
  /** The pool's upstreams and their health, for the admin API. */
  stats(): ReturnType<UpstreamPool['stats']>;
  /** Whether each upstream takes requests now (metrics, dashboard). */
  health(): Array<{ upstream: string; up: boolean }>;
  /** Resolves when no health probe is in flight (tests). */
  probesSettled(): Promise<void>;
  close(): Promise<void>;
}

/** Request fields we set ourselves or that must not reach the origin. */
const REQUEST_DROP = new Set([
  'host', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'via',
  'expect', // 100-continue is answered (or not) by this hop; undici refuses to forward it
]);

/** An origin failure as the client should see it: 504 for timeouts, 502 for everything else. */
export function mapOriginError(err: unknown, upstream: string): OutpostError {
  if (isOutpostError(err)) return err; // the request body's own limit or deadline (413, 408)
  const cause = (err as { cause?: unknown })?.cause;
  if (isOutpostError(cause)) return cause;
  const code = (err as { code?: string })?.code ?? '';
  const detail = `origin ${upstream}: ${code || (err as Error)?.message || 'failed'}`;
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return withDetail(originError.gatewayTimeout('Gateway Timeout: the origin did not answer in time', err), detail);
  }
  if (err instanceof undiciErrors.RequestAbortedError || (err as Error)?.name === 'AbortError') {
    return clientError.closed(err);
  }
  return withDetail(originError.badGateway(BAD_GATEWAY[classifyFailure(err)], err), detail);
}

/** What a client reads of a failed exchange, by how it failed (retry.ts classifyFailure); the log has the rest. */
const BAD_GATEWAY: Readonly<Record<Failure, string>> = {
  unreached: 'Bad Gateway: the origin could not be reached',
  reset: 'Bad Gateway: the origin closed the connection before its answer was complete',
  // An answer that is not HTTP (a bad status line, fields or framing), a TLS failure: before
  // 2026-12-05 these read "could not be reached" too, which sent operators after the network.
  other: 'Bad Gateway: the origin\'s answer could not be used',
};

/**
 * Requests the proxy answers itself instead of forwarding, or undefined. CONNECT would make us a
 * tunnel and TRACE would echo credentials back (cross-site tracing): 405, as nginx refuses both.
 * An OPTIONS whose Max-Forwards is 0 is answered as its final recipient (RFC 9110 §7.6.2: an
 * intermediary MUST NOT forward it); a larger one goes on decremented (send).
 */
function answeredHere(ctx: Context): Promise<Reply> | undefined {
  const method = ctx.method;
  if (method === 'CONNECT' || method === 'TRACE') return Promise.reject(clientError.methodNotAllowed(PROXIED_METHODS));
  if (method === 'OPTIONS' && maxForwards(ctx.headers['max-forwards']) === 0) {
    return Promise.resolve({ status: 200, headers: { allow: PROXIED_METHODS, 'content-length': 0 }, body: null });
  }
  return undefined;
}

/**
 * An HTTP/2 upstream's switch (exchange.ts `#extendedConnectAnswer`) with the Sec-WebSocket-Accept
 * the client's key is owed (RFC 6455 §4.2.2), as an HTTP/1.1 origin's 101 carries: HTTP/1.1
 * clients check it, and so does the HTTP/2 listener for the key it made up (server/upgrade.ts).
 */
function withAccept(reply: Reply, key: string | string[] | undefined): Reply {
  if (reply.tunnel !== undefined && typeof key === 'string') reply.headers['sec-websocket-accept'] = webSocketAccept(key);
  return reply;
}

const isGrpc = (type: string | undefined) => type !== undefined && type.startsWith('application/grpc');

/** Max-Forwards (RFC 9110 §7.6.2: 1*DIGIT), or undefined when absent or not a number. */
function maxForwards(value: string | string[] | undefined): number | undefined {
  return typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : undefined;
}

export function createProxyHandler(options: ProxyOptions): ProxyHandler {
  if (options.pool.upstreams.length === 0) throw new TypeError('proxy: upstreams must name at least one origin');
  const hide = new Set(options.hideHeaders);
  const drop = new Set([...REQUEST_DROP, ...droppedFields(options.requestHeaders, options.caching)]);
  const set = options.requestHeaders.set;
  const acceptEncoding = options.acceptEncoding;
  // No trusted proxies (the usual case): no lookup per request.
  const trusted = options.trusted.rules.length > 0 ? options.trusted : null;
  // A GET or HEAD body has no defined meaning (RFC 9110 §9.3.1) and would be shared through the
  // cache key's blind spot: it is not sent, nor its framing.
  const withoutBody = (fields: ReadonlySet<string>) => new Set([...fields, 'content-length', 'transfer-encoding']);
  // What is dropped, by whether the peer is a trusted proxy and the request's content is sent.
  const fromClients = droppedFromClients(drop, options.requestHeaders);
  const dropped = {
    trusted: { body: drop, noBody: withoutBody(drop) },
    untrusted: { body: fromClients, noBody: withoutBody(fromClients) },
  };
  // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in any response with a
  // status code of 1xx (Informational)".
  const hideInterim = new Set([...hide, 'content-length']);
  const via = `1.1 ${options.viaName}`;
  /** RFC 9110 §7.6.3: a proxy "MUST send an appropriate Via header field … in each message that it forwards". */
  const addVia = (headers: Record<string, string | string[]>) => {
    headers.via = headers.via ? `${headers.via}, ${via}` : via;
    return headers;
  };

  /**
   * The origin's 1xx responses, on to the client ahead of the final one. RFC 9110 §15.2: "A proxy
   * MUST forward 1xx responses unless the proxy itself requested the generation of the 1xx
   * response." 100 Continue answers an Expect this hop removed (REQUEST_DROP), so it is never the
   * client's (undici drops the connection on one anyway); the server drops 101. Never stored: the
   * cache only sees the final Reply. Must not throw: undici would abort the origin request.
   */
  function forwardInformational(ctx: Context, statusCode: number, headers: Record<string, string | string[]>): void {
    if (statusCode === 100) return;
    ctx.sendInformational?.(statusCode, addVia(endToEnd(headers, hideInterim)));
  }
  const pool = createUpstreamPool(options);
  /** A request that waits for a connection gets as long as one that waits for its response's header. */
  const queueDeadline = new QueueDeadline(options.headersTimeout, options.timers ?? realTimers);
  const spill: SpillOptions | undefined = options.maxTempFileSize > 0 && options.tempFileSpace > 0
    ? { directory: options.tempPath ?? tmpdir(), maxSize: options.maxTempFileSize, space: options.tempFileSpace }
    : undefined;

  /** The response's fields as the client gets them: one copy, hop-by-hop and hidden fields out, Via in. */
  const responseHeaders = (headers: Record<string, string | string[]>) => addVia(endToEnd(headers, hide));

  const forward = (ctx: Context, upstream: Upstream, body: Readable | undefined) => send(ctx, upstream, body, acceptEncoding);
  const forwardAsSent = (ctx: Context, upstream: Upstream, body: Readable | undefined) => send(ctx, upstream, body, undefined);

  function send(ctx: Context, upstream: Upstream, body: Readable | undefined, encodings: ((ctx: Context) => string) | undefined): Promise<Reply> {
    ctx.notes.set('upstream', upstream.name); // for the access log
    const sendBody = body !== undefined && forwardsBody(ctx);
    const fromTrusted = isTrusted(trusted, ctx.remoteAddress);
    const drops = fromTrusted ? dropped.trusted : dropped.untrusted;
    const headers = endToEnd(ctx.headers, sendBody ? drops.body : drops.noBody);
    // In the client's field's place: what the operator removes or sets still wins.
    if (encodings !== undefined && !drop.has('accept-encoding')) headers['accept-encoding'] = encodings(ctx);
    for (const name in set) headers[name] = set[name];
    if (ctx.method === 'OPTIONS' && headers['max-forwards'] !== undefined) {
      // One less than received (answeredHere took 0); one that is not a number is not sent.
      const received = maxForwards(headers['max-forwards']);
      if (received === undefined) delete headers['max-forwards'];
      else headers['max-forwards'] = String(received - 1);
    }
    // TE is hop-by-hop, but `trailers` in it says the sender takes trailer fields (RFC 9110
    // §10.1.4), and gRPC servers refuse a request without it: said again to an HTTP/2 upstream,
    // whose trailers go back to HTTP/2 clients (server/respond.ts).
    if (upstream.http2 && listsToken(ctx.headers.te, 'trailers')) headers.te = 'trailers';
    // A gRPC call's request body is its stream of messages, as long as the call lasts: an idle
    // limit instead of the upload's deadline and rate (server/body.ts asMessageStream).
    if (sendBody && upstream.http2 && isGrpc(ctx.headers['content-type'])) asMessageStream(ctx.body);
    headers.host = ctx.authority;
    addForwarded(headers, ctx, fromTrusted, options.viaName);
    // An HTTP/2 upstream is asked to switch with RFC 8441's extended CONNECT (undici sends it for
    // `upgrade`), where the handshake has no key (§5): the client's Accept is made here.
    const overHttp2 = upstream.http2 && ctx.upgrade !== undefined;
    const key = overHttp2 ? headers['sec-websocket-key'] : undefined;
    if (overHttp2) delete headers['sec-websocket-key'];
    const answer = exchange(upstream.dispatcher, {
      method: ctx.method,
      path: upstream.basePath + ctx.target,
      headers,
      // Only what the client sent: a stream that already ended would never end again for undici (h2 END_STREAM).
      body: sendBody ? body : undefined,
      signal: ctx.signal,
      // Only for contexts with a client to tell (not for HTTP/1.0 clients, see Context).
      onInfo: ctx.sendInformational === undefined ? undefined : forwardInformational,
      infoTo: ctx,
      responseHeaders,
      // pool.begin counted this one: past the upstream's capacity it waits for a connection.
      queued: upstream.inFlight > upstream.capacity ? queueDeadline : undefined,
      spill,
      // The client's Upgrade and Connection are hop-by-hop (dropped above): the origin is asked anew.
      upgrade: ctx.upgrade,
    });
    return overHttp2 ? answer.then((reply) => withAccept(reply, key)) : answer;
  }

  const attempts = createAttempts({ ...options, pool, mapError: mapOriginError });

  const { decode, decodePassing } = options;
  const handler: Handler = (ctx) => answeredHere(ctx) ?? attempts(ctx, forward, decode);
  const passHandler: Handler = (ctx) => answeredHere(ctx) ?? attempts(ctx, forwardAsSent, decodePassing);
  const passMapped: MappingHandler = (ctx, then, failed) => {
    const here = answeredHere(ctx);
    return here === undefined ? attempts(ctx, forwardAsSent, decodePassing, then, failed) : here.then((reply) => then(ctx, reply), (error: unknown) => { throw failed(ctx, error); });
  };

  return {
    handler,
    passHandler,
    passMapped,
    stats: () => pool.stats(),
    // Up: its checks say so and no connection to it failed within failTimeout (a lone upstream is
    // still tried after one, having nothing to fail over to, but reads as down until then).
    health: () => pool.stats().upstreams.map((u) => ({ upstream: u.url, up: u.checks !== 'down' && !u.recentlyFailed })),
    probesSettled: () => pool.probesSettled(),
    close: () => pool.close(),
  };
}
