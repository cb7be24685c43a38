import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2, { type Http2Session, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { EventEmitter } from 'node:events';
import { renewBusySessions, renewStreamTables } from '../../src/server/h2-stream-tables.ts';
import { manualTimers } from '../helpers/timers.ts';
import { h2request, h2session, startOutpost } from '../helpers/outpost.ts';

/** Node's table of a session's open streams (the private state renewStreamTables replaces). */
function streamsOf(session: Http2Session): Map<number, unknown> {
  const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === 'state')!;
  return (session as unknown as Record<symbol, { streams: Map<number, unknown> }>)[key].streams;
}

/** A cleartext HTTP/2 server whose streams wait until the test answers them. */
async function heldServer() {
  const sessions: ServerHttp2Session[] = [];
  const waiting: ServerHttp2Stream[] = [];
  const server = http2.createServer();
  server.on('session', (session) => sessions.push(session));
  server.on('stream', (stream) => waiting.push(stream));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  const request = () => {
    const stream = client.request({ ':path': '/' });
    const done = new Promise<{ status: number | undefined; body: string; error?: Error }>((resolve) => {
      let status: number | undefined;
      let body = '';
      stream.on('response', (headers) => { status = headers[':status'] as number; });
      stream.setEncoding('utf8').on('data', (chunk: string) => { body += chunk; });
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', (error) => resolve({ status, body, error }));
    });
    return done;
  };
  const nextStream = async () => {
    while (waiting.length === 0) await new Promise((resolve) => setImmediate(resolve));
    return waiting.shift()!;
  };
  const close = async () => {
    client.destroy();
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { sessions, request, nextStream, close };
}

test('renewStreamTables: an object without the state Node keeps is left alone', () => {
  assert.equal(renewStreamTables(new EventEmitter() as unknown as Http2Session), false);
});

test('renewStreamTables: the session gets new tables with the same streams, and Node goes on using them', async () => {
  const h = await heldServer();
  try {
    const first = h.request();
    const held = await h.nextStream();
    const session = h.sessions[0];
    const before = streamsOf(session);
    assert.equal(renewStreamTables(session), true);
    const after = streamsOf(session);
    assert.notEqual(after, before, 'a new table');
    assert.equal(after.constructor, before.constructor, "of Node's own class");
    assert.deepEqual([...after], [...before], 'holding the same open stream');
    held.respond({ ':status': 200 });
    held.end('first');
    assert.deepEqual(await first, { status: 200, body: 'first' });
    while (streamsOf(session).size > 0) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(streamsOf(session), after, 'the closed stream left the new table');

    // A stream opened after a renewal, and one open across it, are destroyed with their session:
    // Node finds them in the tables it was given.
    const second = h.request();
    const open = await h.nextStream();
    renewStreamTables(session);
    const third = h.request();
    await h.nextStream();
    assert.equal(streamsOf(session).size, 2);
    session.destroy();
    const [a, b] = await Promise.all([second, third]);
    assert.equal(open.destroyed, true);
    assert.ok(a.status === undefined && b.status === undefined, 'neither got an answer');
  } finally {
    await h.close();
  }
});

test('renewBusySessions: renews the sessions that opened a stream in the last period, and stops ticking when none did', () => {
  const timers = manualTimers();
  const renewed: string[] = [];
  const session = (name: string, destroyed = false) => ({ name, destroyed }) as unknown as Http2Session;
  const [a, b, gone] = [session('a'), session('b'), session('gone', true)];
  const renewal = renewBusySessions({ periodMs: 1000, timers, renew: (s) => renewed.push((s as unknown as { name: string }).name) });
  assert.equal(timers.pending, 0, 'no clock before the first stream');
  renewal.opened(a);
  renewal.opened(a);
  renewal.opened(gone);
  timers.advance(999);
  assert.deepEqual(renewed, []);
  timers.advance(1);
  assert.deepEqual(renewed, ['a'], 'once per busy session; a destroyed one is skipped');
  renewal.opened(b);
  timers.advance(1000);
  assert.deepEqual(renewed, ['a', 'b'], 'only the sessions busy since the last tick');
  timers.advance(1000);
  assert.deepEqual(renewed, ['a', 'b']);
  assert.equal(timers.pending, 0, 'an idle tick arms no next one');
  renewal.opened(a);
  renewal.stop();
  timers.advance(5000);
  assert.deepEqual(renewed, ['a', 'b'], 'stopped');
  renewal.opened(a);
  assert.equal(timers.pending, 0, 'and stays stopped');
});

test('the server renews the stream tables of its busy HTTP/2 sessions each second, and leaves idle ones be', async () => {
  const timers = manualTimers();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], static: 'public' }] }, { timers });
  const sessions: Http2Session[] = [];
  outpost.servers.https.on('session', (session: Http2Session) => sessions.push(session));
  try {
    const client = await h2session(outpost.url, { ca: outpost.ca });
    assert.equal((await h2request(client, '/')).status, 200);
    const first = streamsOf(sessions[0]);
    timers.advance(1000);
    const renewed = streamsOf(sessions[0]);
    assert.notEqual(renewed, first, 'renewed after a second with a stream');
    timers.advance(5000);
    assert.equal(streamsOf(sessions[0]), renewed, 'no stream since: left alone');
    assert.equal((await h2request(client, '/')).status, 200, 'the session serves on with its new tables');
    timers.advance(1000);
    assert.notEqual(streamsOf(sessions[0]), renewed);
    client.close();
  } finally {
    await outpost.close();
  }
});
