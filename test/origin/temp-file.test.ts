import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { until } from '../helpers/wait.ts';
import { READ_SIZE, TempFile, WRITE_QUEUE_LIMIT } from '../../src/origin/temp-file.ts';

/** Reads `file` until it says everything appended has been read. */
function readAll(file: TempFile): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    const next = () => file.readNext((err, chunk) => {
      if (err !== null) return reject(err);
      if (chunk === null) return resolve(Buffer.concat(chunks));
      assert.ok(chunk.length <= READ_SIZE);
      chunks.push(chunk);
      next();
    });
    next();
  });
}

test('what is appended is read back in order, across reads and writes that interleave; the file has no name', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-temp-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = new TempFile(dir, () => {});
  const parts = [randomBytes(100), randomBytes(200 * 1024), randomBytes(1)];
  file.append(parts[0]);
  // Read at once: the read waits for the open and the first write.
  const first = new Promise<Buffer | null>((resolve, reject) => file.readNext((err, chunk) => (err ? reject(err) : resolve(chunk))));
  assert.deepEqual(await first, parts[0]);
  assert.deepEqual(readdirSync(dir), []);
  file.append(parts[1]);
  file.append(parts[2]);
  assert.equal(file.size, 100 + 200 * 1024 + 1);
  const rest = await readAll(file);
  assert.ok(rest.equals(Buffer.concat(parts.slice(1))));
  assert.equal(file.failed, null);
  assert.equal(await readAll(file).then((b) => b.length), 0, 'all read: nothing more');
  file.close();
  file.append(Buffer.from('after close')); // ignored, no throw
});

test('a file that cannot be opened fails its reads with the reason; close() while a write is in flight calls back nothing', async () => {
  const broken = new TempFile('/nonexistent-outpost-dir', () => {});
  broken.append(Buffer.from('lost'));
  await assert.rejects(readAll(broken), { code: 'ENOENT' });
  assert.equal((broken.failed as NodeJS.ErrnoException | null)?.code, 'ENOENT');

  const dir = mkdtempSync(join(tmpdir(), 'outpost-temp-file-'));
  try {
    const file = new TempFile(dir, () => {});
    let calledBack = false;
    file.append(randomBytes(1024 * 1024));
    file.readNext(() => { calledBack = true; });
    file.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(calledBack, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('append answers false once WRITE_QUEUE_LIMIT bytes wait to be written, and onDrain comes when they are under it again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-temp-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let drained = 0;
  const file = new TempFile(dir, () => { drained++; });
  const chunk = randomBytes(64 * 1024);
  const answers: boolean[] = [];
  for (let sent = 0; sent < WRITE_QUEUE_LIMIT; sent += chunk.length) answers.push(file.append(chunk));
  assert.deepEqual(answers, [...answers.slice(0, -1).map(() => true), false], 'the open is still in flight: nothing written yet');
  await until(() => drained === 1);
  assert.equal((await readAll(file)).length, WRITE_QUEUE_LIMIT);
  assert.equal(drained, 1);
  file.close();
});
