import type { Http2Session } from 'node:http2';
import { realTimers, type Timers } from '../timers.ts';

/**
 * Gives each busy HTTP/2 session fresh tables for its open streams, once a second.
 *
 * Node keeps a session's open streams in a Map and a Set on the session's private state
 * (lib/internal/http2/core.js: `session[kState].streams`, `.pendingStreams`): every stream is
 * added when it opens and deleted when it closes. V8 makes a new table for a Map or Set when the
 * old one has filled up with deleted entries, and makes it where the old one lives; the old one is
 * left as it was but for a link to the new one (OrderedHashTable::Rehash). Once a table is in the
 * old generation (a full collection while the connection is busy moves it there, and it stays
 * there for the session's life), those replaced tables are garbage that only a full collection
 * frees, and until then they point at every stream they held: a young collection cannot tell,
 * so it copies every stream (and all its stream objects reach) twice and promotes it. From then
 * on every request over that connection is promoted, the full collections that follow keep the
 * next tables old, and a browser's or a load tool's connection lives for thousands of requests.
 *
 * Measured on the rig (2026-12-03; Outpost on one core, h2load 2 connections x 8 streams, a full
 * collection forced 1.5 s into a run so that both sessions' tables are old): what survived the
 * young generation in 6 s (V8's sampling heap profiler: the streams, their states, their header
 * objects), Brotli hits 181 MB before, 23.5 MB with this; pass-through 108 MB before, 39 MB. At
 * speed, 12 s runs alternating: hits 528-540k requests before, 551-563k with it; pass-through
 * 171-174k before, 175-185k (the host's noise is of that size). Copying a table of at most
 * maxConcurrentStreams entries takes a microsecond, once a second, for the sessions that opened a
 * stream in that second.
 *
 * A replaced table holds the same entries, and Node reads both through the session's state at
 * each use (Node 24: nothing keeps one across turns of the event loop), so a replacement between
 * two events changes nothing but where the table lives. Where Node's state has another shape
 * (another version), nothing is replaced.
 */

interface StreamTables {
  streams: Map<unknown, unknown>;
  pendingStreams: Set<unknown>;
}

/** The symbol Node keeps a session's state under, once found on a session. */
let stateKey: symbol | undefined;

const isTable = (value: unknown, method: 'get' | 'add'): boolean =>
  typeof value === 'object' && value !== null && typeof (value as { size?: unknown }).size === 'number'
  && typeof (value as Record<string, unknown>)[method] === 'function' && typeof (value as { forEach?: unknown }).forEach === 'function';

function tablesOf(session: Http2Session): StreamTables | undefined {
  const key = stateKey ?? Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state');
  if (key === undefined) return undefined;
  const state = (session as unknown as Record<symbol, Partial<StreamTables> | undefined>)[key];
  if (state === undefined || !isTable(state.streams, 'get') || !isTable(state.pendingStreams, 'add')) return undefined;
  stateKey = key;
  return state as StreamTables;
}

/** The session's open streams (Node's own table, read, not copied); undefined when Node's state has another shape. */
export function openStreamsOf(session: Http2Session): Iterable<unknown> | undefined {
  return tablesOf(session)?.streams.values();
}

/** A copy of `table` of its own class (Node's SafeMap, SafeSet). */
const copyOf = <T extends Map<unknown, unknown> | Set<unknown>>(table: T): T =>
  new (table.constructor as new (entries: T) => T)(table);

/** Replaces the session's stream tables with copies (made in the young generation); false when Node's state has another shape. */
export function renewStreamTables(session: Http2Session): boolean {
  const tables = tablesOf(session);
  if (tables === undefined) return false;
  tables.streams = copyOf(tables.streams);
  tables.pendingStreams = copyOf(tables.pendingStreams);
  return true;
}

export interface StreamTableRenewal {
  /** A stream opened on `session`: its tables are renewed at the next tick. */
  opened(session: Http2Session): void;
  stop(): void;
}

/**
 * Every `periodMs`, renews the tables of the sessions that opened a stream since the last time
 * (`renew`: renewStreamTables unless told). The clock runs only while streams open: a tick that
 * finds nothing to do arms no next one.
 */
export function renewBusySessions(options: { periodMs?: number; timers?: Timers; renew?: (session: Http2Session) => void } = {}): StreamTableRenewal {
  const periodMs = options.periodMs ?? 1000;
  const timers = options.timers ?? realTimers;
  const renew = options.renew ?? renewStreamTables;
  let busy = new Set<Http2Session>();
  let cancel: (() => void) | null = null;
  let stopped = false;
  const tick = () => {
    cancel = null;
    if (busy.size === 0) return;
    const due = busy;
    busy = new Set();
    for (const session of due) if (!session.destroyed) renew(session);
    cancel = timers.setTimeout(tick, periodMs);
  };
  return {
    opened(session) {
      busy.add(session);
      if (cancel === null && !stopped) cancel = timers.setTimeout(tick, periodMs);
    },
    stop() {
      stopped = true;
      cancel?.();
      cancel = null;
      busy.clear();
    },
  };
}
