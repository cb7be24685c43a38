import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { h2session, startOrigin, startOutpost, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * HTTP/2 flow-control windows for uploads (RFC 9113 §6.9): larger than the protocol's 65,535 bytes
 * per stream and per connection, so a client sends a 1 MiB body without waiting for a
 * WINDOW_UPDATE every 64 KB, and parallel uploads on one connection do not share one 64 KB window.
 */

let origin: TestOrigin;
let outpost: RunningOutpost;

before(async () => {
  origin = await startOrigin((req, res) => {
    let received = 0;
    req.on('data', (chunk: Buffer) => { received += chunk.length; });
    req.on('end', () => res.end(JSON.stringify({ received })));
  });
  outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: origin.url, cache: { enabled: false } }] });
});

after(async () => {
  await outpost.close();
  await origin.close();
});

test('the server offers a 1 MiB stream window and an 8 MiB connection window', async () => {
  const session = await h2session(outpost.url);
  try {
    await waitFor(() => (session.remoteSettings.initialWindowSize === 1024 * 1024 ? true : undefined));
    // The connection window is raised by a WINDOW_UPDATE right after the preface.
    await waitFor(() => ((session.state.remoteWindowSize ?? 0) >= 8 * 1024 * 1024 ? true : undefined));
  } finally {
    session.close();
  }
});

test('four 1 MiB uploads at once on one connection all reach the origin whole', async () => {
  const session = await h2session(outpost.url);
  const body = Buffer.alloc(1024 * 1024, 7);
  try {
    const answers = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const stream = session.request({ ':method': 'POST', ':path': `/upload/${i}`, 'content-type': 'application/octet-stream' });
      stream.end(body);
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      const [headers] = await once(stream, 'response');
      await once(stream, 'end');
      return { status: headers[':status'], body: JSON.parse(Buffer.concat(chunks).toString()) };
    }));
    for (const answer of answers) assert.deepEqual(answer, { status: 200, body: { received: body.length } });
  } finally {
    session.close();
  }
});

test('an upload to an origin that reads nothing stops its client: what Outpost takes ahead is bounded', async () => {
  // The origin takes the request and never reads its body: only the kernel's buffers, the origin
  // socket's write buffer (one 1 MiB batch, origin/upload-writes.ts), the body limiter and the
  // stream's 1 MiB window lie between it and the client, which must then stall.
  const held: Array<{ destroy(): void }> = [];
  const stuck = await startOrigin((req) => { req.pause(); held.push(req.socket); });
  const edge = await startOutpost({ sites: [{ hosts: ['*'], origin: stuck.url, cache: { enabled: false } }] });
  const session = await h2session(edge.url);
  const total = 64 * 1024 * 1024;
  const piece = Buffer.alloc(64 * 1024, 3);
  let pulled = 0;
  const body = new Readable({
    read() {
      pulled += piece.length;
      this.push(pulled >= total ? null : piece);
    },
  });
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': String(total) });
    stream.on('error', () => {});
    body.pipe(stream);
    // Until the client has stopped: no more bytes taken in 40 polls in a row (200 ms). Measured:
    // ~6 MB taken, kernel buffers included (5.4 with 256 KB batches); all 64 MiB without the
    // limiter pausing the client's stream.
    let last = -1;
    let still = 0;
    await waitFor(() => {
      if (pulled === last) still++;
      else { still = 0; last = pulled; }
      return still >= 40 ? true : undefined;
    }, 20_000);
    assert.equal(held.length, 1, 'the request reached the origin');
    assert.ok(pulled < 16 * 1024 * 1024, `the client sent ${pulled} of ${total} bytes to an origin that reads nothing`);
  } finally {
    body.destroy();
    session.destroy();
    for (const socket of held) socket.destroy();
    await edge.close();
    await stuck.close();
  }
});
