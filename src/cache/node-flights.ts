import { primaryChannel, type Peer, type Service, type WorkerChannel } from '../runtime/primary-channel.ts';
import type { Leader } from './flights.ts';
import { createHitForMiss, HIT_FOR_MISS } from './hit-for-miss.ts';

/**
 * Collapsed forwarding across the node's workers. Within a worker one request per URI goes to the
 * origin (flights.ts); with several workers sharing the node tier, the leader of a miss also asks
 * the primary for the URI's turn: the first worker to ask fetches, and a worker that asks while
 * it does waits until the response is stored (then reads it from the tier), turned out not
 * storable (then goes to the origin on its own), or failed (then fetches itself), as nginx's
 * proxy_cache_lock holds its workers. A hundred clients asking at once for a URI nobody has
 * stored cost the origin one request, not one per worker. A turn held longer than LOCK_TIMEOUT_MS
 * (a slow origin, a large body) is not waited for any longer: the worker fetches itself, as nginx
 * does after proxy_cache_lock_timeout (5 s).
 *
 * A URI whose fetch (its own, or one of its variants') turned out uncacheable is remembered by
 * the primary too (hit-for-miss for the node, kept per URI as each worker keeps it): a worker
 * that asks for its turn afterwards is told so at once and goes to the origin without queueing
 * its requests behind a fetch of its own first. A purge or an invalidation in any worker makes
 * the primary forget it, as it makes that worker forget, and a new engine (a reload that changed
 * the cache section) makes it forget every URI.
 */

export const LOCK_TIMEOUT_MS = 5000;
/**
 * How long after a turn ended with the response stored a new ask is told to look rather than to
 * fetch. A worker learns that the others' copies changed by a message of the primary's: until it
 * has read it, it may still find its old copy (stale) or none, and fetch or validate again what
 * was just stored. The primary sends the 'look' after that message, so the asker reads the new one.
 */
export const JUST_LANDED_MS = 100;
const SERVICE = 'flights';

/**
 * What a worker does when its turn comes: `lead` fetch (and release the turn with its outcome),
 * `look` the response was stored: read it, `pass` not storable: go to the origin alone,
 * `uncacheable` the same, and the URI is uncacheable for a while (hit-for-miss): the worker that
 * fetched it learnt so, and so does this one, whose next requests for it go straight to the origin;
 * `bypass` the same, known by the node before this ask (nothing was waited for).
 */
export type Turn = 'lead' | 'look' | 'pass' | 'uncacheable' | 'bypass';
const OUTCOMES: ReadonlySet<unknown> = new Set<Turn>(['look', 'pass', 'uncacheable']);

/** The primary's side: who holds each URI's turn, and who waits for it. */
export function createNodeFlights(options: { now?: () => number } = {}): Service & { readonly size: number } {
  const now = options.now ?? Date.now;
  const turns = new Map<string, { holder: Peer; since: number; waiting: Array<(turn: Turn) => void> }>();
  /** When each URI's last turn ended with its response stored; oldest first, none older than JUST_LANDED_MS kept. */
  const landed = new Map<string, number>();
  /** URIs a worker's fetch found uncacheable (the URI a turn released 'uncacheable' was for: its own, or one of its variants'). */
  const uncacheable = createHitForMiss({ ...HIT_FOR_MISS, now });
  const end = (key: string, outcome: Turn, uri = key) => {
    const held = turns.get(key);
    if (held === undefined) return;
    turns.delete(key);
    if (outcome === 'uncacheable') uncacheable.remember(uri);
    if (outcome === 'look') {
      uncacheable.forget(uri);
      const at = now();
      landed.delete(key);
      landed.set(key, at);
      for (const [old, when] of landed) {
        if (at - when <= JUST_LANDED_MS) break;
        landed.delete(old);
      }
    }
    for (const resolve of held.waiting) resolve(outcome);
  };
  const justLanded = (key: string) => {
    const at = landed.get(key);
    return at !== undefined && now() - at <= JUST_LANDED_MS;
  };
  return {
    handle(from, op, args) {
      const key = String(args[0]);
      if (op === 'turn') {
        // The URI (args[2], when the turn is for one of its variants) known uncacheable, as each worker keeps it.
        if (uncacheable.has(args[2] === undefined ? key : String(args[2]))) return 'bypass' satisfies Turn;
        const held = turns.get(key);
        // A worker that looked and found nothing (dropped since: a POST, a purge) asks for a turn
        // that is one: without it, it would fetch holding none, and the next worker would too.
        const looked = args[1] === true;
        if (held === undefined && !looked && justLanded(key)) return 'look' satisfies Turn;
        // Nobody holds it, or its holder has had it for longer than anyone waits: yours.
        if (held === undefined || now() - held.since > LOCK_TIMEOUT_MS || held.holder === from) {
          if (held !== undefined) end(key, 'lead');
          turns.set(key, { holder: from, since: now(), waiting: [] });
          return 'lead' satisfies Turn;
        }
        return new Promise<Turn>((resolve) => held.waiting.push(resolve));
      }
      if (op === 'release') {
        const outcome = OUTCOMES.has(args[1]) ? args[1] as Turn : 'lead';
        if (turns.get(key)?.holder === from) end(key, outcome, args[2] === undefined ? key : String(args[2]));
        return undefined;
      }
      if (op === 'forget') {
        if (args.length === 0) uncacheable.clear();
        else uncacheable.forget(key);
        return undefined;
      }
      throw new Error(`node flights: unknown operation ${op}`);
    },
    detach(peer) {
      // A worker that went away holding turns: whoever waits fetches.
      for (const [key, held] of [...turns]) if (held.holder === peer) end(key, 'lead');
    },
    get size() { return turns.size; },
  };
}

