import diagnostics from 'node:diagnostics_channel';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Context } from '../pipeline/context.ts';
import type { TunnelEvent } from '../server/tunnel.ts';
import type { CacheResult } from './cache-result.ts';

/**
 * Stages publish, the access log and metrics subscribe; without subscribers a publish costs a
 * `hasSubscribers` check.
 */
export interface ErrorEvent { ctx: Context | null; error: unknown; where: string }

/** An error a client caused (a protocol error, a reset, going away): counted by the front, not logged. */
export interface ClientErrorEvent { error: unknown; where: string }

export const errorChannel = diagnostics.channel('outpost:error');
export const clientErrorChannel = diagnostics.channel('outpost:client-error');
/** An upstream left the rotation (`up` false) or rejoined it, by its active health checks. */
export interface UpstreamEvent { pool: string; upstream: string; up: boolean; why: string }

export const upstreamChannel = diagnostics.channel('outpost:upstream');
/** A connection passed through by SNI ended. */
export const passthroughChannel = diagnostics.channel('outpost:passthrough');

export function publishError(event: ErrorEvent): void {
  if (errorChannel.hasSubscribers) errorChannel.publish(event);
}

export function publishClientError(event: ClientErrorEvent): void {
  if (clientErrorChannel.hasSubscribers) clientErrorChannel.publish(event);
}

export function publishUpstream(event: UpstreamEvent): void {
  if (upstreamChannel.hasSubscribers) upstreamChannel.publish(event);
}

export function publishPassthrough(event: TunnelEvent): void {
  if (passthroughChannel.hasSubscribers) passthroughChannel.publish(event);
}

/**
 * The request as the response writer knows it: a full Context, or — for the listener's own answers
 * to requests that never became one (400, 413, 431, 501) — what could be read before they failed.
 */
export type RequestFacts = Pick<Context, 'method' | 'target' | 'host' | 'remoteAddress' | 'httpVersion' | 'headers' | 'startedAt'> & {
  readonly notes?: Map<string, string>;
  readonly site?: Context['site'];
  readonly route?: Context['route'];
};

/**
 * How a response ended:
 *   ok            every byte was handed to the connection
 *   client-abort  the client reset the stream or closed the connection first
 *   body-error    the body failed half-way (an origin that died mid-body): the response was cut off
 */
export type Outcome = 'ok' | 'client-abort' | 'body-error';

/** Published once per response by the response writer (src/server/respond.ts) when it finished or was aborted. */
export interface ResponseEndEvent {
  readonly request: RequestFacts;
  readonly status: number;
  readonly headers: Readonly<OutgoingHttpHeaders>;
  /** Body bytes handed to the connection (what was still buffered at an abort not counted). */
  readonly bytes: number;
  /** From the request's arrival to the last byte (or the abort), in ms. */
  readonly durationMs: number;
  readonly outcome: Outcome;
  /** What the cache did (read once from our Cache-Status member, for every subscriber). */
  readonly cache: CacheResult;
}

export const responseEndChannel = diagnostics.channel('outpost:response-end');

/** The request headers a RequestFacts carries when nothing better is known. */
export const NO_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;
