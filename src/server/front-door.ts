import { createServer, type Server, type Socket } from 'node:net';
import { realTimers, type Timers } from '../timers.ts';
import { readClientHello } from './client-hello.ts';
import { openTunnel, type PassthroughRoute, type TunnelEvent } from './tunnel.ts';

/**
 * What accepts connections when the listener must look at the first bytes before TLS: the
 * ClientHello's server name, to pass some hosts through to their own backend as raw TCP. Every
 * other connection is handed, with the bytes already read put back, to the TLS server as if it had
 * accepted it. The preface is bounded in size and time; a malformed or slow one is closed.
 */

export interface FrontDoorOptions {
  /** Where terminated connections go: the TLS server, fed through its 'connection' event. */
  readonly target: Server;
  readonly passthrough: readonly PassthroughRoute[];
  /** Time for the ClientHello to arrive. */
  readonly prefaceTimeout: number;
  /** Open connections, passed through or terminated; more are refused. */
  readonly maxConnections: number;
  readonly timers?: Timers;
  /** A passed-through connection ended (for the log). */
  readonly onTunnel?: (event: TunnelEvent) => void;
  /** Opens backend connections (net.connect); tests pass one that never connects. */
  readonly connect?: (host: string, port: number) => Socket;
}

export interface FrontDoorStats {
  passthrough: { connections: number; active: number; failed: number; bytesIn: number; bytesOut: number };
  /** Connections closed before TLS: a ClientHello that is malformed (or too large), or one that did not arrive in time. */
  closed: { malformed: number; slow: number };
}

export interface FrontDoor {
  readonly server: Server;
  stats(): FrontDoorStats;
  /** Closes what has not reached TLS yet and every passed-through connection (end of the shutdown deadline). */
  destroyAll(): void;
}

/** Exact names first, then a one-label wildcard (`*.example.com` covers `a.example.com`), as certificates match. */
function routeTable(routes: readonly PassthroughRoute[]): (servername: string) => PassthroughRoute | undefined {
  const exact = new Map<string, PassthroughRoute>();
  const wildcard = new Map<string, PassthroughRoute>();
  for (const route of routes) {
    for (const host of route.hosts) {
      const table = host.startsWith('*.') ? wildcard : exact;
      const key = host.startsWith('*.') ? host.slice(2) : host;
      if (!table.has(key)) table.set(key, route);
    }
  }
  return (name) => {
    const hit = exact.get(name);
    if (hit !== undefined) return hit;
    const dot = name.indexOf('.');
    return dot > 0 ? wildcard.get(name.slice(dot + 1)) : undefined;
  };
}

export function createFrontDoor(options: FrontDoorOptions): FrontDoor {
  const timers = options.timers ?? realTimers;
  const routeFor = routeTable(options.passthrough);
  const pending = new Set<Socket>();
  const tunnels = new Set<{ destroy(): void }>();
  const stats: FrontDoorStats = {
    passthrough: { connections: 0, active: 0, failed: 0, bytesIn: 0, bytesOut: 0 },
    closed: { malformed: 0, slow: 0 },
  };

  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {}); // ours until handed over; a reset before that is not worth a line
    pending.add(socket);
    let buffered: Buffer = Buffer.alloc(0);
    const cancelDeadline = timers.setTimeout(() => reject('slow'), options.prefaceTimeout);

    const stop = () => {
      cancelDeadline();
      pending.delete(socket);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const reject = (why: 'malformed' | 'slow') => {
      stop();
      stats.closed[why]++;
      socket.destroy();
    };
    const onClose = () => stop();

    const handOver = () => {
      stop();
      socket.pause();
      if (buffered.length > 0) socket.unshift(buffered);
      options.target.emit('connection', socket);
    };

    const passThrough = (route: PassthroughRoute, servername: string) => {
      stop();
      socket.pause();
      stats.passthrough.connections++;
      stats.passthrough.active++;
      const tunnel = openTunnel({
        client: socket,
        preface: buffered,
        skipped: 0,
        route,
        servername,
        clientAddress: plainAddress(socket.remoteAddress),
        proxyHeader: null,
        timers,
        connect: options.connect,
        onClose: (event) => {
          tunnels.delete(tunnel);
          stats.passthrough.active--;
          if (event.error !== null && event.bytesOut === 0) stats.passthrough.failed++;
          stats.passthrough.bytesIn += event.bytesIn;
          stats.passthrough.bytesOut += event.bytesOut;
          options.onTunnel?.(event);
        },
      });
      tunnels.add(tunnel);
    };

    function onData(chunk: Buffer) {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const hello = readClientHello(buffered);
      if (hello.kind === 'more') return;
      if (hello.kind === 'invalid') return reject('malformed');
      const route = hello.servername === null ? undefined : routeFor(hello.servername);
      if (route === undefined) handOver();
      else passThrough(route, hello.servername!);
    }

    socket.on('data', onData);
    socket.once('close', onClose);
  });
  server.maxConnections = options.maxConnections;

  return {
    server,
    stats: () => structuredClone(stats),
    destroyAll() {
      for (const socket of pending) socket.destroy();
      for (const tunnel of tunnels) tunnel.destroy();
    },
  };
}

/** IPv4-mapped IPv6 peers (::ffff:1.2.3.4) read as IPv4, as the request adapter shows them. */
function plainAddress(address: string | undefined): string {
  return address === undefined ? '' : address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
