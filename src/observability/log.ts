import { createLineWriter, type LineWriter } from './line-writer.ts';
import type { Writable } from 'node:stream';
import { errorChannel, publishError, responseEndChannel, type ErrorEvent, type ResponseEndEvent } from './channels.ts';
import { isOutpostError } from '../errors.ts';
import type { Config } from '../config/schema.ts';

/**
 * The access log: one entry per response, written when it has finished or was aborted (the
 * response writer's end report), so `bytes` is what was sent and the duration runs to the last
 * byte. `text` keeps the combined-log shape plus duration, cache result and notes; `json` is one
 * object per line with a fixed set of fields (README: "Access log").
 *
 * Off the request path and cheap, because the benchmark says so: the line is built by hand
 * (fixed fields; pino's generic serializer measured 1.15 µs per entry, this about 0.35 µs), the
 * timestamp's text is made once per second, and lines are batched into few writes
 * (line-writer.ts: pino's writer, sonic-boom, measured about 5 µs per line on the hit path).
 */

/** ISO 8601 for a time in ms; the part up to the second is made once per second. */
let isoSecond = -1;
let isoPrefix = '';
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const frac = ms - second * 1000;
  return `${isoPrefix}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
}

/** A JSON string: quoted as it is when nothing needs escaping (the usual case), else JSON.stringify. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;
const str = (value: string) => (PLAIN.test(value) ? `"${value}"` : JSON.stringify(value));
const strOrNull = (value: string | undefined) => (value === undefined ? 'null' : str(value));
const header = (value: string | string[] | number | undefined) => (value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : String(value));
const quote = (value: unknown) => (value === undefined ? '"-"' : JSON.stringify(String(value)));

export function formatAccessLine({ request, status, bytes, durationMs, outcome, cache }: ResponseEndEvent, time = Date.now()): string {
  let notes = '';
  if (request.notes !== undefined) for (const [k, v] of request.notes) notes += ` ${k}=${v}`;
  const aborted = outcome === 'ok' ? '' : ` outcome=${outcome}`;
  return `${request.remoteAddress} ${request.host || '-'} [${isoTime(time)}] ${quote(`${request.method} ${request.target} HTTP/${request.httpVersion}`)} ` +
    `${status} ${bytes} ${quote(request.headers.referer)} ${quote(request.headers['user-agent'])} ${durationMs.toFixed(1)}ms cache=${cache}${aborted}${notes}\n`;
}

/** One JSON object per line; the fields in README order. */
export function formatAccessJson({ request, status, headers, bytes, durationMs, outcome, cache }: ResponseEndEvent, time = Date.now()): string {
  const encoding = headers['content-encoding'];
  return `{"time":"${isoTime(time)}","remote":${str(request.remoteAddress)},"method":${str(request.method)},"host":${str(request.host)},` +
    `"path":${str(request.target)},"protocol":"HTTP/${request.httpVersion}","status":${status},"bytes":${bytes},` +
    `"duration_ms":${Math.round(durationMs * 1000) / 1000},"cache":"${cache}","encoding":${encoding === undefined ? '"identity"' : str(header(encoding)!)},` +
    `"upstream":${strOrNull(request.notes?.get('upstream'))},"outcome":"${outcome}","error":${strOrNull(request.notes?.get('error'))},` +
    `"referer":${strOrNull(header(request.headers.referer))},"user_agent":${strOrNull(header(request.headers['user-agent']))}}\n`;
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

interface Sink {
  readonly out: LineWriter;
  readonly write: (event: ResponseEndEvent) => void;
}

function openSink(log: Config['log']): Sink | null {
  if (log.access === 'off') return null;
  const out = createLineWriter(log.access, (error) => publishError({ ctx: null, error, where: `access log ${log.access}` }));
  const format = log.format === 'json' ? formatAccessJson : formatAccessLine;
  return { out, write: (event) => out.write(format(event)) };
}

const closeSink = (sink: Sink | null): Promise<void> => (sink === null ? Promise.resolve() : sink.out.close());

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
      sink?.out.reopen();
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
