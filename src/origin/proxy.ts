import { Pool, errors as undiciErrors } from 'undici';
import type { BlockList } from 'node:net';
import type { Handler } from '../pipeline/compose.ts';
import type { Context, Reply } from '../pipeline/context.ts';
import type { OriginOptions } from '../config/schema.ts';
import { OutpostError, clientError, isOutpostError, originError } from '../errors.ts';
import { endToEnd } from './hop-by-hop.ts';
import { forwardedHeaders } from './forwarded.ts';

export interface ProxyOptions extends OriginOptions {
  /** Upstream base URLs: scheme, host, port and an optional path prefix. */
  upstreams: readonly string[];
  trusted: BlockList;
  /** Name in Via. */
  viaName: string;
}

export interface ProxyHandler {
  handler: Handler;
  /** Passive health per upstream: false while it is skipped after a failed connect. */
  health(): Array<{ upstream: string; up: boolean }>;
  close(): Promise<void>;
}

/** Request fields we set ourselves or that must not reach the origin. */
const REQUEST_DROP = new Set([
  'host', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'via',
  'expect', // 100-continue is answered (or not) by this hop; undici refuses to forward it
]);

/** Methods retried on another upstream after a connect failure: idempotent (RFC 9110 §9.2.2). */
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'TRACE', 'PUT']);

/** Connection failures: nothing was sent, so an idempotent request may try the next upstream. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** An origin failure as the client should see it: 504 for timeouts, 502 for everything else. */
export function mapOriginError(err: unknown, upstream: string): OutpostError {
  if (isOutpostError(err)) return err; // the request body's own limit or deadline (413, 408)
  const cause = (err as { cause?: unknown })?.cause;
  if (isOutpostError(cause)) return cause;
  const code = (err as { code?: string })?.code ?? '';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return originError.gatewayTimeout(`origin ${upstream}: connect timed out`, err);
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return originError.gatewayTimeout(`origin ${upstream}: no response headers in time`, err);
  if (code === 'UND_ERR_BODY_TIMEOUT') return originError.gatewayTimeout(`origin ${upstream}: body stalled`, err);
  if (err instanceof undiciErrors.RequestAbortedError || (err as Error)?.name === 'AbortError') {
    return new OutpostError('CLIENT_CLOSED', 499, 'client closed the request', { cause: err });
  }
  return originError.badGateway(`origin ${upstream}: ${code || (err as Error)?.message || 'failed'}`, err);
}

export function createProxyHandler(options: ProxyOptions): ProxyHandler {
  if (options.upstreams.length === 0) throw new TypeError('proxy: upstreams must name at least one origin');
  const hide = new Set(options.hideHeaders);
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
  function forwardInformational(ctx: Context, info: { statusCode: number; headers: Record<string, string | string[]> }): void {
    if (info.statusCode === 100) return;
    ctx.sendInformational?.(info.statusCode, addVia(endToEnd(info.headers, hideInterim)));
  }
  const upstreams = options.upstreams.map((base) => {
    const url = new URL(base);
    return {
      name: url.origin,
      basePath: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
      pool: new Pool(url.origin, {
        connections: options.connections,
        pipelining: 1,
        connectTimeout: options.connectTimeout,
        headersTimeout: options.headersTimeout,
        bodyTimeout: options.bodyTimeout,
        keepAliveTimeout: options.keepAliveTimeout,
        keepAliveMaxTimeout: Math.max(options.keepAliveTimeout, 600_000),
        allowH2: false,
      }),
      /** Passive health (nginx max_fails=1 fail_timeout): skipped until then after a failed connect. */
      downUntil: 0,
    };
  });
  let next = 0;

  /**
   * Round-robin over the upstreams not marked down; `skip` of them are passed over (the retry of an
   * idempotent request). When every upstream is down, the next one in turn is tried anyway: a
   * recovered origin must get a chance, and one request finds out.
   */
  function pick(first: number, skip: number): (typeof upstreams)[number] {
    const now = Date.now();
    let healthy = 0;
    for (let i = 0; i < upstreams.length; i++) {
      const candidate = upstreams[(first + i) % upstreams.length];
      if (candidate.downUntil <= now && healthy++ === skip) return candidate;
    }
    return upstreams[(first + skip) % upstreams.length];
  }

  async function forward(ctx: Context, upstream: (typeof upstreams)[number]): Promise<Reply> {
    ctx.notes.set('upstream', upstream.name); // for the access log
    const headers = { ...endToEnd(ctx.headers, REQUEST_DROP), host: ctx.authority, ...forwardedHeaders(ctx, options.trusted, options.viaName) };
    const response = await upstream.pool.request({
      method: ctx.method as 'GET',
      path: upstream.basePath + ctx.target,
      headers,
      // Only what the client sent: a stream that already ended would never end again for undici (h2 END_STREAM).
      body: ctx.hasBody ? ctx.body : undefined,
      signal: ctx.signal,
      // A closure only for contexts with a client to tell (not for HTTP/1.0 clients, see Context).
      onInfo: ctx.sendInformational === undefined ? undefined : (info) => forwardInformational(ctx, info),
    });
    // Errors on this body reach whoever pipes it; until then (and if nobody does) they must not crash.
    response.body.on('error', () => {});
    const out: Reply['headers'] = addVia(endToEnd(response.headers as Record<string, string | string[]>, hide));
    return { status: response.statusCode, headers: out, body: response.body };
  }

  const handler: Handler = async (ctx) => {
    // CONNECT would make us a tunnel; TRACE would echo credentials back (cross-site tracing). nginx refuses both too.
    if (ctx.method === 'CONNECT' || ctx.method === 'TRACE') throw clientError.methodNotAllowed();
    const first = next++ % upstreams.length;
    const idempotent = RETRYABLE.has(ctx.method);
    for (let attempt = 0; ; attempt++) {
      const upstream = pick(first, attempt);
      try {
        return await forward(ctx, upstream);
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        const unreachable = CONNECT_FAILURES.has(code);
        if (unreachable) upstream.downUntil = Date.now() + options.failTimeout;
        if (idempotent && unreachable && attempt + 1 < upstreams.length && !ctx.signal.aborted) continue;
        throw mapOriginError(err, upstream.name);
      }
    }
  };

  return {
    handler,
    health: () => { const now = Date.now(); return upstreams.map((u) => ({ upstream: u.name, up: u.downUntil <= now })); },
    close: async () => { await Promise.all(upstreams.map((u) => u.pool.close().catch(() => u.pool.destroy()))); },
  };
}