export interface NodeFlights {
  /**
   * Waits for this worker's turn to fetch `key` (at most LOCK_TIMEOUT_MS: then `lead`); a turn
   * asked for ahead of the lookup is taken up rather than asked again. `looked`: this worker was
   * told to look and found nothing: a turn to fetch or to wait for, never `look` at once again.
   */
  turn(key: string, looked?: boolean, uri?: string): Promise<Turn>;
  /**
   * Asks for the turn ahead, with the lookup that needs a round trip anyway (the two go as one
   * message): a miss then waits for no second round trip. Undefined when this worker already has
   * one asked for (one per key at a time, or the primary would see this worker ask twice).
   */
  ahead(key: string): Promise<Turn> | undefined;
  /** A turn asked for ahead that no miss took up (the lookup found the response): given back. */
  giveBack(key: string, ahead: Promise<Turn>): void;
  /**
   * Ends this worker's turn: what the workers waiting for it should do. `uri`: the URI when `key`
   * is one of its variants' (an 'uncacheable' outcome is remembered for the URI, as workers do).
   */
  release(key: string, outcome: Turn, uri?: string): void;
  /** The URI is no longer known uncacheable (purged, invalidated); without a key, none is. */
  forget(key?: string): void;
}

/** A worker's side, over its channel to the primary (tests hand in another). */
export function createNodeFlightsClient(channel: WorkerChannel = primaryChannel()): NodeFlights {
  const ask = (key: string, looked = false, uri = key) => channel.callWithin<Turn>(LOCK_TIMEOUT_MS, SERVICE, 'turn', key, looked, uri).catch(() => 'lead' as const);
  const release = (key: string, outcome: Turn, uri = key) => channel.tell(SERVICE, 'release', key, outcome, uri);
  /** Turns asked for ahead and not yet taken up, by key. */
  const asked = new Map<string, Promise<Turn>>();
  return {
    turn(key, looked = false, uri) {
      if (looked) return ask(key, true, uri);
      const early = asked.get(key);
      if (early === undefined) return ask(key, false, uri);
      asked.delete(key);
      return early;
    },
    ahead(key) {
      if (asked.has(key)) return undefined;
      const early = ask(key);
      asked.set(key, early);
      return early;
    },
    giveBack(key, early) {
      if (asked.get(key) !== early) return; // taken up by a miss, which releases it
      asked.delete(key);
      void early.then((turn) => { if (turn === 'lead') release(key, 'lead'); });
    },
    release,
    forget: (key) => (key === undefined ? channel.tell(SERVICE, 'forget') : channel.tell(SERVICE, 'forget', key)),
  };
}

/**
 * Ends this worker's turn at `key` once its flight's outcome is known: stored (look), not storable
 * (pass, uncacheable), or neither (lead). `uri`: the URI `key` is a variant of (NodeFlights.release).
 */
export function releaseTurnWhenLanded(nodeFlights: NodeFlights, key: string, leader: Leader, uri: string): void {
  leader.outcome
    .then((result): Turn | Promise<Turn> => {
      if (result.kind === 'shared') return result.stored.then((found) => (found !== undefined ? 'look' : 'lead'), () => 'lead');
      if (result.kind === 'pass') return result.uncacheable !== undefined ? 'uncacheable' : 'pass';
      return result.kind === 'refreshed' ? 'look' : 'lead';
    })
    .then((outcome) => nodeFlights.release(key, outcome, uri));
}
