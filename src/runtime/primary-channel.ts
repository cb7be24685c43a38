import type { Worker } from 'node:cluster';

/**
 * What the workers of a node share through their cluster primary (the cache's directory, the
 * turns at fetching a URI, the rate limits): requests from a worker to a service the primary runs
 * and from the primary to a worker (a response another worker asked for), their answers, writes
 * that want no answer, and notices the primary sends a worker, over the cluster's IPC channel
 * (advanced serialization: bytes travel as bytes). What one side sends in one turn of its event
 * loop goes as one message, in order: under load one write and one read on each side for several
 * operations, where each was a system call and a wake-up of its own (a 10 KB miss with 2 workers
 * went from 400+ to about 300 µs of CPU when batched). The admin API's requests to the workers
 * (ipc.ts) are a separate, rare, conversation.
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

/** How a channel end sends. */
type SendFunction = (message: Message | Batch) => unknown;

/**
 * A sender that gathers what is sent in one turn of the event loop into one message. A channel
 * that is gone drops the batch: answers are then waited for until their timeout.
 */
function batching(send: SendFunction): (message: Message) => void {
  let queue: Message[] = [];
  const flush = () => {
    const items = queue;
    queue = [];
    try {
      send(items.length === 1 ? items[0]! : { outpost: 'batch', items });
    } catch {
      // the channel closed (the process is ending)
    }
  };
  return (message) => { if (queue.push(message) === 1) setImmediate(flush); };
}

/** Each message of `message`, a batch or a single one. */
function eachOf(message: unknown, handle: (item: unknown) => void): void {
  if (isKind<Batch>(message, 'batch') && Array.isArray(message.items)) for (const item of message.items) handle(item);
  else handle(message);
}

/**
 * The calls one end waits on, each with its deadline; one timer for all of them (a call's own
 * would cost a set and a clear per operation), running only while some call waits.
 */
function pendingCalls(other: string) {
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; what: string; within: number; deadline: number }>();
  let nextId = 1;
  let expiry: NodeJS.Timeout | undefined;
  const expire = () => {
    const now = performance.now();
    for (const [id, waiting] of pending) {
      if (waiting.deadline > now) continue;
      pending.delete(id);
      waiting.reject(new Error(`${other} did not answer ${waiting.what} within ${waiting.within} ms`));
    }
    if (pending.size === 0) { clearInterval(expiry); expiry = undefined; }
  };
  return {
    /** A call: `send` gets its id. */
    call<T>(within: number, what: string, send: (id: number) => void): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject, what, within, deadline: performance.now() + within });
        if (expiry === undefined) (expiry = setInterval(expire, 10)).unref();
        send(id);
      });
    },
    settle(answer: Answer): void {
      const waiting = pending.get(answer.id);
      if (waiting === undefined) return;
      pending.delete(answer.id);
      if (answer.ok) waiting.resolve(answer.value);
      else waiting.reject(new Error(answer.error ?? `${other} refused ${waiting.what}`));
    },
    close(why: string): void {
      clearInterval(expiry);
      expiry = undefined;
      for (const [id, waiting] of pending) {
        waiting.reject(new Error(why));
        pending.delete(id);
      }
    },
  };
}

