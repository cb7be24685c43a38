import { before, after } from 'node:test';
import { connect, type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, createServer, type IncomingMessage, type ServerResponse, type Server, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { applyOverrides, validateConfig } from '../../src/config/load.ts';
import { createApp, type AppDependencies } from '../../src/app.ts';
import { startServers } from '../../src/server/listener.ts';
import { createReadyReplies } from '../../src/server/replies.ts';
import { responseEndChannel } from '../../src/observability/channels.ts';
import { devCertificate } from '../../src/server/tls.ts';
import { startAdmin } from '../../src/observability/admin.ts';

/** One development certificate per test process, made at first use. */
const certDir = mkdtempSync(join(tmpdir(), 'outpost-test-cert-'));
let caPromise: Promise<string> | undefined;
export const testCa = () => (caPromise ??= devCertificate(certDir).then((pair) => pair.cert));

export interface RunningOutpost {
  url: string;
  httpsPort: number;
  httpPort: number | null;
  ca: string;
  /** The admin API's base URL when `raw.admin.token` was given. */
  adminUrl: string | null;
  /** Resolves when no origin health probe is in flight (after moving `deps.timers`). */
  probesSettled(): Promise<void>;
  /** The listeners' counters (PROXY headers, passthrough, connections closed before they were served). */
  listenerStats(): ReturnType<Awaited<ReturnType<typeof startServers>>['stats']>;
  /** The listeners themselves (to watch their sessions). */
  servers: Awaited<ReturnType<typeof startServers>>['servers'];
  close(): Promise<void>;
}

/**
 * Outpost in this process on 127.0.0.1 with ports chosen by the OS. `raw` is config as a YAML
 * file would hold it; listen ports, log and the certificate dir are set here unless given.
 */
export async function startOutpost(raw: Record<string, any> = {}, deps: AppDependencies = {}): Promise<RunningOutpost> {
  const ca = await testCa();
  const config = validateConfig(applyOverrides({
    log: { access: 'off' },
    ...raw,
    limits: { shutdownTimeout: '2s', ...raw.limits },
    listen: { host: '127.0.0.1', https: 0, http: null, ...raw.listen },
    tls: { devCertDir: certDir, ...raw.tls },
  }, {}));
  const app = await createApp(config, deps);
  // As the instance runs it: replies kept ready answer repeated hits without the chain. Kept from
  // the first reusable answer (the instance waits for a shape to prove hot, replies.test.ts), so
  // every test's second hit and on goes the kept way, which must answer as the chain does.
  const running = await startServers(config, app.handler, { timers: deps.timers }, createReadyReplies({ reported: () => responseEndChannel.hasSubscribers, proof: 1 }));
  const admin = config.admin.token
    ? await startAdmin('127.0.0.1:0', config.admin.token, { ...app.admin, stats: () => ({ ...app.admin.stats(), listener: running.stats() }) })
    : null;
  return {
    adminUrl: admin ? `http://127.0.0.1:${admin.port}` : null,
    url: `https://127.0.0.1:${running.httpsPort}`,
    httpsPort: running.httpsPort,
    httpPort: running.httpPort,
    ca,
    listenerStats: () => running.stats(),
    servers: running.servers,
    probesSettled: async () => { await Promise.all([...app.proxies.values()].map((p) => p.probesSettled())); },
    close: async () => { await running.close(); await admin?.close(); await app.close(); },
  };
}

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  body?: Buffer | string | Readable;
  ca?: string;
  servername?: string;
}

const collect = async (stream: Readable) => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
};

/** One HTTP/2 session; reuse it for several requests, close it at the end. */
export async function h2session(url: string, options: { ca?: string; servername?: string } = {}): Promise<ClientHttp2Session> {
  const session = connect(url, { ca: options.ca ?? (await testCa()), servername: options.servername });
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  return session;
}

