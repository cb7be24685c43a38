import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { idleWatch, type Watched } from '../../src/server/idle-watch.ts';
import { manualTimers } from '../helpers/timers.ts';
import { h2request, h2session, startOutpost } from '../helpers/outpost.ts';
import { LINGER_MS } from '../../src/server/linger.ts';
import { until } from '../helpers/wait.ts';
import { frontStats } from '../../src/server/counters.ts';

/**
 * Idle connections are closed by looking at the bytes they carried (src/server/idle-watch.ts),
 * not by Node's per-read, per-write timers. The clock is moved by hand.
 */

function connection(): Watched & { moved: number; closed: number } {
  const c = { moved: 0, closed: 0, bytes: () => c.moved, close: () => { c.closed++; } };
  return c;
}

test('a connection whose bytes do not move is closed after idleTimeout, not before', () => {
  const timers = manualTimers();
  const watch = idleWatch(60_000, timers);
  const quiet = connection();
  watch.add(quiet);
  timers.advance(59_999);
  assert.equal(quiet.closed, 0);
  timers.advance(15_001); // at most a quarter of idleTimeout late
  assert.equal(quiet.closed, 1);
  assert.equal(watch.size, 0);
  assert.equal(timers.pending, 0, 'nothing watched, no timer left');
});

test('a connection that carries bytes stays; once they stop, it goes', () => {
  const timers = manualTimers();
  const watch = idleWatch(60_000, timers);
  const busy = connection();
  watch.add(busy);
  for (let i = 0; i < 20; i++) {
    busy.moved += 100;
    timers.advance(15_000);
  }
  assert.equal(busy.closed, 0, 'five minutes of traffic');
  timers.advance(75_000);
  assert.equal(busy.closed, 1);
});

test('a connection deleted (it closed) is no longer looked at', () => {
  const timers = manualTimers();
  const watch = idleWatch(60_000, timers);
  const gone = connection();
  const kept = connection();
  watch.add(gone);
  watch.add(kept);
  watch.delete(gone);
  timers.advance(80_000);
  assert.equal(gone.closed, 0);
  assert.equal(kept.closed, 1);
  watch.add(connection());
  watch.stop();
  assert.equal(timers.pending, 0);
});

test('the server closes an idle HTTP/2 session and an idle HTTP/1.1 connection after limits.idleTimeout', { timeout: 20_000 }, async () => {
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { idleTimeout: '60s' }, sites: [{ hosts: ['*'], static: 'public' }] }, { timers });
  try {
    const session = await h2session(outpost.url, { ca: outpost.ca });
    assert.equal((await h2request(session, '/')).status, 200);
    const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port: outpost.httpsPort, ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await once(socket, 'secureConnect');
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await once(socket, 'data');
    const h2closed = once(session, 'close');
    const h1closed = once(socket, 'close');
    let closed = 0;
    void h2closed.then(() => closed++);
    void h1closed.then(() => closed++);

    timers.advance(45_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, 0, 'not idle long enough');
    // The HTTP/2 session keeps carrying requests; the HTTP/1.1 connection says nothing.
    assert.equal((await h2request(session, '/')).status, 200);
    timers.advance(30_000);
    await h1closed;
    assert.equal(session.closed || session.destroyed, false, 'the session that carried a request stays');
    timers.advance(75_000);
    await h2closed;
  } finally {
    await outpost.close();
  }
});

test('HTTP/2: a client that never closes its side after the session ends is cut off LINGER_MS later, and a shutdown does not wait for it', { timeout: 20_000 }, async () => {
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { idleTimeout: '60s', shutdownTimeout: '300ms' }, sites: [{ hosts: ['*'], static: 'public' }] }, { timers });
  const accepted: TLSSocket[] = [];
  outpost.servers.https.on('secureConnection', (socket: TLSSocket) => accepted.push(socket));
  try {
    // A response left unread, and a graceful close: the client's session waits for that stream,
    // so its socket stays open after the server's session has gone.
    const halfOpen = async () => {
      const session = await h2session(outpost.url, { ca: outpost.ca });
      const stream = session.request({ ':path': '/' });
      await once(stream, 'response');
      session.close();
      return { session, server: accepted.at(-1)! };
    };
    const idle = await halfOpen();
    timers.advance(75_000); // the idle watch closes the server's session: GOAWAY, and our side ends
    await until(() => idle.server.writableFinished);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(idle.server.destroyed, false, 'the client still has its time');
    assert.equal(idle.session.destroyed, false);
    timers.advance(LINGER_MS);
    await until(() => idle.server.destroyed);
    idle.session.destroy();

    // At shutdown: close() returns at its deadline though the client keeps its side open.
    const held = await halfOpen();
    const stopped = Date.now();
    await outpost.close();
    assert.ok(Date.now() - stopped < 5000, 'close() returned');
    assert.ok(held.server.destroyed);
    held.session.destroy();
  } finally {
    await outpost.close();
  }
});

test('an HTTP/2 connection that sends no preface is closed after limits.headersTimeout, not idleTimeout (RFC 9113 §3.4); one that sent it stays', { timeout: 20_000 }, async () => {
  const timers = manualTimers();
  const outpost = await startOutpost({ limits: { headersTimeout: '10s', idleTimeout: '120s' }, sites: [{ hosts: ['*'], static: 'public' }] }, { timers });
  try {
    // TLS done and h2 chosen, then nothing: no magic, no SETTINGS.
    const silent: TLSSocket = tlsConnect({ host: '127.0.0.1', port: outpost.httpsPort, ca: outpost.ca, servername: 'localhost', ALPNProtocols: ['h2'] });
    await once(silent, 'secureConnect');
    assert.equal(silent.alpnProtocol, 'h2');
    silent.on('error', () => {});
    silent.resume();
    let silentClosed = false;
    silent.once('close', () => { silentClosed = true; });
    const session = await h2session(outpost.url, { ca: outpost.ca });
    assert.equal((await h2request(session, '/')).status, 200);
    const before = frontStats().silentConnections;

    timers.advance(9_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(silentClosed, false, 'within headersTimeout');
    timers.advance(4_000); // the watch looks every quarter of headersTimeout
    await until(() => silentClosed);
    assert.equal(frontStats().silentConnections, before + 1);
    assert.equal(session.closed || session.destroyed, false, 'the session that sent its preface stays');
    assert.equal((await h2request(session, '/')).status, 200);
    session.close();
  } finally {
    await outpost.close();
  }
});
