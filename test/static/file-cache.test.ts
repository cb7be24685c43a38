import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Context, Reply } from '../../src/pipeline/context.ts';
import { createStaticStage } from '../../src/static/serve.ts';
import { createFileCache } from '../../src/static/file-cache.ts';
import { isOutpostError } from '../../src/errors.ts';

const context = (path: string, headers: Record<string, string> = {}): Context => ({
  method: 'GET', scheme: 'https', authority: 'localhost', host: 'localhost', target: path, path, query: '', headers,
  remoteAddress: '127.0.0.1', remotePort: 1, httpVersion: '2', body: Readable.from([]), hasBody: false,
  signal: new AbortController().signal, startedAt: process.hrtime.bigint(), notes: new Map(),
});

async function serve(stage: ReturnType<typeof createStaticStage>, path: string, headers: Record<string, string> = {}): Promise<Reply | number> {
  try {
    return await stage(context(path, headers), async () => ({ status: 299, headers: {}, body: null }));
  } catch (err) {
    if (isOutpostError(err)) return err.status;
    throw err;
  }
}

test('small files are answered from memory, re-checked once the validity window passes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-filecache-'));
  const root = join(dir, 'site');
  mkdirSync(root);
  writeFileSync(join(root, 'a.txt'), 'first');
  writeFileSync(join(dir, 'secret.txt'), 'outside the root');
  let clock = 1_000_000;
  const files = createFileCache({ maxSize: 1024 * 1024, maxFileSize: 64 * 1024, validMs: 1000, now: () => clock });
  const stage = createStaticStage({ root, index: 'index.html', cacheControl: null, immutableCacheControl: 'x' }, { fallthrough: false, files });
  try {
    const first = await serve(stage, '/a.txt') as Reply;
    assert.ok(Buffer.isBuffer(first.body), 'a small file is sent from a buffer');
    assert.equal(first.body.toString(), 'first');
    assert.equal((first.variants?.identity as Buffer).toString(), 'first', 'compression can encode it without a read');

    // changed on disk: within the window the kept copy is served, after it the new bytes
    writeFileSync(join(root, 'a.txt'), 'second!');
    utimesSync(join(root, 'a.txt'), new Date(), new Date(Date.now() + 5000));
    assert.equal(((await serve(stage, '/a.txt')) as Reply).body?.toString(), 'first');
    clock += 1500;
    const changed = await serve(stage, '/a.txt') as Reply;
    assert.equal((changed.body as Buffer).toString(), 'second!');

    // swapped for a symlink leading out of the root: the re-check drops the entry, the open refuses
    rmSync(join(root, 'a.txt'));
    symlinkSync(join(dir, 'secret.txt'), join(root, 'a.txt'));
    clock += 1500;
    assert.equal(await serve(stage, '/a.txt'), 403);

    // ranges and conditionals work on the kept copy
    writeFileSync(join(root, 'b.txt'), '0123456789');
    await serve(stage, '/b.txt');
    const range = await serve(stage, '/b.txt', { range: 'bytes=2-4' }) as Reply;
    assert.equal(range.status, 206);
    assert.equal((range.body as Buffer).toString(), '234');
    const etag = (range.headers.etag as string);
    assert.equal((await serve(stage, '/b.txt', { 'if-none-match': etag }) as Reply).status, 304);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file cache: bounded by bytes, large files never kept', async () => {
  const files = createFileCache({ maxSize: 10, maxFileSize: 8 });
  const stats = { size: 6, mtimeMs: 1, ino: 1, dev: 1 } as import('node:fs').Stats;
  files.keep('/x', Buffer.alloc(6), stats);
  files.keep('/y', Buffer.alloc(6), stats); // evicts /x
  files.keep('/z', Buffer.alloc(9), { ...stats, size: 9 }); // over maxFileSize
  assert.equal(await files.get('/x'), undefined);
  assert.ok(await files.get('/y'));
  assert.equal(await files.get('/z'), undefined);
});

