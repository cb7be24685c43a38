import { createRequire } from 'node:module';
import type * as Undici from 'undici';

/**
 * The parts of undici Outpost uses, loaded from their own files. undici's index also loads fetch,
 * WebSocket, EventSource, the Cache API, the mock agents and the interceptors, none of which an
 * edge node runs: 2.4 MB more live heap and 8-9 MiB more RSS once started (undici 8.13). undici
 * has no `exports` map, so its files resolve as any package file does; they are the same modules the
 * index loads (one CommonJS cache), so an undici Pool made elsewhere (a test's) is the same class.
 */
const load = createRequire(import.meta.url);

export const Client: typeof Undici.Client = load('undici/lib/dispatcher/client.js');
export const Pool: typeof Undici.Pool = load('undici/lib/dispatcher/pool.js');
export const buildConnector: typeof Undici.buildConnector = load('undici/lib/core/connect.js');
export const errors: typeof Undici.errors = load('undici/lib/core/errors.js');

// `dispatcher.request()` (the health probes) is one of the methods undici's index adds to every
// Dispatcher; only that one is needed here.
const Dispatcher: typeof Undici.Dispatcher = load('undici/lib/dispatcher/dispatcher.js');
if (!('request' in Dispatcher.prototype)) {
  Object.defineProperty(Dispatcher.prototype, 'request', { value: load('undici/lib/api/api-request.js'), writable: true, configurable: true });
}
