import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { errorChannel, passthroughChannel, responseChannel, upstreamChannel, type ErrorEvent, type ResponseEvent, type UpstreamEvent } from './channels.ts';
import type { TunnelEvent } from '../server/tunnel.ts';
import { isOutpostError } from '../errors.ts';

/**
 * The access log (one line per response, combined-log style plus duration and cache notes) and
 * the error log (stderr). Both subscribe to the diagnostics channels. The error log is rate-limited
 * per kind of error, so an attack that causes errors cannot turn into a flood of log lines.
 */

const quote = (value: unknown) => (value === undefined ? '"-"' : JSON.stringify(String(value)));

export function formatAccessLine({ ctx, reply }: ResponseEvent): string {
  const ms = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
  const length = reply.headers['content-length'] ?? '-';
  const notes = ctx.notes.size > 0 ? ` ${[...ctx.notes].map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
  return `${ctx.remoteAddress} ${ctx.host || '-'} [${new Date().toISOString()}] ${quote(`${ctx.method} ${ctx.target} HTTP/${ctx.httpVersion}`)} ` +
    `${reply.status} ${length} ${quote(ctx.headers.referer)} ${quote(ctx.headers['user-agent'])} ${ms.toFixed(1)}ms${notes}\n`;
}

const errorCode = (error: unknown): string => (isOutpostError(error) ? error.code : (error as { code?: string })?.code ?? 'ERROR');

export function formatErrorLine({ ctx, error, where }: ErrorEvent): string {
  const request = ctx ? ` ${ctx.method} ${ctx.host}${ctx.target}` : '';
  const code = isOutpostError(error) ? `${error.code} ${error.status}` : errorCode(error);
  const message = isOutpostError(error) && error.detail !== undefined ? `${error.message} (${error.detail})` : (error as Error)?.message ?? String(error);
  const cause = (error as { cause?: { message?: string; code?: string } })?.cause;
  const causeText = cause ? ` (cause: ${cause.code ?? ''} ${cause.message ?? ''})` : '';
  return `${new Date().toISOString()} error ${where}${request}: ${code}: ${message}${causeText}\n`;
}

/** At most this many error lines per second for one kind of error; the rest are counted and summed up in one line. */
const LINES_PER_KIND_PER_SECOND = 5;
/** Distinct kinds tracked in one second; beyond it they share one budget (kinds are few; this is a bound, not a tuning). */
const MAX_KINDS = 1000;

/**
 * One kind of error: where it happened (digits dropped, so "3 failures so far" and "4 failures so
 * far" are one kind) and its code.
 */
export function errorKind({ error, where }: ErrorEvent): string {
  return `${where.replace(/\d+/g, '#')} ${errorCode(error)}`;
}

export interface ErrorLogLimiter {
  /** True when this event's line may be written now; false when it is counted instead. */
  admit(event: ErrorEvent): boolean;
  /** Writes the "suppressed" lines of the second that ended, if any, and stops the timer. */
  flush(): void;
}

/**
 * Per kind, `perSecond` lines in each one-second window; what is over is counted, and when the
 * window ends one line says how many similar errors were left out. A flood of one error costs a
 * handful of lines a second, and the first line of every other kind still gets through.
 */
export function createErrorLogLimiter(write: (line: string) => void, options: { perSecond?: number; now?: () => number } = {}): ErrorLogLimiter {
  const perSecond = options.perSecond ?? LINES_PER_KIND_PER_SECOND;
  const now = options.now ?? Date.now;
  let windowStart = 0;
  let counts = new Map<string, { lines: number; suppressed: number; where: string; code: string }>();
  let timer: NodeJS.Timeout | undefined;

  function flush() {
    clearTimeout(timer);
    timer = undefined;
    for (const entry of counts.values()) {
      if (entry.suppressed > 0) {
        write(`${new Date(now()).toISOString()} error ${entry.where}: suppressed ${entry.suppressed} similar error${entry.suppressed === 1 ? '' : 's'} (${entry.code}) in the last second\n`);
      }
    }
    counts = new Map();
  }

  return {
    admit(event) {
      const at = now();
      if (at - windowStart >= 1000) {
        flush();
        windowStart = at;
      }
      let kind = errorKind(event);
      if (!counts.has(kind) && counts.size >= MAX_KINDS) kind = 'other';
      let entry = counts.get(kind);
      if (entry === undefined) {
        entry = kind === 'other'
          ? { lines: 0, suppressed: 0, where: 'various', code: 'various codes' }
          : { lines: 0, suppressed: 0, where: event.where, code: errorCode(event.error) };
        counts.set(kind, entry);
      }
      if (entry.lines < perSecond) {
        entry.lines++;
        return true;
      }
      entry.suppressed++;
      // The summary goes out when the window ends, even if no other error comes to trigger it.
      if (timer === undefined) {
        timer = setTimeout(flush, Math.max(1, windowStart + 1000 - at));
        timer.unref();
      }
      return false;
    },
    flush,
  };
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
export function startLogs(access: string, errors: Writable = process.stderr, options: { now?: () => number } = {}): () => Promise<void> {
  const errorLines = createErrorLogLimiter((line) => errors.write(line), options);
  const onError = (event: unknown) => {
    if (errorLines.admit(event as ErrorEvent)) errors.write(formatErrorLine(event as ErrorEvent));
  };
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
    errorLines.flush();
    upstreamChannel.unsubscribe(onUpstream);
    if (onResponse) responseChannel.unsubscribe(onResponse);
    if (onTunnel) passthroughChannel.unsubscribe(onTunnel);
    if (out && out !== process.stdout) await new Promise<void>((resolve) => out!.end(resolve));
  };
}
