import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http } from '../server/node-http.ts';
import { timingSafeEqual, createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * The admin API, on its own listener (loopback by default) behind a bearer token:
 *   POST /purge  {"url": "https://host/path?q"}   every stored variant of that URL
 *   POST /purge  {"tag": "product-42"}            everything the origin tagged so (Cache-Tag, Surrogate-Key)
 *   POST /purge  {"all": true}                    the whole cache
 *   "soft": true with url or tag                  mark stale instead of dropping: the next request
 *                                                 revalidates (or is served stale-while-revalidate)
 *   GET  /stats                                   cache counters
 *   GET  /metrics                                 Prometheus text format (every worker's, summed)
 *   GET  /explain?url=URL[&header=value...]       what the cache holds for that URL and why; other
 *                                                 parameters are request fields (accept-encoding=br)
 *   GET  /dashboard?token=TOKEN                   sets an HttpOnly cookie and redirects to /dashboard,
 *                                                 a live page (no build step) polling /dashboard/feed
 *   POST /reload                                  re-read the config and certificates (as SIGHUP);
 *                                                 422 with the problems when the new config is refused
 * Answers JSON: {"purged": n} with how many stored responses were dropped (or marked stale).
 */
export type PurgeTarget = { readonly url: string } | { readonly tag: string } | { readonly all: true };

export interface AdminActions {
  purge(target: PurgeTarget, soft: boolean): Promise<number>;
  stats(): Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Present where the process can reload (not in tests that build an app alone). */
  reload?(): Promise<ReloadAnswer>;
  /** Prometheus text exposition of the node's metrics. */
  metrics?(): Promise<string>;
  /** The dashboard's JSON feed (src/observability/feed.ts dashboardView). */
  dashboard?(): Promise<unknown>;
  /** What the cache holds for a URL and why (src/cache/explain.ts). */
  explain?(url: URL, headers: Record<string, string>): Promise<unknown>;
}

/** What POST /reload answers: applied (with warnings and keys that need a restart) or refused. */
export type ReloadAnswer =
  | { readonly reloaded: true; readonly warnings: readonly string[]; readonly restartNeeded: readonly string[] }
  | { readonly reloaded: false; readonly problems: readonly string[] };

export interface RunningAdmin {
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 16 * 1024;
/** What a purge's body may hold: one target, and `soft`. */
const PURGE_TARGETS = ['url', 'tag', 'all'] as const;
const PURGE_FIELDS: ReadonlySet<string> = new Set([...PURGE_TARGETS, 'soft']);

/** The dashboard: one static page, its inline script allowed by hash (Content-Security-Policy). */
const DASHBOARD = readFileSync(new URL('./dashboard.html', import.meta.url));
const DASHBOARD_SCRIPT_HASH = createHash('sha256').update(/<script>([\s\S]*?)<\/script>/.exec(DASHBOARD.toString('utf8'))![1]).digest('base64');
const DASHBOARD_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-length': DASHBOARD.length,
  'cache-control': 'no-store',
  'content-security-policy': `default-src 'none'; script-src 'sha256-${DASHBOARD_SCRIPT_HASH}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};
const COOKIE = 'outpost_dashboard';
const digest = (value: string) => createHash('sha256').update(value).digest();

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw Object.assign(new Error('expected a JSON body'), { status: 400 });
  }
}

export async function startAdmin(listen: string, token: string, actions: AdminActions): Promise<RunningAdmin> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(colon + 1));
  const expected = digest(`Bearer ${token}`);

  // The dashboard cookie holds a value derived from the token, never the token itself.
  const session = createHmac('sha256', token).update('outpost-dashboard-v1').digest('base64url');
  const sessionDigest = digest(session);
  const cookieOf = (req: IncomingMessage) => {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq !== -1 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
    }
    return '';
  };

  /**
   * GET /dashboard[?token=] and /dashboard/feed: a browser cannot send a bearer token, so the token
   * in the address sets an HttpOnly, SameSite=Strict cookie and is dropped from the address by a
   * redirect. The cookie opens only these two read-only routes (no purge, no reload: no CSRF).
   */
  function dashboard(req: IncomingMessage, res: ServerResponse, path: string, query: string): void {
    const given = new URLSearchParams(query).get('token');
    if (path === '/dashboard' && given !== null) {
      if (!timingSafeEqual(digest(`Bearer ${given}`), expected)) return send(res, 401, { error: 'wrong token' });
      res.writeHead(303, {
        location: '/dashboard',
        'set-cookie': `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=43200`,
        'cache-control': 'no-store', 'content-length': 0, 'referrer-policy': 'no-referrer',
      });
      res.end();
      return;
    }
    const allowed = timingSafeEqual(digest(cookieOf(req)), sessionDigest) || timingSafeEqual(digest(req.headers.authorization ?? ''), expected);
    if (!allowed) {
      const text = 'Open /dashboard?token=TOKEN (admin.token) once; the browser then keeps a cookie.\n';
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
    if (path === '/dashboard') {
      res.writeHead(200, DASHBOARD_HEADERS);
      res.end(req.method === 'HEAD' ? undefined : DASHBOARD);
      return;
    }
    actions.dashboard!().then((body) => send(res, 200, body), (err: Error) => send(res, 500, { error: err.message }));
  }

  const server: Server = http.createServer({ headersTimeout: 5000, requestTimeout: 10_000 }, (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    // Split at the first '?' only: an explain URL given unencoded keeps its own query.
    const [target, search] = q === -1 ? [url, ''] : [url.slice(0, q), url.slice(q + 1)];
    if ((target === '/dashboard' || target === '/dashboard/feed') && actions.dashboard && (req.method === 'GET' || req.method === 'HEAD')) {
      return dashboard(req, res, target, search);
    }
    // Constant-time comparison of fixed-length digests: the token does not leak through timing.
    if (!timingSafeEqual(digest(req.headers.authorization ?? ''), expected)) {
      res.setHeader('www-authenticate', 'Bearer');
      return send(res, 401, { error: 'missing or wrong bearer token' });
    }
    const [path, query] = [target, search];
    if (path === '/metrics' && actions.metrics && (req.method === 'GET' || req.method === 'HEAD')) {
      actions.metrics().then((text) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      }, (err: Error) => send(res, 500, { error: err.message }));
      return;
    }
    handle(req.method ?? 'GET', path, query, req).then(
      ([status, body]) => send(res, status, body),
      (err: { status?: number; message?: string }) => send(res, err.status ?? 500, { error: err.message ?? 'failed' }),
    );
  });

  async function handle(method: string, path: string, query: string, req: IncomingMessage): Promise<[number, unknown]> {
    if (path === '/explain' && actions.explain) {
      if (method !== 'GET') return [405, { error: 'use GET' }];
      const params = new URLSearchParams(query);
      const raw = params.get('url');
      let url: URL;
      try { url = new URL(raw ?? ''); } catch { return [400, { error: `url: expected an absolute URL, got ${JSON.stringify(raw)}` }]; }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return [400, { error: `url: expected an http(s) URL, got ${JSON.stringify(raw)}` }];
      const headers: Record<string, string> = {};
      for (const [name, value] of params) {
        if (name === 'url') continue;
        if (!/^[a-z0-9!#$%&'*+.^_`|~-]{1,64}$/i.test(name) || value.length > 4096) return [400, { error: `${name.slice(0, 64)}: expected a header field name and a value up to 4 KB` }];
        headers[name.toLowerCase()] = value;
      }
      return [200, await actions.explain(url, headers)];
    }
    if (path === '/stats') return method === 'GET' ? [200, await actions.stats()] : [405, { error: 'use GET' }];
    if (path === '/reload' && actions.reload) {
      if (method !== 'POST') return [405, { error: 'use POST' }];
      const answer = await actions.reload();
      return [answer.reloaded ? 200 : 422, answer];
    }
    if (path !== '/purge') return [404, { error: 'not found' }];
    if (method !== 'POST') return [405, { error: 'use POST' }];
    const body = await readJson(req) as Record<string, unknown> | null;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return [400, { error: 'expected a JSON object' }];
    // One target, and nothing the purge would not act on: {"url", "tags"} purging the URL alone, or
    // {"url", "tag"} the URL and not the tag, would read as done.
    const unknown = Object.keys(body).find((key) => !PURGE_FIELDS.has(key));
    if (unknown !== undefined) return [400, { error: `${JSON.stringify(unknown)}: not a purge field (url, tag, all, soft)` }];
    const targets = PURGE_TARGETS.filter((key) => body[key] !== undefined);
    if (targets.length > 1) return [400, { error: `one of url, tag or all at a time, got ${targets.join(' and ')}` }];
    if (body.soft !== undefined && typeof body.soft !== 'boolean') return [400, { error: `soft: expected true or false, got ${JSON.stringify(body.soft)}` }];
    const soft = body.soft === true;
    if (typeof body.url === 'string') {
      let url: URL;
      try { url = new URL(body.url); } catch { return [400, { error: `url: expected an absolute URL, got ${JSON.stringify(body.url)}` }]; }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return [400, { error: `url: expected an http(s) URL, got ${JSON.stringify(body.url)}` }];
      return [200, { purged: await actions.purge({ url: body.url }, soft) }];
    }
    if (typeof body.tag === 'string' && body.tag !== '') return [200, { purged: await actions.purge({ tag: body.tag }, soft) }];
    if (body.all === true) {
      if (soft) return [400, { error: 'soft: a soft purge needs a url or a tag' }];
      return [200, { purged: await actions.purge({ all: true }, false) }];
    }
    return [400, { error: 'expected {"url": "..."}, {"tag": "..."} or {"all": true}, optionally with "soft": true' }];
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
