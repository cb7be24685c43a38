import { connect, type Socket } from 'node:net';
import type { Timers } from '../timers.ts';

/**
 * A passed-through connection: the client's bytes, from its ClientHello on, go unread to the
 * backend and back, bounded by a connect timeout and an idle timeout. When both ends have closed
 * it reports what it carried (host, backend, bytes each way, duration).
 */

export interface PassthroughRoute {
  readonly hosts: readonly string[];
  readonly host: string;
  readonly port: number;
  /** Send the client's address in a PROXY protocol header of this version first; 0: none. */
  readonly proxyProtocol: 0 | 1 | 2;
  readonly connectTimeout: number;
  readonly idleTimeout: number;
}

export interface TunnelEvent {
  /** The SNI name that chose the backend. */
  readonly servername: string;
  /** host:port */
  readonly backend: string;
  readonly client: string;
  /** Bytes from the client to the backend (the ClientHello included), and back. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  /** Why it ended other than by a close from either side: `ECONNREFUSED`, `connect timed out`, `idle`. */
  readonly error: string | null;
}

export interface TunnelOptions {
  readonly client: Socket;
  /** What was read from the client to choose the route (the ClientHello): sent to the backend first. */
  readonly preface: Buffer;
  /** Bytes the client sent that are not the backend's (a PROXY header from a balancer). */
  readonly skipped: number;
  readonly route: PassthroughRoute;
  readonly servername: string;
  /** The client's address, for the log. */
  readonly clientAddress: string;
  /** A PROXY protocol header for the backend, when the route wants one. */
  readonly proxyHeader: Buffer | null;
  readonly timers: Timers;
  readonly onClose: (event: TunnelEvent) => void;
  /** Opens the backend connection (net.connect); a test passes one that never connects. */
  readonly connect?: (host: string, port: number) => Socket;
}

export function openTunnel(options: TunnelOptions): { destroy(): void } {
  const { client, route, timers } = options;
  const started = performance.now();
  const backend = options.connect ? options.connect(route.host, route.port) : connect({ host: route.host, port: route.port });
  let error: string | null = null;
  let connected = false;
  let last = timers.now();
  let cancelTimer: (() => void) | undefined;
  let open = 2;

  const end = (why: string | null) => {
    error ??= why;
    cancelTimer?.();
    client.destroy();
    backend.destroy();
  };
  const closed = () => {
    if (--open > 0) return;
    cancelTimer?.();
    options.onClose({
      servername: options.servername,
      backend: `${route.host}:${route.port}`,
      client: options.clientAddress,
      bytesIn: Math.max(0, client.bytesRead - options.skipped),
      bytesOut: client.bytesWritten,
      durationMs: performance.now() - started,
      error,
    });
  };
  const active = () => { last = timers.now(); };
  /** The idle timer checks when the last byte passed instead of being re-armed for every chunk. */
  const watchIdle = () => {
    const idle = timers.now() - last;
    if (idle >= route.idleTimeout) return end('idle');
    cancelTimer = timers.setTimeout(watchIdle, route.idleTimeout - idle);
  };

  client.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
  backend.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
  // When one side has closed, the other is ended and read to its end (a TLS close_notify, the FIN),
  // so it closes too: a pipe whose destination closed leaves its source paused, open for ever.
  const finish = (other: Socket) => {
    other.end();
    other.resume();
  };
  client.once('close', () => { finish(backend); closed(); });
  backend.once('close', () => { if (connected) finish(client); else client.destroy(); closed(); });
  cancelTimer = timers.setTimeout(() => end('connect timed out'), route.connectTimeout);

  backend.once('connect', () => {
    connected = true;
    cancelTimer?.();
    backend.setNoDelay(true);
    client.setNoDelay(true);
    if (options.proxyHeader !== null) backend.write(options.proxyHeader);
    backend.write(options.preface);
    client.on('data', active);
    backend.on('data', active);
    client.pipe(backend);
    backend.pipe(client);
    active();
    watchIdle();
  });

  return { destroy: () => end('shutdown') };
}
