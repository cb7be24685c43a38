import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { errorChannel, passthroughChannel, responseChannel, upstreamChannel, type ErrorEvent, type ResponseEvent, type UpstreamEvent } from './channels.ts';
import type { TunnelEvent } from '../server/tunnel.ts';
import { isOutpostError } from '../errors.ts';

/**
 * The access log (one line per response, combined-log style plus duration and cache notes) and
 * the error log (stderr). Both subscribe to the diagnostics channels.
 */

const quote = (value: unknown) => (value === undefined ? '"-"' : JSON.stringify(String(value)));

export function formatAccessLine({ ctx, reply }: ResponseEvent): string {
  const ms = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
  const length = reply.headers['content-length'] ?? '-';
  const notes = ctx.notes.size > 0 ? ` ${[...ctx.notes].map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
  return `${ctx.remoteAddress} ${ctx.host || '-'} [${new Date().toISOString()}] ${quote(`${ctx.method} ${ctx.target} HTTP/${ctx.httpVersion}`)} ` +
    `${reply.status} ${length} ${quote(ctx.headers.referer)} ${quote(ctx.headers['user-agent'])} ${ms.toFixed(1)}ms${notes}\n`;
}

export function formatErrorLine({ ctx, error, where }: ErrorEvent): string {
  const request = ctx ? ` ${ctx.method} ${ctx.host}${ctx.target}` : '';
  const code = isOutpostError(error) ? `${error.code} ${error.status}` : (error as { code?: string })?.code ?? 'ERROR';
  const message = (error as Error)?.message ?? String(error);
  const cause = (error as { cause?: { message?: string; code?: string } })?.cause;
  const causeText = cause ? ` (cause: ${cause.code ?? ''} ${cause.message ?? ''})` : '';
  return `${new Date().toISOString()} error ${where}${request}: ${code}: ${message}${causeText}\n`;
}

export function formatUpstreamLine({ pool, upstream, up, why }: UpstreamEvent): string {
  return `${new Date().toISOString()} ${up ? 'notice' : 'warn'} upstream ${upstream} (${pool}) ${up ? 'back in rotation' : 'out of rotation'}: ${why}\n`;
}

/** A passed-through connection, in the access log: who, which name, where to, bytes each way, how long. */
export function formatPassthroughLine(e: TunnelEvent): string {
  return `${e.client} ${e.servername} [${new Date().toISOString()}] "PASSTHROUGH ${e.backend}" ${e.bytesIn} ${e.bytesOut} ` +
    `${e.durationMs.toFixed(1)}ms${e.error === null ? '' : ` error=${e.error}`}\n`;
}

/** Subscribes the logs; returns the function that unsubscribes and closes files. */
export function startLogs(access: string, errors: Writable = process.stderr): () => Promise<void> {
  const onError = (event: unknown) => errors.write(formatErrorLine(event as ErrorEvent));
  errorChannel.subscribe(onError);
  const onUpstream = (event: unknown) => errors.write(formatUpstreamLine(event as UpstreamEvent));
  upstreamChannel.subscribe(onUpstream);
  let out: Writable | null = null;
  let onResponse: ((event: unknown) => void) | null = null;
  let onTunnel: ((event: unknown) => void) | null = null;
  if (access !== 'off') {
    out = access === 'stdout' ? process.stdout : createWriteStream(access, { flags: 'a' });
    const sink = out;
    onResponse = (event) => sink.write(formatAccessLine(event as ResponseEvent));
    responseChannel.subscribe(onResponse);
    onTunnel = (event) => sink.write(formatPassthroughLine(event as TunnelEvent));
    passthroughChannel.subscribe(onTunnel);
  }
  return async () => {
    errorChannel.unsubscribe(onError);
    upstreamChannel.unsubscribe(onUpstream);
    if (onResponse) responseChannel.unsubscribe(onResponse);
    if (onTunnel) passthroughChannel.unsubscribe(onTunnel);
    if (out && out !== process.stdout) await new Promise<void>((resolve) => out!.end(resolve));
  };
}
