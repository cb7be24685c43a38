import type { Handler } from '../pipeline/compose.ts';

/**
 * What runs each request: the chain of the configuration current when it arrived, and who to tell
 * once that chain's reply (or failure) is in — runtime/instance.ts counts each configuration's
 * open requests, to close a replaced one after its last. Told in the one reaction the listener
 * attaches to the chain anyway: a reaction of its own per request cost a promise, a reaction
 * record and a microtask more (a promise level: ~4-5k instructions of ~366k per pass-through
 * response over HTTP/2, callgrind).
 */
export interface Dispatch {
  begin(): Served;
}

export interface Served {
  readonly handler: Handler;
  /** Called once per begin(), when the reply is made or the chain failed. */
  settled(): void;
}

/** A fixed chain (tests, tools): nothing to count. */
export const fixedChain = (handler: Handler): Dispatch => {
  const served: Served = { handler, settled: () => {} };
  return { begin: () => served };
};
