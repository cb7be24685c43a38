import { EventEmitter } from 'node:events';
import { deserialize, serialize } from 'node:v8';
import { createPrimaryChannel, createWorkerChannel, type Peer, type PrimaryChannel, type Service, type WorkerChannel } from '../../src/runtime/primary-channel.ts';

/**
 * A cluster primary's channel and `count` workers' channels in this process, linked as the cluster's
 * IPC links them: every message goes through V8's serializer (advanced serialization) and arrives
 * in a later turn. For the services several workers share (a second worker is what a forked
 * child cannot give a test).
 */
export function linkedWorkers(count: number, services: Readonly<Record<string, Service>>): { primary: PrimaryChannel; workers: Array<{ peer: Peer; channel: WorkerChannel; exit(): void }> } {
  const primary = createPrimaryChannel(services, (error) => { throw error; });
  const across = (to: EventEmitter) => (message: unknown) => {
    const copy = deserialize(serialize(message));
    setImmediate(() => to.emit('message', copy));
    return true;
  };
  const workers = Array.from({ length: count }, () => {
    const toWorker = new EventEmitter();
    const toPrimary = new EventEmitter();
    const peer = {
      send: across(toWorker),
      on: (event: string, listener: (...args: any[]) => void) => toPrimary.on(event, listener),
      once: (event: string, listener: (...args: any[]) => void) => toPrimary.once(event, listener),
      isConnected: () => true,
    } as unknown as Peer;
    primary.attach(peer);
    const channel = createWorkerChannel({ send: across(toPrimary), messages: toWorker });
    return { peer, channel, exit: () => { toPrimary.emit('exit'); } };
  });
  return { primary, workers };
}
