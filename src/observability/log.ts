import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { errorChannel, publishError, responseChannel, type ErrorEvent, type ResponseEvent } from './channels.ts';
import type { Config } from '../config/schema.ts';
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

export interface Logs {
  /** Applies a reloaded `log` section (another file, or off). */
  configure(log: Config['log']): void;
  /** Reopens the access log file (SIGUSR1, after logrotate moved it). */
  reopen(): void;
  /** Unsubscribes and closes files. */
  close(): Promise<void>;
}

/** Subscribes the logs to the diagnostics channels. */
export function startLogs(log: Config['log'], errors: Writable = process.stderr): Logs {
  const onError = (event: unknown) => errors.write(formatErrorLine(event as ErrorEvent));
  errorChannel.subscribe(onError);
  let access = log.access;
  let out: Writable | null = null;
  const onResponse = (event: unknown) => out?.write(formatAccessLine(event as ResponseEvent));
  const open = () => {
    out = access === 'off' ? null : access === 'stdout' ? process.stdout : createWriteStream(access, { flags: 'a' });
    out?.on('error', (error) => publishError({ ctx: null, error, where: `access log ${access}` }));
  };
  const closeOut = () => {
    const previous = out;
    out = null;
    return previous && previous !== process.stdout ? new Promise<void>((resolve) => previous.end(resolve)) : Promise.resolve();
  };
  open();
  if (access !== 'off') responseChannel.subscribe(onResponse);
  return {
    configure(next) {
      if (next.access === access) return;
      void closeOut();
      const wasOff = access === 'off';
      access = next.access;
      open();
      if (wasOff && access !== 'off') responseChannel.subscribe(onResponse);
      if (!wasOff && access === 'off') responseChannel.unsubscribe(onResponse);
    },
    reopen() {
      if (access === 'off' || access === 'stdout') return;
      void closeOut();
      open();
    },
    async close() {
      errorChannel.unsubscribe(onError);
      if (access !== 'off') responseChannel.unsubscribe(onResponse);
      await closeOut();
    },
  };
}
