import type { Worker } from 'node:cluster';

/**
 * What the workers of a node share through their cluster primary (the node tier of the cache, the
 * rate limits): requests from a worker to a service the primary runs, their answers, and notices
 * the primary sends a worker, over the cluster's IPC channel (advanced serialization: bytes travel
 * as bytes). What one side sends in one turn of its event loop goes as one message, in order:
 * under load one write and one read on each side for several operations, where each was a system
 * call of its own (a third of a miss's CPU before it was batched). The admin API's requests to the
 * workers (ipc.ts) are a separate, rare, conversation.
 */

/** A request; id 0: a write nobody waits for (the channel keeps the order, so later reads see it). */
interface Request { readonly outpost: 'req'; readonly id: number; readonly service: string; readonly op: string; readonly args: readonly unknown[] }
interface Answer { readonly outpost: 'ans'; readonly id: number; readonly ok: boolean; readonly value?: unknown; readonly error?: string }
interface Notice { readonly outpost: 'notice'; readonly service: string; readonly value: unknown }
type Message = Request | Answer | Notice;
/** The messages one side sent in one turn of its event loop, in order. */
interface Batch { readonly outpost: 'batch'; readonly items: readonly Message[] }

const isKind = <T extends { outpost: string }>(message: unknown, kind: T['outpost']): message is T =>
  message !== null && typeof message === 'object' && (message as { outpost?: unknown }).outpost === kind;

/** How a channel end sends: `written` runs once the message is handed to the system (or failed). */
type SendFunction = (message: Message | Batch, written: (error?: Error | null) => void) => unknown;

/** Bytes written and not yet taken by the system past which a channel counts as backed up. */
const BACKED_UP_BYTES = 32 * 1024 * 1024;

/** What a message costs to carry, roughly: its bytes (bodies) and a little for the rest. */
function weightOf(message: Message): number {
  let bytes = 256;
  if (message.outpost === 'req') {
    for (const arg of message.args) {
      if (arg instanceof Uint8Array) bytes += arg.byteLength;
      else if (arg !== null && typeof arg === 'object') {
        for (const value of Object.values(arg)) if (value instanceof Uint8Array) bytes += value.byteLength;
      }
    }
  }
  return bytes;
}

/**
 * A sender that gathers what is sent in one turn of the event loop into one message. A channel
 * that is gone drops the batch: answers are then waited for until their timeout. `backedUp`: more
 * than BACKED_UP_BYTES written and not yet taken by the system (the other side reads more slowly
 * than this one writes).
 */
function batching(send: SendFunction, backedUpBytes = BACKED_UP_BYTES): { send(message: Message): void; readonly backedUp: boolean } {
  let queue: Message[] = [];
  let unwritten = 0;
  const flush = () => {
    const items = queue;
    queue = [];
    let weight = 0;
    for (const item of items) weight += weightOf(item);
    unwritten += weight;
    let written = false;
    const done = () => { if (!written) { written = true; unwritten -= weight; } };
    try {
      send(items.length === 1 ? items[0]! : { outpost: 'batch', items }, done);
    } catch {
      done(); // the channel closed (the process is ending)
    }
  };
  return {
    send(message) { if (queue.push(message) === 1) setImmediate(flush); },
    get backedUp() { return unwritten > backedUpBytes; },
  };
}

/** Each message of `message`, a batch or a single one. */
function eachOf(message: unknown, handle: (item: unknown) => void): void {
  if (isKind<Batch>(message, 'batch') && Array.isArray(message.items)) for (const item of message.items) handle(item);
  else handle(message);
}

/** A worker as the primary sees it: a cluster Worker, or any IPC end that looks like one (tests). */
export type Peer = Pick<Worker, 'send' | 'on' | 'once' | 'isConnected'>;

/** A service the primary runs for its workers. */
export interface Service {
  /** Answers one request of `from` (a throw or a rejection is the error the worker gets). */
  handle(from: Peer, op: string, args: readonly unknown[], channel: PrimaryChannel): unknown;
  /** `peer` went away. */
  detach?(peer: Peer): void;
}

export interface PrimaryChannel {
  /** Starts answering this worker's requests. */
  attach(worker: Peer): void;
  /** Sends a worker a notice for `service` (with the batch of its turn). */
  notify(peer: Peer, service: string, value: unknown): void;
  /** The workers attached. */
  peers(): Iterable<Peer>;
}

