import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { buildConnector as Connectors, Dispatcher } from 'undici';
import { buildConnector, Client, Pool } from './undici.ts';
import type { OriginOptions, UpstreamConfig, UpstreamTlsConfig } from '../config/schema.ts';
import { BATCH_BYTES } from './upload-writes.ts';
import { skipUnsolicitedContinue } from './unsolicited-continue.ts';

/**
 * The undici connection pool for one upstream: HTTP/1.1 keep-alive connections, or HTTP/2
 * (`http2`: ALPN on https, prior knowledge on http) with its own connection and stream limits;
 * TLS with the upstream's CA, SNI name and client certificate.
 */

/** tls.connect options for one upstream; files are read now, once (start-up or reload). */
export function tlsOptions(tls: UpstreamTlsConfig | null): ConnectionOptions {
  if (tls === null) return {};
  return {
    ...(tls.ca !== null ? { ca: readFileSync(tls.ca) } : {}),
    ...(tls.cert !== null ? { cert: readFileSync(tls.cert) } : {}),
    ...(tls.key !== null ? { key: readFileSync(tls.key) } : {}),
    rejectUnauthorized: tls.verify,
  };
}

/**
 * The SNI name, which is also the name the certificate is checked against: the configured one, else
 * the URL's host name. For an upstream given by IP address undefined: undici then sends the
 * request's Host (what Outpost always did), so an origin reached by address can present the site's
 * own certificate.
 */
function serverName(upstream: UpstreamConfig): string | undefined {
  if (upstream.tls?.servername) return upstream.tls.servername;
  const host = new URL(upstream.url).hostname.replace(/^\[|\]$/g, '');
  return isIP(host) === 0 ? host : undefined;
}

/**
 * The origin socket's buffers. undici gives a TCP socket one highWaterMark for both directions
 * (64 KB); a request body's batch (upload-writes.ts) waits in the socket's write buffer, and past
 * the mark undici pauses the body, so the write side takes a whole batch. Node reads
 * `highWaterMark` before the per-direction ones: it is unset here; the read side stays 64 KB. (A
 * TLS socket takes none of these from tls.connect and keeps Node's 64 KB: its batches end there.)
 */
export const ORIGIN_SOCKET_BUFFERS = { highWaterMark: undefined, readableHighWaterMark: 64 * 1024, writableHighWaterMark: BATCH_BYTES } as const;

function connector(upstream: UpstreamConfig, options: OriginOptions): Connectors.connector {
  const h2 = upstream.http2 !== null;
  const connect = buildConnector({
    ...tlsOptions(upstream.tls),
    ...ORIGIN_SOCKET_BUFFERS,
    allowH2: h2,
    preferH2: h2,
    // HTTP/2 over cleartext needs prior knowledge (RFC 9113 §3.3): there is no ALPN to ask.
    ...(h2 && upstream.url.startsWith('http:') ? { useH2c: true } : {}),
    timeout: options.connectTimeout,
  } as Connectors.BuildOptions);
  const servername = serverName(upstream);
  // undici would take SNI from each request's Host header before any configured name.
  const named: Connectors.connector = servername === undefined ? connect : (opts, callback) => connect({ ...opts, servername }, callback);
  if (h2) return named;
  return (opts, callback) => named(opts, (...result) => {
    if (result[0] === null) skipUnsolicitedContinue(result[1]);
    callback(...result);
  });
}

function dispatcherOptions(upstream: UpstreamConfig, options: OriginOptions, connections: number) {
  const h2 = upstream.http2;
  return {
    connect: connector(upstream, options),
    connections,
    pipelining: 1,
    headersTimeout: options.headersTimeout,
    bodyTimeout: options.bodyTimeout,
    keepAliveTimeout: options.keepAliveTimeout,
    keepAliveMaxTimeout: Math.max(options.keepAliveTimeout, 600_000),
    allowH2: h2 !== null,
    ...(h2 !== null ? { h2Options: { maxConcurrentStreams: h2.maxConcurrentStreams } } : {}),
  };
}

/** The pool requests go through. */
export function createDispatcher(upstream: UpstreamConfig, options: OriginOptions): Dispatcher {
  const origin = new URL(upstream.url).origin;
  return new Pool(origin, dispatcherOptions(upstream, options, upstream.http2?.connections ?? options.connections));
}

/**
 * One connection of its own for health probes, with the same TLS and protocol: a probe never
 * queues behind requests, and it checks what requests will use.
 */
export function createProbeClient(upstream: UpstreamConfig, options: OriginOptions, timeout: number): Dispatcher {
  const origin = new URL(upstream.url).origin;
  const { connections: _, ...rest } = dispatcherOptions(upstream, { ...options, connectTimeout: Math.min(options.connectTimeout, timeout) }, 1);
  return new Client(origin, { ...rest, headersTimeout: timeout, bodyTimeout: timeout });
}
