import diagnostics from 'node:diagnostics_channel';
import type { Context, Reply } from '../pipeline/context.ts';
import type { TunnelEvent } from '../server/tunnel.ts';

/**
 * Stages publish, the access log and metrics subscribe; without subscribers a publish costs a
 * `hasSubscribers` check.
 */
export interface ResponseEvent { ctx: Context; reply: Reply }
export interface ErrorEvent { ctx: Context | null; error: unknown; where: string }

/** An error a client caused (a protocol error, a reset, going away): counted by the front, not logged. */
export interface ClientErrorEvent { error: unknown; where: string }

export const responseChannel = diagnostics.channel('outpost:response');
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
