import type { IncomingMessage, ServerResponse } from 'node:http';
import { startOrigin, type SeenRequest, type TestOrigin } from './outpost.ts';

/** Answers one path; `n` counts the requests the origin has seen for it, this one included. */
export type OriginRoute = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/**
 * A test origin whose paths each name a behaviour: tests register a handler per path and count
 * what reached the origin for it. Unknown paths get 404.
 */
export interface RoutedOrigin extends TestOrigin {
  /** Registers `handler` for `path`; answers the path. */
  route(path: string, handler: OriginRoute): string;
  /** A path of its own (`/name-7`) for `handler`. */
  fresh(name: string, handler: OriginRoute): string;
  /** Requests that reached the origin for `path`. */
  count(path: string): number;
  seenFor(path: string): SeenRequest[];
}

export interface RoutedOriginOptions {
  /** Date for every response (a test clock's `dateHeader`); Node's own when absent. */
  readonly date?: () => string;
}

export async function startRoutedOrigin(options: RoutedOriginOptions = {}): Promise<RoutedOrigin> {
  const routes = new Map<string, OriginRoute>();
  let unique = 0;
  const origin = await startOrigin((req, res) => {
    res.on('error', () => {}); // a client that leaves, or a response the cache drops, may reset the connection
    const handler = routes.get(req.url ?? '');
    if (!handler) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('no route');
    }
    if (options.date) res.setHeader('date', options.date());
    handler(req, res, seenFor(req.url ?? '').length);
  });
  const seenFor = (path: string) => origin.seen.filter((r) => r.url === path);
  const route = (path: string, handler: OriginRoute) => {
    routes.set(path, handler);
    return path;
  };
  return {
    ...origin,
    route,
    fresh: (name, handler) => route(`/${name}-${++unique}`, handler),
    count: (path) => seenFor(path).length,
    seenFor,
  };
}
