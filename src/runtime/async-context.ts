import asyncHooks from 'node:async_hooks';

/**
 * Makes Node settle, before any request, how it carries async context: imported first by main.ts.
 *
 * Node 24 decides that lazily (lib/internal/async_context_frame.js `checkEnabled`): the first time
 * something asks (a timer cleared or fired, undici's on the first origin request), it swaps the
 * prototype of its AsyncContextFrame class from the inactive variant to the active one. Every tick
 * reads that class (`processTicksAndRejections` calls `AsyncContextFrame.exchange`, `nextTick`
 * calls `current`), and code that ran before the swap had recorded the class's first shape: from
 * then on V8's optimized code for those functions made a generic property load (`LoadIC`) at each
 * of those reads, ~14 per HTTP/2 response. Asked here, before anything else runs, the class has one
 * shape to record. Reading the getter loads Node's AsyncLocalStorage module and nothing else;
 * Outpost uses no AsyncLocalStorage.
 *
 * Callgrind, `npm run bench -- --instructions`, two alternating pairs (docs/performance.md, Async
 * context): a Brotli hit over HTTP/2 143.5k / 143.0k instructions per response before, 135.7k /
 * 136.1k after; the small file over HTTP/1.1 88.4k / 89.3k before, 82.2k / 84.8k after;
 * pass-through over HTTP/1.1 ~212k before (its cleanest windows), 200.7k / 204.1k after.
 */
void asyncHooks.AsyncLocalStorage;