test('file cache: the requests that find an entry out of its window wait for one stat between them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-filecache-'));
  const file = join(dir, 'a.txt');
  writeFileSync(file, 'first');
  let clock = 1_000_000;
  let stats = 0;
  const files = createFileCache({ maxSize: 1024, maxFileSize: 64, validMs: 1000, now: () => clock, stat: (f) => { stats++; return stat(f); } });
  try {
    const entry = files.keep(file, Buffer.from('first'), statSync(file))!;
    assert.equal(await files.get(file), entry, 'within its window: no stat');
    assert.equal(stats, 0);

    clock += 1000;
    const answers = await Promise.all(Array.from({ length: 50 }, () => files.get(file)));
    assert.equal(stats, 1, '50 requests in flight, one stat');
    assert.ok(answers.every((answer) => answer === entry), 'the file is unchanged: every one of them gets the entry');
    assert.equal(await files.get(file), entry);
    assert.equal(stats, 1, 'checked again: trusted for another window');

    clock += 1000;
    writeFileSync(file, 'second, longer');
    const changed = await Promise.all(Array.from({ length: 50 }, () => files.get(file)));
    assert.equal(stats, 2);
    assert.ok(changed.every((answer) => answer === undefined), 'changed on disk: none of them gets the old bytes');
    assert.equal(await files.get(file), undefined, 'and the entry is gone');
    assert.equal(stats, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('file cache: a file kept again while its old entry is being checked stays kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-filecache-'));
  const file = join(dir, 'a.txt');
  writeFileSync(file, 'first');
  let clock = 1_000_000;
  let release!: () => void;
  const held = new Promise<void>((resolve) => { release = resolve; });
  const files = createFileCache({ maxSize: 1024, maxFileSize: 64, validMs: 1000, now: () => clock, stat: async (f) => { await held; return stat(f); } });
  try {
    files.keep(file, Buffer.from('first'), statSync(file));
    clock += 1000;
    const checking = files.get(file);
    // Meanwhile a request opened the file (it changed) and kept what it read.
    writeFileSync(file, 'second');
    const newer = files.keep(file, Buffer.from('second'), statSync(file))!;
    release();
    assert.equal(await checking, undefined, 'the old entry is not answered');
    assert.equal(await files.get(file), newer, 'the newer entry is neither dropped nor replaced by the old one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file not kept yet is opened and read once for the requests that come while it is read, its sibling too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-filecache-'));
  writeFileSync(join(dir, 'page.html'), 'page '.repeat(200));
  writeFileSync(join(dir, 'page.html.br'), 'not really brotli');
  const files = createFileCache({ maxSize: 1024 * 1024, maxFileSize: 64 * 1024 });
  const kept: string[] = [];
  const counted = { ...files, keep: (file: string, body: Buffer, stats: import('node:fs').Stats) => { kept.push(file); return files.keep(file, body, stats); } };
  const stage = createStaticStage({ root: dir, index: 'index.html', cacheControl: null, immutableCacheControl: 'x' }, { fallthrough: false, files: counted });
  try {
    const replies = await Promise.all(Array.from({ length: 50 }, () => serve(stage, '/page.html') as Promise<Reply>));
    assert.deepEqual(kept, [join(dir, 'page.html')], '50 requests at once: one read, kept once');
    assert.ok(replies.every((r) => r.status === 200 && (r.body as Buffer).toString() === 'page '.repeat(200)), 'every one of them answered with the file');
    const siblings = await Promise.all(replies.map((r) => r.variants!.get!('br')));
    assert.deepEqual(kept, [join(dir, 'page.html'), join(dir, 'page.html.br')], 'and its .br sibling read once for all of them');
    assert.ok(siblings.every((v) => v !== undefined && (v.body as Buffer).toString() === 'not really brotli'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('requests for a file that is not there do not wait for one another\'s trip to the origin', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-filecache-'));
  const files = createFileCache({ maxSize: 1024 * 1024, maxFileSize: 64 * 1024 });
  const stage = createStaticStage({ root: dir, index: 'index.html', cacheControl: null, immutableCacheControl: 'x' }, { fallthrough: true, files });
  let release!: () => void;
  const origin = new Promise<void>((resolve) => { release = resolve; });
  let passedOn = 0;
  const next = async () => { passedOn++; await origin; return { status: 200, headers: {}, body: null } as Reply; };
  try {
    const both = Promise.all([stage(context('/missing.js'), next), stage(context('/missing.js'), next)]);
    for (let i = 0; i < 50 && passedOn < 2; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(passedOn, 2, 'the second is passed on while the first still waits for the origin');
    release();
    assert.deepEqual((await both).map((r) => r.status), [200, 200]);
  } finally {
    release();
    rmSync(dir, { recursive: true, force: true });
  }
});
