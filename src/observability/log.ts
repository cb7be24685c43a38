import pino from 'pino';
import type { Writable } from 'node:stream';
import { errorChannel, publishError, responseEndChannel, type ErrorEvent, type ResponseEndEvent } from './channels.ts';
import { cacheResult } from './cache-result.ts';
import { isOutpostError } from '../errors.ts';
import type { Config } from '../config/schema.ts';

/**
 * The access log: one entry per response, written when it has finished or was aborted (the
 * response writer's end report), so `bytes` is what was sent and the duration runs to the last
 * byte. `text` keeps the combined-log shape plus duration, cache result and notes; `json` is one
 * object per line through pino. Both write through sonic-boom asynchronously (off the request
 * path: lines are batched into few write calls under load). The error log goes to stderr.
 */

const quote = (value: unknown) => (value === undefined ? '"-"' : JSON.stringify(String(value)));
const header = (value: string | string[] | number | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : String(value));

export function formatAccessLine({ request, status, headers, bytes, durationMs, outcome }: ResponseEndEvent, time = new Date()): string {
  const notes = request.notes !== undefined && request.notes.size > 0 ? ` ${[...request.notes].map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
  const aborted = outcome === 'ok' ? '' : ` outcome=${outcome}`;
  return `${request.remoteAddress} ${request.host || '-'} [${time.toISOString()}] ${quote(`${request.method} ${request.target} HTTP/${request.httpVersion}`)} ` +
    `${status} ${bytes} ${quote(request.headers.referer)} ${quote(request.headers['user-agent'])} ${durationMs.toFixed(1)}ms cache=${cacheResult(headers['cache-status'])}${aborted}${notes}\n`;
}

/** The JSON entry's fields after `time` (README: "Access log fields"). */
export function accessEntry({ request, status, headers, bytes, durationMs, outcome }: ResponseEndEvent): Record<string, unknown> {
  return {
    remote: request.remoteAddress,
    method: request.method,
    host: request.host,
    path: request.target,
    protocol: `HTTP/${request.httpVersion}`,
    status,
    bytes,
    duration_ms: Math.round(durationMs * 1000) / 1000,
    cache: cacheResult(headers['cache-status']),
    encoding: header(headers['content-encoding']) ?? 'identity',
    upstream: request.notes?.get('upstream') ?? null,
    outcome,
    error: request.notes?.get('error') ?? null,
    referer: header(request.headers.referer) ?? null,
    user_agent: header(request.headers['user-agent']) ?? null,
  };
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
  /** Applies a reloaded `log` section (another file or format, or off). */
  configure(log: Config['log']): void;
  /** Reopens the access log file (SIGUSR1, after logrotate moved it). */
  reopen(): void;
  /** Unsubscribes, flushes and closes files. */
  close(): Promise<void>;
}

type Destination = ReturnType<typeof pino.destination>;

interface Sink {
  readonly dest: Destination;
  readonly stdout: boolean;
  readonly write: (event: ResponseEndEvent) => void;
}

function openSink(log: Config['log']): Sink | null {
  if (log.access === 'off') return null;
  // Asynchronous writes: a line waits in memory, never blocks the response (sonic-boom).
  const dest = pino.destination({ dest: log.access === 'stdout' ? 1 : log.access, sync: false, mkdir: false });
  dest.on('error', (error: unknown) => publishError({ ctx: null, error, where: `access log ${log.access}` }));
  if (log.format === 'json') {
    // Only our fields: no level, pid or hostname. `time` comes first through the level formatter
    // (pino writes its output as `{` + level fields + the object's fields, each led by a comma).
    const logger = pino({ base: null, timestamp: false, formatters: { level: () => ({ time: new Date().toISOString() }) } }, dest);
    return { dest, stdout: log.access === 'stdout', write: (event) => logger.info(accessEntry(event)) };
  }
  return { dest, stdout: log.access === 'stdout', write: (event) => dest.write(formatAccessLine(event)) };
}

function closeSink(sink: Sink | null): Promise<void> {
  if (sink === null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    if (sink.stdout) {
      // stdout stays open for the rest of the process: write out what is buffered.
      try { sink.dest.flushSync(); } catch { /* not ready or closed: nothing buffered */ }
      resolve();
      return;
    }
    sink.dest.once('close', () => resolve());
    sink.dest.once('error', () => resolve());
    sink.dest.end();
  });
}

/** Subscribes the logs to the diagnostics channels. */
export function startLogs(log: Config['log'], errors: Writable = process.stderr): Logs {
  const onError = (event: unknown) => errors.write(formatErrorLine(event as ErrorEvent));
  errorChannel.subscribe(onError);
  let current = log;
  let sink = openSink(log);
  const onResponse = (event: unknown) => sink?.write(event as ResponseEndEvent);
  if (sink !== null) responseEndChannel.subscribe(onResponse);
  return {
    configure(next) {
      if (next.access === current.access && next.format === current.format) return;
      const previous = sink;
      current = next;
      sink = openSink(next);
      if (previous === null && sink !== null) responseEndChannel.subscribe(onResponse);
      if (previous !== null && sink === null) responseEndChannel.unsubscribe(onResponse);
      void closeSink(previous);
    },
    reopen() {
      if (sink === null || current.access === 'stdout') return;
      sink.dest.reopen();
    },
    async close() {
      errorChannel.unsubscribe(onError);
      if (sink !== null) responseEndChannel.unsubscribe(onResponse);
      const last = sink;
      sink = null;
      await closeSink(last);
    },
  };
}
