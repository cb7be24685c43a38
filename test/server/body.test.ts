import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { asMessageStream, limitBody } from '../../src/server/body.ts';

/** The body limiter on its own: a PassThrough plays the client's request stream. */

const outcome = (body: Readable) => new Promise<string>((resolve) => {
  body.once('error', (err: Error & { status?: number }) => resolve(String(err.status)));
  body.once('end', () => resolve('end'));
});

test('a body slower than minRate after the grace fails with 408; the whole-body deadline is far away', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 60_000, minRate: 1000, grace: 200 });
  body.resume(); // a consumer that keeps up
  const trickle = setInterval(() => source.write(Buffer.alloc(10)), 50); // 200 B/s
  const started = Date.now();
  const result = await outcome(body);
  clearInterval(trickle);
  assert.equal(result, '408');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 200 && elapsed < 1000, `after ${elapsed} ms`);
});

test('bytes that earn their time keep the body going: the allowance is grace + received / rate', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 60_000, minRate: 1000, grace: 100 });
  body.resume();
  // 2000 bytes at once buy 2 s; the body ends well within that
  source.write(Buffer.alloc(2000));
  setTimeout(() => source.end(Buffer.alloc(10)), 400);
  assert.equal(await outcome(body), 'end');
});

test('bytes waiting unread in our buffers are our delay, not the client\'s: no 408 for them', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 60_000, minRate: 1_000_000, grace: 100 });
  let failed = false;
  body.once('error', () => { failed = true; });
  // the client sent its bytes; the consumer (an origin slow to take the upload) reads nothing for 500 ms
  source.write(Buffer.alloc(100));
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(failed, false);
  const sink = new Writable({ write(_chunk, _encoding, callback) { callback(); } });
  body.pipe(sink);
  source.end();
  await new Promise((resolve) => sink.once('finish', resolve));
  assert.equal(failed, false);
});

test('minRate 0 turns the rule off; the deadline still holds', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 300, minRate: 0, grace: 0 });
  body.resume();
  const started = Date.now();
  assert.equal(await outcome(body), '408');
  assert.ok(Date.now() - started >= 290);
});

test('a body that errors before anyone reads it does not crash the process', async () => {
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 60_000, minRate: 0, grace: 0 });
  source.destroy(new Error('stream reset by the client'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(body.destroyed, true);
});

test('a message stream (asMessageStream): no whole-body deadline nor rate, but silence past `deadline` between chunks fails it; bytes waiting in our buffers are not the client\'s silence', async () => {
  // Chunks 50 ms apart for 800 ms under a 300 ms deadline and a rate it does not keep: it lives
  // (the margin is for a busy machine's late timers).
  const source = new PassThrough();
  const body = limitBody(source, { maxBytes: 1e9, deadline: 300, minRate: 1_000_000, grace: 20 });
  asMessageStream(body);
  body.resume();
  const trickle = setInterval(() => source.write(Buffer.alloc(1)), 50);
  await new Promise((resolve) => setTimeout(resolve, 800));
  clearInterval(trickle);
  assert.equal(body.destroyed, false, 'kept while chunks come');
  // Then silence: 408 after the idle limit.
  const started = Date.now();
  assert.equal(await outcome(body), '408');
  assert.ok(Date.now() - started < 2000);

  // A consumer that reads nothing: what waits unread is ours to take, however long the client is quiet after it.
  const held = new PassThrough();
  const unread = limitBody(held, { maxBytes: 1e9, deadline: 100, minRate: 1_000_000, grace: 20 });
  asMessageStream(unread);
  let failed = false;
  unread.once('error', () => { failed = true; });
  held.write(Buffer.alloc(100 * 1024));
  await new Promise((resolve) => setTimeout(resolve, 350));
  assert.equal(failed, false);
  unread.destroy();
});