/** The primary's end: dispatches each request to its service by name. */
export function createPrimaryChannel(services: Readonly<Record<string, Service>>, onError: (error: unknown) => void): PrimaryChannel {
  const senders = new Map<Peer, (message: Message) => void>();
  const channel: PrimaryChannel = {
    attach(worker) {
      const { send: sendTo } = batching((message, written) => {
        if (worker.isConnected()) worker.send(message, undefined, undefined, written);
        else written();
      });
      senders.set(worker, sendTo);
      worker.once('exit', () => {
        senders.delete(worker);
        for (const service of Object.values(services)) service.detach?.(worker);
      });
      const answer = (message: unknown) => {
        if (!isKind<Request>(message, 'req')) return;
        const service = services[message.service];
        const done = new Promise((resolve) => {
          if (service === undefined) throw new Error(`no service ${String(message.service)}`);
          resolve(service.handle(worker, String(message.op), Array.isArray(message.args) ? message.args : [], channel));
        });
        if (message.id === 0) { done.catch(onError); return; }
        done.then(
          (value) => sendTo({ outpost: 'ans', id: message.id, ok: true, value }),
          (error: unknown) => sendTo({ outpost: 'ans', id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
        );
      };
      worker.on('message', (message: unknown) => eachOf(message, answer));
    },
    notify(peer, service, value) { senders.get(peer)?.({ outpost: 'notice', service, value }); },
    peers: () => senders.keys(),
  };
  return channel;
}

export interface WorkerChannel {
  /** Asks the primary's `service`; rejects when it does not answer within the timeout. */
  call<T>(service: string, op: string, ...args: unknown[]): Promise<T>;
  /** `call` with a timeout of its own (a request waiting on the answer has less time to lose). */
  callWithin<T>(timeoutMs: number, service: string, op: string, ...args: unknown[]): Promise<T>;
  /** A write that needs no answer: one message instead of two. */
  tell(service: string, op: string, ...args: unknown[]): void;
  /**
   * The primary reads more slowly than this worker writes (the channel's buffer is over Node's
   * threshold): writes that may be skipped should be, since nothing else bounds what tells queue.
   */
  readonly backedUp: boolean;
  /** Receives the primary's notices for `service`; returns the function that stops it. */
  onNotice(service: string, handler: (value: unknown) => void): () => void;
  close(): void;
}

export interface WorkerChannelOptions {
  /** How long a call waits for its answer (default 2 s). */
  readonly timeoutMs?: number;
  /** The channel's two ends; by default this process's IPC channel (tests hand in their own). */
  readonly send?: (message: unknown, written: (error?: Error | null) => void) => unknown;
  /** Bytes written and not yet taken by the system past which the channel is backed up (default 32 MiB). */
  readonly backedUpBytes?: number;
  readonly messages?: NodeJS.EventEmitter;
}

/** A worker's end. */
export function createWorkerChannel(options: WorkerChannelOptions = {}): WorkerChannel {
  const out = batching(options.send ?? ((message, written) => {
    if (process.send === undefined) written();
    else process.send(message, undefined, undefined, written);
  }), options.backedUpBytes);
  const send = out.send;
  const messages: NodeJS.EventEmitter = options.messages ?? process;
  const timeoutMs = options.timeoutMs ?? 2000;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; what: string; within: number; deadline: number }>();
  const noticed = new Map<string, Set<(value: unknown) => void>>();
  let nextId = 1;
  // One timer for every call waiting (a call's own would cost a set and a clear per operation),
  // running only while some call waits.
  let expiry: NodeJS.Timeout | undefined;
  const expire = () => {
    const now = performance.now();
    for (const [id, waiting] of pending) {
      if (waiting.deadline > now) continue;
      pending.delete(id);
      waiting.reject(new Error(`the primary did not answer ${waiting.what} within ${waiting.within} ms`));
    }
    if (pending.size === 0) { clearInterval(expiry); expiry = undefined; }
  };

  const onItem = (message: unknown) => {
    if (isKind<Answer>(message, 'ans')) {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return;
      pending.delete(message.id);
      if (message.ok) waiting.resolve(message.value);
      else waiting.reject(new Error(message.error ?? `the primary refused ${waiting.what}`));
    } else if (isKind<Notice>(message, 'notice')) {
      for (const handler of noticed.get(message.service) ?? []) handler(message.value);
    }
  };
  const onMessage = (message: unknown) => eachOf(message, onItem);
  messages.on('message', onMessage);

  const request = <T>(within: number, service: string, op: string, args: unknown[]) => new Promise<T>((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve: resolve as (value: unknown) => void, reject, what: `${service} ${op}`, within, deadline: performance.now() + within });
    if (expiry === undefined) (expiry = setInterval(expire, 10)).unref();
    send({ outpost: 'req', id, service, op, args });
  });
  return {
    call: (service, op, ...args) => request(timeoutMs, service, op, args),
    callWithin: (within, service, op, ...args) => request(within, service, op, args),
    tell(service, op, ...args) { send({ outpost: 'req', id: 0, service, op, args }); },
    get backedUp() { return out.backedUp; },
    onNotice(service, handler) {
      let handlers = noticed.get(service);
      if (handlers === undefined) noticed.set(service, handlers = new Set());
      handlers.add(handler);
      return () => { handlers.delete(handler); };
    },
    close() {
      messages.off('message', onMessage);
      clearInterval(expiry);
      expiry = undefined;
      for (const [id, waiting] of pending) {
        waiting.reject(new Error('the channel to the primary closed'));
        pending.delete(id);
      }
    },
  };
}

/** The environment variable that tells a worker how many workers share its primary's services (set at fork). */
export const NODE_WORKERS = 'OUTPOST_NODE_WORKERS';

/** In a cluster worker whose primary runs the shared services: how many workers share them; else 0. */
export function sharedWorkers(): number {
  const count = Number(process.env[NODE_WORKERS]);
  return process.send !== undefined && Number.isInteger(count) && count > 1 ? count : 0;
}

let ownChannel: WorkerChannel | undefined;
/** This worker's channel to its primary, made on first use and kept for the process. */
export function primaryChannel(): WorkerChannel {
  return ownChannel ??= createWorkerChannel();
}