export async function h2request(session: ClientHttp2Session, path: string, options: RequestOptions = {}): Promise<TestResponse> {
  const stream = session.request({ ':method': options.method ?? 'GET', ':path': path, ...options.headers },
    { endStream: options.body === undefined });
  if (options.body !== undefined) {
    if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) stream.end(options.body);
    else options.body.pipe(stream);
  }
  const headers = await new Promise<Record<string, any>>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
  const body = await collect(stream);
  const status = headers[':status'] as number;
  delete headers[':status'];
  return { status, headers, body };
}

/** A one-off HTTP/2 request on its own session. */
export async function h2(url: string, options: RequestOptions = {}): Promise<TestResponse> {
  const target = new URL(url);
  const session = await h2session(target.origin, options);
  try {
    return await h2request(session, target.pathname + target.search, options);
  } finally {
    session.close();
  }
}

/** An HTTP/1.1 request over TLS (ALPN offers only http/1.1), on a fresh connection. */
export async function h1(url: string, options: RequestOptions = {}): Promise<TestResponse> {
  const target = new URL(url);
  const ca = options.ca ?? (await testCa());
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(target, {
      method: options.method ?? 'GET', headers: options.headers as Record<string, string>, agent: false,
      ...(target.protocol === 'https:' ? { ca, ALPNProtocols: ['http/1.1'], servername: options.servername ?? 'localhost' } : {}),
    }, (res) => {
      collect(res).then((body) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }), reject);
    });
    req.on('error', reject);
    if (options.body === undefined) req.end();
    else if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) req.end(options.body);
    else options.body.pipe(req);
  });
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyLength: number;
}

export interface TestOrigin {
  url: string;
  port: number;
  /** Every request that reached the origin, in order. */
  seen: SeenRequest[];
  server: Server;
  close(): Promise<void>;
}

/** A real HTTP origin on 127.0.0.1:0 that records what it receives. The handler answers. */
export async function startOrigin(handler: (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void): Promise<TestOrigin> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const record: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyLength: 0 };
    seen.push(record);
    req.on('data', (chunk: Buffer) => { record.bodyLength += chunk.length; });
    handler(req, res, record);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/**
 * For a test file whose cases all talk to one Outpost in front of an origin that reads each
 * request's body and answers with its method and target: both started before the file's tests and
 * stopped after them. Read `outpost` and `origin` from inside the tests.
 */
export function proxiedForFile(): { readonly outpost: RunningOutpost; readonly origin: TestOrigin } {
  const running = {} as { outpost: RunningOutpost; origin: TestOrigin };
  before(async () => {
    running.origin = await startOrigin((req, res) => { req.resume().on('end', () => res.end(`origin ${req.method} ${req.url}`)); });
    running.outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: running.origin.url }] });
  });
  after(async () => {
    await running.outpost.close();
    await running.origin.close();
  });
  return running;
}

/**
 * A clock for the cache that tests move forward by hand, so freshness runs out without sleeping.
 * It runs with real time plus what was advanced; origins in such tests send `Date` from it too
 * (`dateHeader()`), or the jump would show up as the response's apparent age (RFC 9111 §4.2.3).
 */
export interface TestClock {
  readonly now: () => number;
  advance(ms: number): void;
  /**
   * Stops real time for this clock until the returned function is called (advance() still moves
   * it): for assertions on exact ages, which a slow machine would otherwise push over a second.
   * It stops at the next whole second, where `Date` (whole seconds) says the exact time.
   */
  hold(): () => void;
  dateHeader(): string;
}

export function testClock(): TestClock {
  let offset = 0;
  let heldAt: number | undefined;
  const now = () => heldAt ?? Date.now() + offset;
  return {
    now,
    advance: (ms) => {
      offset += ms;
      if (heldAt !== undefined) heldAt += ms;
    },
    hold: () => {
      heldAt = Math.ceil(now() / 1000) * 1000;
      // Real time goes on from where the clock was held.
      return () => { offset = heldAt! - Date.now(); heldAt = undefined; };
    },
    dateHeader: () => new Date(now()).toUTCString(),
  };
}

export const readFixture = (path: string) => readFileSync(path);
