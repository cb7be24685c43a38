import { createLineWriter, type LineWriter } from './line-writer.ts';
import type { Writable } from 'node:stream';
import { errorChannel, passthroughChannel, publishError, responseEndChannel, upstreamChannel, type ErrorEvent, type ResponseEndEvent, type UpstreamEvent } from './channels.ts';
import type { TunnelEvent } from '../server/tunnel.ts';
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
 *
 * The error log (stderr) is rate-limited per kind of error, so an attack that causes errors cannot
 * turn into a flood of log lines.
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

const errorCode = (error: unknown): string => (isOutpostError(error) ? error.code : (error as { code?: string })?.code ?? 'ERROR');

const oneLine = (text: string) => text.replace(/\s*[\r\n]+\s*/g, ' ');

export function formatErrorLine({ ctx, error, where }: ErrorEvent): string {
  const request = ctx ? ` ${ctx.method} ${ctx.host}${ctx.target}` : '';
  const code = isOutpostError(error) ? `${error.code} ${error.status}` : errorCode(error);
  const message = isOutpostError(error) && error.detail !== undefined ? `${error.message} (${error.detail})` : (error as Error)?.message ?? String(error);
  const cause = (error as { cause?: { message?: string; code?: string } })?.cause;
  const causeText = cause ? ` (cause: ${cause.code ?? ''} ${cause.message ?? ''})` : '';
  // The cause on the error's line, whatever it holds (undici's assertion texts span several lines);
  // the message keeps its own lines (a refused configuration lists one problem per line).
  // Node's system errors start their message with their code ("ENOENT: no such file..."): said once.
  const text = message.startsWith(`${code}: `) ? message : `${code}: ${message}`;
  return `${new Date().toISOString()} error ${where}${request}: ${text}${oneLine(causeText)}\n`;
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

/** A passed-through connection as one JSON line. */
export function formatPassthroughJson(e: TunnelEvent, time = Date.now()): string {
  return `{"time":"${isoTime(time)}","passthrough":${str(e.servername)},"remote":${str(e.client)},"backend":${str(e.backend)},` +
    `"bytes_in":${e.bytesIn},"bytes_out":${e.bytesOut},"duration_ms":${Math.round(e.durationMs * 1000) / 1000},"error":${strOrNull(e.error ?? undefined)}}\n`;
}

/** A passed-through connection, in the access log: who, which name, where to, bytes each way, how long. */
export function formatPassthroughLine(e: TunnelEvent): string {
  return `${e.client} ${e.servername} [${new Date().toISOString()}] "PASSTHROUGH ${e.backend}" ${e.bytesIn} ${e.bytesOut} ` +
    `${e.durationMs.toFixed(1)}ms${e.error === null ? '' : ` error=${e.error}`}\n`;
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
  /** A passed-through connection's line. */
  readonly writeTunnel: (event: TunnelEvent) => void;
}

function openSink(log: Config['log']): Sink | null {
  if (log.access === 'off') return null;
  const out = createLineWriter(log.access, (error) => publishError({ ctx: null, error, where: `access log ${log.access}` }));
  const format = log.format === 'json' ? formatAccessJson : formatAccessLine;
  const tunnel = log.format === 'json' ? formatPassthroughJson : formatPassthroughLine;
  return { out, write: (event) => out.write(format(event)), writeTunnel: (event) => out.write(tunnel(event)) };
}

const closeSink = (sink: Sink | null): Promise<void> => (sink === null ? Promise.resolve() : sink.out.close());

/**
 * Subscribes the logs to the diagnostics channels. The error log is rate-limited per kind of error
 * (createErrorLogLimiter), so an attack that causes errors cannot turn into a flood of lines;
 * upstream health changes go to it too; passed-through connections get an access-log line.
 */
export function startLogs(log: Config['log'], errors: Writable = process.stderr, options: { now?: () => number } = {}): Logs {
  const errorLines = createErrorLogLimiter((line) => errors.write(line), options);
  const onError = (event: unknown) => {
    if (errorLines.admit(event as ErrorEvent)) errors.write(formatErrorLine(event as ErrorEvent));
  };
  errorChannel.subscribe(onError);
  const onUpstream = (event: unknown) => errors.write(formatUpstreamLine(event as UpstreamEvent));
  upstreamChannel.subscribe(onUpstream);
  let current = log;
  let sink = openSink(log);
  const onResponse = (event: unknown) => sink?.write(event as ResponseEndEvent);
  const onTunnel = (event: unknown) => sink?.writeTunnel(event as TunnelEvent);
  // Subscribed only while there is an access log: without subscribers the writer builds no event.
  const subscribe = () => { responseEndChannel.subscribe(onResponse); passthroughChannel.subscribe(onTunnel); };
  const unsubscribe = () => { responseEndChannel.unsubscribe(onResponse); passthroughChannel.unsubscribe(onTunnel); };
  if (sink !== null) subscribe();
  return {
    configure(next) {
      if (next.access === current.access && next.format === current.format) return;
      const previous = sink;
      current = next;
      sink = openSink(next);
      if (previous === null && sink !== null) subscribe();
      if (previous !== null && sink === null) unsubscribe();
      void closeSink(previous);
    },
    reopen() {
      sink?.out.reopen();
    },
    async close() {
      errorChannel.unsubscribe(onError);
      errorLines.flush();
      upstreamChannel.unsubscribe(onUpstream);
      if (sink !== null) unsubscribe();
      const last = sink;
      sink = null;
      await closeSink(last);
    },
  };
}
