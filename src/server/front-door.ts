import { createServer, isIPv6, type BlockList, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { realTimers, type Timers } from '../timers.ts';
import { readClientHello } from './client-hello.ts';
import { encodeProxyHeader, readProxyHeader, type Endpoint } from './proxy-protocol.ts';
import { openTunnel, type PassthroughRoute, type TunnelEvent } from './tunnel.ts';

/**
 * What accepts connections when the listener must look at the first bytes before it serves them:
 * a PROXY protocol header from a trusted balancer (the real client's address), and on the HTTPS
 * listener the ClientHello's server name, to pass some hosts through to their own backend as raw
 * TCP. Every other connection is handed, with the bytes already read put back, to the TLS (or
 * plain HTTP) server as if it had accepted it. The preface is bounded in size and time; a
 * malformed or slow one is closed.
 */

export interface FrontDoorOptions {
  /** Where terminated connections go, fed through its 'connection' event. */
  readonly target: Server;
  /** The target is a TLS server: real client addresses are set on the TLS sockets it makes. */
  readonly tls: boolean;
  /** Peers that must begin with a PROXY protocol header (v1 or v2); null: PROXY protocol off. */
  readonly trusted: BlockList | null;
  readonly passthrough: readonly PassthroughRoute[];
  /** Time for the preface (PROXY header, ClientHello) to arrive. */
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
  /** Connections that came with a PROXY header from a trusted balancer. */
  proxyProtocol: number;
  /**
   * Connections closed before they were served: a malformed (or oversized) preface, one that did not
   * arrive in time, a trusted balancer's connection without a PROXY header.
   */
  closed: { malformed: number; slow: number; noProxyHeader: number };
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
    proxyProtocol: 0,
    closed: { malformed: 0, slow: 0, noProxyHeader: 0 },
  };
  const readsHello = options.passthrough.length > 0;
  /** Real clients of handed-over connections, by the balancer-side endpoint the TLS socket reports. */
  const realPeers = new Map<string, Endpoint>();
  if (options.tls && options.trusted !== null) {
    options.target.on('secureConnection', (tls: TLSSocket) => {
      const real = realPeers.get(`${tls.remoteAddress}|${tls.remotePort}`);
      if (real !== undefined) showPeer(tls, real);
    });
  }

  const server = createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => {}); // ours until handed over; a reset before that is not worth a line
    const peer = plainAddress(socket.remoteAddress);
    const viaBalancer = options.trusted !== null && options.trusted.check(peer, isIPv6(peer) ? 'ipv6' : 'ipv4');
    if (!viaBalancer && !readsHello) return void options.target.emit('connection', socket);
    pending.add(socket);
    let buffered: Buffer = Buffer.alloc(0);
    /** The client as the balancer saw it, once its PROXY header is read. */
    let client: { source: Endpoint; destination: Endpoint } | null = null;
    let headerLength = 0;
    let stage: 'proxy' | 'hello' = viaBalancer ? 'proxy' : 'hello';
    const cancelDeadline = timers.setTimeout(() => reject('slow'), options.prefaceTimeout);

    const stop = () => {
      cancelDeadline();
      pending.delete(socket);
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    const reject = (why: keyof FrontDoorStats['closed']) => {
      stop();
      stats.closed[why]++;
      socket.destroy();
    };
    const onClose = () => stop();

    const handOver = () => {
      stop();
      socket.pause();
      if (buffered.length > 0) socket.unshift(buffered);
      if (client !== null) {
        const key = `${socket.remoteAddress}|${socket.remotePort}`;
        if (options.tls) {
          realPeers.set(key, client.source);
          socket.once('close', () => realPeers.delete(key));
        } else {
          showPeer(socket, client.source);
        }
      }
      options.target.emit('connection', socket);
      // A TLS socket takes what was put back when it wraps this one. Node's HTTP server reads the
      // descriptor directly (parser.consume): what was put back reaches it only as 'data' events.
      if (!options.tls && buffered.length > 0) socket.resume();
    };

    const passThrough = (route: PassthroughRoute, servername: string) => {
      stop();
      socket.pause();
      stats.passthrough.connections++;
      stats.passthrough.active++;
      const tunnel = openTunnel({
        client: socket,
        preface: buffered,
        skipped: headerLength,
        route,
        servername,
        clientAddress: client?.source.address ?? peer,
        proxyHeader: route.proxyProtocol === 0 ? null : encodeProxyHeader(route.proxyProtocol, client ?? {
          source: { address: peer, port: socket.remotePort ?? 0 },
          destination: { address: plainAddress(socket.localAddress), port: socket.localPort ?? 0 },
        }),
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
      if (stage === 'proxy') {
        const header = readProxyHeader(buffered);
        if (header.kind === 'more') return;
        if (header.kind === 'invalid') return reject(header.reason === 'no PROXY protocol header' ? 'noProxyHeader' : 'malformed');
        stats.proxyProtocol++;
        headerLength = header.length;
        client = header.addresses;
        buffered = buffered.subarray(header.length);
        stage = 'hello';
        if (!readsHello) return handOver();
        if (buffered.length === 0) return;
      }
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

/** The real client in place of the balancer: what logs, X-Forwarded-For and the guard read. */
function showPeer(socket: Socket, peer: Endpoint): void {
  Object.defineProperties(socket, {
    remoteAddress: { value: peer.address, configurable: true },
    remotePort: { value: peer.port, configurable: true },
    remoteFamily: { value: isIPv6(peer.address) ? 'IPv6' : 'IPv4', configurable: true },
  });
}

/** IPv4-mapped IPv6 peers (::ffff:1.2.3.4) read as IPv4, as the request adapter shows them. */
function plainAddress(address: string | undefined): string {
  return address === undefined ? '' : address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
