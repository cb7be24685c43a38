// A cluster primary's node tier alone, in a child process: the parent is its one worker, over a
// real IPC channel (fork with advanced serialization). test/cache/store-contract.test.ts runs the
// store contract through it.
import { createNodeTier } from '../../src/cache/store/node-tier.ts';
import { createPrimaryChannel } from '../../src/runtime/primary-channel.ts';

const channel = createPrimaryChannel({ cache: createNodeTier() }, (error) => console.error(error));
channel.attach({
  send: (message: unknown) => process.send!(message as never),
  on: (event: string, listener: (...args: any[]) => void) => process.on(event, listener),
  once: (_event: string, listener: (...args: any[]) => void) => process.once('disconnect', listener),
  isConnected: () => process.connected,
} as never);
process.once('disconnect', () => process.exit(0));