/** Answers a request with `handle`'s value (or its error); id 0 wants no answer. */
function answering(request: Request, handle: () => unknown, send: (message: Message) => void, onError: (error: unknown) => void): void {
  const done = new Promise((resolve) => resolve(handle()));
  if (request.id === 0) { done.catch(onError); return; }
  done.then(
    (value) => send({ outpost: 'ans', id: request.id, ok: true, value }),
    (error: unknown) => send({ outpost: 'ans', id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
  );
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
  /** Asks a worker's `service` (what it serves: WorkerChannel.serve); rejects after `within` ms. */
  ask<T>(peer: Peer, within: number, service: string, op: string, ...args: unknown[]): Promise<T>;
  /** The workers attached. */
  peers(): Iterable<Peer>;
}

/** The primary's end: dispatches each request to its service by name. */
export function createPrimaryChannel(services: Readonly<Record<string, Service>>, onError: (error: unknown) => void): PrimaryChannel {
  const senders = new Map<Peer, (message: Message) => void>();
  const asked = pendingCalls('a worker');
  const channel: PrimaryChannel = {
    attach(worker) {
      const sendTo = batching((message) => worker.isConnected() && worker.send(message));
      senders.set(worker, sendTo);
      worker.once('exit', () => {
        senders.delete(worker);
        for (const service of Object.values(services)) service.detach?.(worker);
      });
      const onItem = (message: unknown) => {
        if (isKind<Answer>(message, 'ans')) { asked.settle(message); return; }
        if (!isKind<Request>(message, 'req')) return;
        const service = services[message.service];
        answering(message, () => {
          if (service === undefined) throw new Error(`no service ${String(message.service)}`);
          return service.handle(worker, String(message.op), Array.isArray(message.args) ? message.args : [], channel);
        }, sendTo, onError);
      };
      worker.on('message', (message: unknown) => eachOf(message, onItem));
    },
    notify(peer, service, value) { senders.get(peer)?.({ outpost: 'notice', service, value }); },
    ask(peer, within, service, op, ...args) {
      const sendTo = senders.get(peer);
      if (sendTo === undefined) return Promise.reject(new Error('that worker is gone'));
      return asked.call(within, `${service} ${op}`, (id) => sendTo({ outpost: 'req', id, service, op, args }));
    },
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
  /** Receives the primary's notices for `service`; returns the function that stops it. */
  onNotice(service: string, handler: (value: unknown) => void): () => void;
  /** Answers the primary's requests to `service` (PrimaryChannel.ask); returns the function that stops it. */
  serve(service: string, handler: (op: string, args: readonly unknown[]) => unknown): () => void;
  close(): void;
}

export interface WorkerChannelOptions {
  /** How long a call waits for its answer (default 2 s). */
  readonly timeoutMs?: number;
  /** The channel's two ends; by default this process's IPC channel (tests hand in their own). */
  readonly send?: (message: unknown) => unknown;
  readonly messages?: NodeJS.EventEmitter;
}

/** A worker's end. */
export function createWorkerChannel(options: WorkerChannelOptions = {}): WorkerChannel {
  const send = batching(options.send ?? ((message) => process.send?.(message)));
  const messages: NodeJS.EventEmitter = options.messages ?? process;
  const timeoutMs = options.timeoutMs ?? 2000;
  const calls = pendingCalls('the primary');
  const noticed = new Map<string, Set<(value: unknown) => void>>();
  const served = new Map<string, (op: string, args: readonly unknown[]) => unknown>();

  const onItem = (message: unknown) => {
    if (isKind<Answer>(message, 'ans')) calls.settle(message);
    else if (isKind<Notice>(message, 'notice')) {
      for (const handler of noticed.get(message.service) ?? []) handler(message.value);
    } else if (isKind<Request>(message, 'req')) {
      const handler = served.get(message.service);
      answering(message, () => {
        if (handler === undefined) throw new Error(`this worker serves no ${String(message.service)}`);
        return handler(String(message.op), Array.isArray(message.args) ? message.args : []);
      }, send, () => {});
    }
  };
  const onMessage = (message: unknown) => eachOf(message, onItem);
  messages.on('message', onMessage);

  const request = <T>(within: number, service: string, op: string, args: unknown[]) =>
    calls.call<T>(within, `${service} ${op}`, (id) => send({ outpost: 'req', id, service, op, args }));
  return {
    call: (service, op, ...args) => request(timeoutMs, service, op, args),
    callWithin: (within, service, op, ...args) => request(within, service, op, args),
    tell(service, op, ...args) { send({ outpost: 'req', id: 0, service, op, args }); },
    onNotice(service, handler) {
      let handlers = noticed.get(service);
      if (handlers === undefined) noticed.set(service, handlers = new Set());
      handlers.add(handler);
      return () => { handlers.delete(handler); };
    },
    serve(service, handler) {
      served.set(service, handler);
      return () => { if (served.get(service) === handler) served.delete(service); };
    },
    close() {
      messages.off('message', onMessage);
      calls.close('the channel to the primary closed');
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
