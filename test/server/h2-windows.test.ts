import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
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
