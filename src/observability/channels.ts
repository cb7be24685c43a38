import diagnostics from 'node:diagnostics_channel';
import type { Context, Reply } from '../pipeline/context.ts';

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

export function publishError(event: ErrorEvent): void {
  if (errorChannel.hasSubscribers) errorChannel.publish(event);
}

export function publishClientError(event: ClientErrorEvent): void {
  if (clientErrorChannel.hasSubscribers) clientErrorChannel.publish(event);
}
