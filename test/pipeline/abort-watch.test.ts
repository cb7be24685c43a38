import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AbortSource, unwatchAbort, watchAbort } from '../../src/pipeline/abort-watch.ts';

/** Watching a client's abort (src/pipeline/abort-watch.ts): the server's signals keep their watchers themselves. */

const counter = () => {
  const watcher = { calls: 0, aborted: false, signal: null as AbortSignal | null, handleEvent() { this.calls++; this.aborted = this.signal?.aborted ?? false; } };
  return watcher;
};

test('an AbortSource tells each watcher once, after its signal has aborted; one unwatched is not told', () => {
  const client = new AbortSource();
  const a = counter();
  const b = counter();
  const c = counter();
  a.signal = b.signal = c.signal = client.signal;
  watchAbort(client.signal, a);
  watchAbort(client.signal, b);
  watchAbort(client.signal, c);
  unwatchAbort(client.signal, b);
  let listened = 0;
  client.signal.addEventListener('abort', () => listened++);
  client.abort();
  client.abort();
  assert.deepEqual([a.calls, b.calls, c.calls, listened], [1, 0, 1, 1]);
  assert.ok(a.aborted && c.aborted, 'watchers see an aborted signal');
});

test('any other signal is watched through an abort listener', () => {
  const controller = new AbortController();
  const a = counter();
  const b = counter();
  watchAbort(controller.signal, a);
  watchAbort(controller.signal, b);
  unwatchAbort(controller.signal, b);
  controller.abort();
  controller.abort();
  assert.deepEqual([a.calls, b.calls], [1, 0]);
});
