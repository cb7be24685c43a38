import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { h2session, startOutpost } from '../helpers/outpost.ts';

const MB = 1024 * 1024;

test('a 1 GB file streams from disk with flat memory', async () => {
  const root = mkdtempSync(join(tmpdir(), 'outpost-large-'));
  const fd = openSync(join(root, 'big.bin'), 'w');
  ftruncateSync(fd, 1024 * MB); // sparse: no disk space used
  closeSync(fd);
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], static: root }] });
  const rssBefore = process.memoryUsage().rss;
  let peak = rssBefore;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 50);
  try {
    const session = await h2session(outpost.url);
    const stream = session.request({ ':path': '/big.bin' });
    const [headers] = await Promise.all([new Promise<Record<string, unknown>>((resolve) => stream.once('response', resolve))]);
    assert.equal(headers['content-length'], String(1024 * MB));
    let received = 0;
    for await (const chunk of stream) received += (chunk as Buffer).length;
    session.close();
    assert.equal(received, 1024 * MB);
  } finally {
    clearInterval(sampler);
    await outpost.close();
  }
  assert.ok(peak - rssBefore < 150 * MB, `rss grew by ${Math.round((peak - rssBefore) / MB)} MB while sending 1024 MB`);
});
