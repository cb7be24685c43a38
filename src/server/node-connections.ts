import { onceASecond } from '../timers.ts';
import { primaryChannel, type Peer, type Service, type WorkerChannel } from '../runtime/primary-channel.ts';

/**
 * `limits.connectionsPerClient` for the node, not per worker. With `workers: N` the cluster
 * primary counts each client's open connections (nginx's limit_conn counts in one shared zone for
 * all its workers): a connection the worker would admit waits for the primary's word before its
 * TLS handshake starts, and its close is told to the primary. Where each worker counted alone, a
 * client got N times the limit, its connections spread round-robin over the workers.
 *
 * Each admission carries a ticket (a number of the worker's own), so a release can never free
 * another connection's place: a worker whose question timed out releases the ticket anyway, and
 * the primary forgets it if it did admit it after all. A worker that exits takes its places with it.
 */

const SERVICE = 'connections';

/** A worker's admission: resolves with the function that gives the place back, or null (refused). */
export type NodeAdmission = (address: string, maxPerClient: number) => Promise<(() => void) | null>;

/** The primary's side: open connections per client address, and which worker holds each. */
export function createNodeConnections(): Service & { openFrom(address: string): number } {
  const open = new Map<string, number>();
  const held = new Map<Peer, Map<number, string>>(); // worker → its tickets → address
  const free = (address: string) => {
    const left = (open.get(address) ?? 1) - 1;
    if (left <= 0) open.delete(address);
    else open.set(address, left);
  };
  return {
    handle(from, op, args) {
      if (op === 'admit') {
        const [ticket, address, max] = args;
        if (!Number.isSafeInteger(ticket) || typeof address !== 'string' || !Number.isSafeInteger(max)) throw new Error('connections: a malformed request');
        const count = open.get(address) ?? 0;
        if (count >= (max as number)) return false;
        let tickets = held.get(from);
        if (tickets === undefined) held.set(from, tickets = new Map());
        if (tickets.has(ticket as number)) return true; // asked twice: one place
        tickets.set(ticket as number, address);
        open.set(address, count + 1);
        return true;
      }
      if (op === 'release') {
        const tickets = held.get(from);
        const address = tickets?.get(args[0] as number);
        if (address === undefined) return undefined; // refused, or never seen: nothing held
        tickets!.delete(args[0] as number);
        free(address);
        return undefined;
      }
      throw new Error(`connections: unknown operation ${op}`);
    },
    detach(peer) {
      for (const address of held.get(peer)?.values() ?? []) free(address);
      held.delete(peer);
    },
    openFrom: (address) => open.get(address) ?? 0,
  };
}

export interface NodeAdmissionOptions {
  readonly channel?: WorkerChannel;
  /** A slower answer counts as a failure: the worker's own count decides (default 250 ms). */
  readonly timeoutMs?: number;
  /** Told of a failure, once a second at most. */
  readonly onError?: (error: unknown) => void;
}

/** A worker's admission that asks the primary. */
export function nodeAdmission(options: NodeAdmissionOptions = {}): NodeAdmission & { readonly fallbacks: number } {
  const channel = options.channel ?? primaryChannel();
  const timeoutMs = options.timeoutMs ?? 250;
  let nextTicket = 1;
  let fallbacks = 0;
  const report = onceASecond(options.onError ?? (() => {}));
  const admit = async (address: string, maxPerClient: number) => {
    const ticket = nextTicket++;
    const release = () => channel.tell(SERVICE, 'release', ticket);
    try {
      return await channel.callWithin<boolean>(timeoutMs, SERVICE, 'admit', ticket, address, maxPerClient) ? release : null;
    } catch (error) {
      // The primary may still admit it late: the release that follows the question frees that place.
      release();
      fallbacks++;
      report(error);
      return () => {}; // under the limit by this worker's own count, which the caller checked
    }
  };
  return Object.defineProperty(admit, 'fallbacks', { get: () => fallbacks }) as NodeAdmission & { readonly fallbacks: number };
}
