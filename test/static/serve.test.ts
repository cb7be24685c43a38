import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isOutpostError } from '../../src/errors.ts';
import type { StaticOptions } from '../../src/config/schema.ts';
import type { Handler, Stage } from '../../src/pipeline/compose.ts';
import { isFileBody, type Context, type Reply } from '../../src/pipeline/context.ts';
import { createStaticStage } from '../../src/static/serve.ts';
import { createEncodedStore } from '../../src/static/encoded.ts';
import { createFileCache } from '../../src/static/file-cache.ts';

/*
 * The stage called directly with a Context built here, over a temp tree:
 *   site/  index.html hello.txt app.3f9a8c1b.js data.bin noext empty.txt .env café.txt
 *          .well-known/security.txt  docs/index.html  docs/.well-known/x  empty-dir/  assets/style.css
 *          link-inside → hello.txt   link-outside → ../outside/secret.txt   dir-outside → ../outside
 *          fifo (a named pipe)
 *   outside/secret.txt
 */
let tmp: string;
let site: string;
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const HELLO = 'hello world\n';
const MTIME = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'outpost-static-'));
  site = join(tmp, 'site');
  const files: Record<string, string | Buffer> = {
    'index.html': '<h1>home</h1>\n',
    'hello.txt': HELLO,
    'app.3f9a8c1b.js': 'console.log(1);\n',
    'data.bin': BINARY,
    'noext': 'no extension',
    'empty.txt': '',
    '.env': 'SECRET=1',
    'café.txt': 'café',
    'with space.txt': 'space',
    '.well-known/security.txt': 'Contact: mailto:security@example.com',
    'docs/index.html': '<h1>docs</h1>\n',
    'docs/.well-known/x': 'hidden',
    'assets/style.css': 'body{}',
    'empty-dir/.keep': '',
    'index-dir/index.html/x': 'a directory named like the index',
  };
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(site, name, '..'), { recursive: true });
    writeFileSync(join(site, name), content);
    utimesSync(join(site, name), MTIME, MTIME);
  }
  mkdirSync(join(tmp, 'outside'));
  writeFileSync(join(tmp, 'outside', 'secret.txt'), 'outside secret');
  symlinkSync('hello.txt', join(site, 'link-inside'));
  symlinkSync('../outside/secret.txt', join(site, 'link-outside'));
  symlinkSync('../outside', join(site, 'dir-outside'));
  symlinkSync('/etc/passwd', join(site, 'link-absolute'));
  execFileSync('mkfifo', [join(site, 'fifo')]);
});

after(() => rmSync(tmp, { recursive: true, force: true }));

const options = (overrides: Partial<StaticOptions> = {}): StaticOptions => ({
  root: site, index: 'index.html', cacheControl: 'public, max-age=60',
  immutableCacheControl: 'public, max-age=31536000, immutable', ...overrides,
});

function context(path: string, init: { method?: string; headers?: Record<string, string>; query?: string } = {}): Context {
  const query = init.query ?? '';
  return {
    method: init.method ?? 'GET', scheme: 'https', authority: 'localhost', host: 'localhost',
    target: path + query, path, query, headers: init.headers ?? {},
    remoteAddress: '127.0.0.1', remotePort: 1, httpVersion: '2',
    body: Readable.from([]), hasBody: false, signal: new AbortController().signal, startedAt: process.hrtime.bigint(), notes: new Map(),
  };
}

interface Result { status: number; headers: Reply['headers']; body: Buffer | null; passedOn: boolean; code?: string }

const NEXT_STATUS = 299;
const next: Handler = async () => ({ status: NEXT_STATUS, headers: {}, body: null });

/** Runs the stage; a thrown OutpostError becomes its status, a FileBody is read and closed. */
async function run(stage: Stage, path: string, init: Parameters<typeof context>[1] = {}): Promise<Result> {
  let reply: Reply;
  try {
    reply = await stage(context(path, init), next);
  } catch (err) {
    if (!isOutpostError(err)) throw err;
    return { status: err.status, headers: {}, body: null, passedOn: false, code: err.code };
  }
  let body: Buffer | null = null;
  if (isFileBody(reply.body)) {
    const { handle, offset, length } = reply.body;
    body = Buffer.alloc(length);
    const { bytesRead } = await handle.read(body, 0, length, offset);
    assert.equal(bytesRead, length);
    await handle.close();
  } else if (Buffer.isBuffer(reply.body)) {
    body = reply.body;
  } else {
    assert.equal(reply.body, null, 'static replies carry a file, a buffer or nothing');
  }
  return { status: reply.status, headers: reply.headers, body, passedOn: reply.status === NEXT_STATUS };
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('static stage: paths', () => {
  const strict = () => createStaticStage(options(), { fallthrough: false });
  const lenient = () => createStaticStage(options(), { fallthrough: true });

  // [path, status without fallthrough, passed on with fallthrough]
  const table: Array<[string, number, boolean]> = [
    ['/hello.txt', 200, false],
    ['/', 200, false],
    ['/docs/', 200, false],
    ['/docs', 301, false],
    ['/empty-dir', 301, false],
    ['/link-inside', 200, false],
    ['/.well-known/security.txt', 200, false],
    ['/caf%C3%A9.txt', 200, false],
    ['/with%20space.txt', 200, false],
    ['/%68ello.txt', 200, false], // an escaped unreserved character is the same name
    // not here
    ['/missing.txt', 404, true],
    ['/empty-dir/', 404, true],
    ['/hello.txt/', 404, true],
    ['/hello.txt/x', 404, true],
    ['/fifo', 404, true], // refused after fstat, and the open does not hang
    ['/index-dir/', 404, true], // its "index.html" is a directory
    [`/${'a'.repeat(300)}`, 404, true], // ENAMETOOLONG
    ['/.env', 404, true],
    ['/%2eenv', 404, true],
    ['/docs/.well-known/x', 404, true],
    ['//hello.txt', 404, true],
    ['/docs%2Findex.html', 404, true],
    ['/caf%E9.txt', 400, true], // Latin-1 escape
    // hostile: answered here even when falling through
    ['hello.txt', 400, false],
    ['/%zz', 400, false],
    ['/../outside/secret.txt', 404, false],
    ['/docs/../../outside/secret.txt', 404, false],
    ['/%2e%2e/outside/secret.txt', 404, false],
    ['/.%2e/outside/secret.txt', 404, false],
    ['/%2E%2E%2Foutside%2Fsecret.txt', 404, false],
    ['/docs/%2e/index.html', 404, false],
    ['/./hello.txt', 404, false],
    ['/hello.txt%00.html', 404, false],
    ['/hello.txt\0', 404, false],
    ['/..%5coutside%5csecret.txt', 404, false],
    ['/..\\outside\\secret.txt', 404, false],
    ['/link-outside', 403, false],
    ['/link-absolute', 403, false],
    ['/dir-outside/secret.txt', 403, false],
    ['/dir-outside/', 404, true], // no index.html outside: ENOENT before any realpath check
  ];

  test('without fallthrough: the status of each vector', async () => {
    const stage = strict();
    for (const [path, status] of table) {
      const got = await run(stage, path);
      assert.equal(got.status, status, JSON.stringify(path));
      if (status === 200) assert.ok(got.body !== null && !got.body.includes('outside secret'));
    }
  });

  test('with fallthrough: only "not a file here" is passed on', async () => {
    const stage = lenient();
    for (const [path, status, passedOn] of table) {
      const got = await run(stage, path);
      if (passedOn) assert.ok(got.passedOn, `${JSON.stringify(path)} should be passed on, got ${got.status}`);
      else assert.equal(got.status, status, JSON.stringify(path));
    }
  });

  test('every path above, GET and HEAD, leaks no file descriptor', async () => {
    const stage = strict();
    const before = openFds();
    for (const method of ['GET', 'HEAD']) {
      for (const [path] of table) await run(stage, path, { method });
      const conditional: Array<Record<string, string>> = [{ 'if-none-match': '*' }, { 'if-match': '"x"' }, { range: 'bytes=999-' }, { range: 'bytes=0-1' }];
      for (const headers of conditional) {
        await run(stage, '/hello.txt', { method, headers });
      }
    }
    assert.equal(openFds(), before);
  });

  test('the refusal reason is noted for the access log', async () => {
    const ctx = context('/../etc/passwd');
    await assert.rejects(strict()(ctx, next), { status: 404 });
    assert.equal(ctx.notes.get('static'), 'dot segment');
  });
});

describe('static stage: responses', () => {
  const stage = () => createStaticStage(options(), { fallthrough: false });

  test('200: body, type, validators, cache headers', async () => {
    const got = await run(stage(), '/hello.txt');
    assert.equal(got.status, 200);
    assert.equal(got.body?.toString(), HELLO);
    assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(got.headers['content-length'], HELLO.length);
    assert.equal(got.headers['x-content-type-options'], 'nosniff');
    assert.equal(got.headers['accept-ranges'], 'bytes');
    assert.equal(got.headers['cache-control'], 'public, max-age=60');
    assert.equal(got.headers['last-modified'], 'Tue, 02 Jan 2024 03:04:05 GMT');
    assert.equal(got.headers.etag, `"${HELLO.length.toString(16)}-${MTIME.getTime().toString(16)}"`);
  });

  test('content types: html index, JavaScript, binary, no extension, empty file', async () => {
    const s = stage();
    assert.equal((await run(s, '/')).headers['content-type'], 'text/html; charset=utf-8');
    assert.equal((await run(s, '/app.3f9a8c1b.js')).headers['content-type'], 'text/javascript; charset=utf-8');
    const bin = await run(s, '/data.bin');
    assert.equal(bin.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(bin.body, BINARY);
    assert.equal((await run(s, '/noext')).headers['content-type'], 'application/octet-stream');
    const empty = await run(s, '/empty.txt');
    assert.equal(empty.status, 200);
    assert.equal(empty.headers['content-length'], 0);
    assert.equal(empty.body?.length, 0);
  });

  test('fingerprinted names get the immutable Cache-Control; no cacheControl means none', async () => {
    assert.equal((await run(stage(), '/app.3f9a8c1b.js')).headers['cache-control'], 'public, max-age=31536000, immutable');
    const plain = createStaticStage(options({ cacheControl: null }), { fallthrough: false });
    assert.equal((await run(plain, '/hello.txt')).headers['cache-control'], undefined);
    assert.equal((await run(plain, '/app.3f9a8c1b.js')).headers['cache-control'], 'public, max-age=31536000, immutable');
  });

  test('directory redirect keeps the query; HEAD gets no body', async () => {
    const got = await run(stage(), '/docs', { query: '?a=1&b=2' });
    assert.equal(got.status, 301);
    assert.equal(got.headers.location, '/docs/?a=1&b=2');
    assert.equal((await run(stage(), '/docs', { method: 'HEAD' })).body, null);
    assert.equal((await run(stage(), '/docs/')).body?.toString(), '<h1>docs</h1>\n');
  });

  test('HEAD: the GET headers, no body, ranges ignored', async () => {
    const got = await run(stage(), '/hello.txt', { method: 'HEAD', headers: { range: 'bytes=0-1' } });
    assert.equal(got.status, 200);
    assert.equal(got.body, null);
    assert.equal(got.headers['content-length'], HELLO.length);
    assert.ok(got.headers.etag);
  });

  test('other methods: 405 with Allow, or passed on', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'get']) {
      const got = await run(stage(), '/hello.txt', { method });
      assert.equal(got.status, 405, method);
      assert.equal(got.headers.allow, 'GET, HEAD');
    }
    const lenient = createStaticStage(options(), { fallthrough: true });
    assert.ok((await run(lenient, '/hello.txt', { method: 'POST' })).passedOn);
  });

  test('conditionals: 304 carries the validators and Cache-Control; 412', async () => {
    const s = stage();
    const { headers } = await run(s, '/hello.txt');
    const etag = headers.etag as string;
    const lastModified = headers['last-modified'] as string;

    // second request with the ETag: not modified
    const inm = await run(s, '/hello.txt', { headers: { 'if-none-match': `"x", W/${etag}` } });
    assert.equal(inm.status, 304);
    assert.equal(inm.body, null);
    assert.deepEqual(inm.headers, { etag, 'last-modified': lastModified, 'cache-control': 'public, max-age=60' });

    assert.equal((await run(s, '/hello.txt', { headers: { 'if-modified-since': lastModified } })).status, 304);
    assert.equal((await run(s, '/hello.txt', { headers: { 'if-modified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' } })).status, 200);
    // If-None-Match present: If-Modified-Since is not looked at
    assert.equal((await run(s, '/hello.txt', { headers: { 'if-none-match': '"x"', 'if-modified-since': lastModified } })).status, 200);
    assert.equal((await run(s, '/hello.txt', { method: 'HEAD', headers: { 'if-none-match': etag } })).status, 304);

    assert.equal((await run(s, '/hello.txt', { headers: { 'if-match': '"x"' } })).status, 412);
    assert.equal((await run(s, '/hello.txt', { headers: { 'if-match': etag } })).status, 200);
    assert.equal((await run(s, '/hello.txt', { headers: { 'if-unmodified-since': 'Mon, 01 Jan 2024 00:00:00 GMT' } })).status, 412);
  });

  test('ranges: 206, suffix, open end, 416, several, malformed, If-Range', async () => {
    const s = stage();
    const range = (value: string, extra: Record<string, string> = {}) => run(s, '/data.bin', { headers: { range: value, ...extra } });

    const first = await range('bytes=0-9');
    assert.equal(first.status, 206);
    assert.equal(first.headers['content-range'], 'bytes 0-9/256');
    assert.equal(first.headers['content-length'], 10);
    assert.deepEqual(first.body, BINARY.subarray(0, 10));
    assert.ok(first.headers.etag);

    assert.deepEqual((await range('bytes=-6')).body, BINARY.subarray(250));
    const open = await range('bytes=250-');
    assert.equal(open.headers['content-range'], 'bytes 250-255/256');
    assert.deepEqual(open.body, BINARY.subarray(250));
    assert.deepEqual((await range('bytes=200-9999')).body, BINARY.subarray(200));

    const unsatisfiable = await range('bytes=256-');
    assert.equal(unsatisfiable.status, 416);
    assert.equal(unsatisfiable.headers['content-range'], 'bytes */256');

    for (const whole of ['bytes=0-1,4-5', 'bytes=5-1', 'bytes=x', 'lines=1-2']) {
      const got = await range(whole);
      assert.equal(got.status, 200, whole);
      assert.equal(got.body?.length, 256);
    }

    const etag = first.headers.etag as string;
    const lastModified = first.headers['last-modified'] as string;
    assert.equal((await range('bytes=0-1', { 'if-range': etag })).status, 206);
    assert.equal((await range('bytes=0-1', { 'if-range': lastModified })).status, 206);
    assert.equal((await range('bytes=0-1', { 'if-range': '"old"' })).status, 200);
    assert.equal((await range('bytes=0-1', { 'if-range': `W/${etag}` })).status, 200);
    assert.equal((await range('bytes=0-1', { 'if-range': 'Mon, 01 Jan 2024 00:00:00 GMT' })).status, 200);
    // a failed If-Range with an unsatisfiable range: the whole 200, not 416
    assert.equal((await range('bytes=999-', { 'if-range': '"old"' })).status, 200);
    // If-None-Match is evaluated before Range
    assert.equal((await range('bytes=0-1', { 'if-none-match': etag })).status, 304);
  });

  test('a file modified in the future: Last-Modified is not later than now', async () => {
    const future = new Date(Date.now() + 86_400_000);
    const file = join(site, 'future.txt');
    writeFileSync(file, 'x');
    utimesSync(file, future, future);
    const got = await run(stage(), '/future.txt');
    assert.ok(Date.parse(got.headers['last-modified'] as string) <= Date.now());
    rmSync(file);
  });

  test('an unreadable file is 403', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, async () => {
    const file = join(site, 'locked.txt');
    writeFileSync(file, 'x');
    chmodSync(file, 0o000);
    try {
      assert.equal((await run(stage(), '/locked.txt')).status, 403);
    } finally {
      rmSync(file);
    }
  });
});

describe('static stage: mounts and options', () => {
  const mounted = () => createStaticStage(options({ root: join(site, 'assets') }), { fallthrough: false, mountPath: '/assets/' });

  test('the mount prefix is stripped before mapping', async () => {
    const s = mounted();
    assert.equal((await run(s, '/assets/style.css')).body?.toString(), 'body{}');
    const redirect = await run(s, '/assets');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, '/assets/');
    assert.equal((await run(s, '/assets/')).status, 404); // no index.html in assets
    assert.equal((await run(s, '/assetsx/style.css')).status, 404);
    assert.equal((await run(s, '/assets/../hello.txt')).status, 404);
    assert.equal((await run(s, '/assets/%2e%2e/hello.txt')).status, 404);
    // a mount without its trailing slash behaves the same
    const bare = createStaticStage(options({ root: join(site, 'assets') }), { fallthrough: false, mountPath: '/assets' });
    assert.equal((await run(bare, '/assets/style.css')).status, 200);
  });

  test('a symlinked root is resolved once; files under it are inside', async () => {
    const linkedRoot = join(tmp, 'linked-site');
    symlinkSync(site, linkedRoot);
    const s = createStaticStage(options({ root: linkedRoot }), { fallthrough: false });
    assert.equal((await run(s, '/hello.txt')).status, 200);
    assert.equal((await run(s, '/link-outside')).status, 403);
  });

  test('bad options are refused at creation, naming the option', () => {
    assert.throws(() => createStaticStage(options({ root: join(tmp, 'nope') }), { fallthrough: false }), /static\.root/);
    assert.throws(() => createStaticStage(options({ root: join(site, 'hello.txt') }), { fallthrough: false }), /static\.root/);
    for (const index of ['', '.', '..', 'a/b', 'a\\b']) {
      assert.throws(() => createStaticStage(options({ index }), { fallthrough: false }), /static\.index/, index);
    }
    assert.throws(() => createStaticStage(options(), { fallthrough: false, mountPath: 'assets/' }), /mountPath/);
  });

  test('a custom index name', async () => {
    writeFileSync(join(site, 'docs', 'default.htm'), 'default');
    const s = createStaticStage(options({ index: 'default.htm' }), { fallthrough: false });
    assert.equal((await run(s, '/docs/')).body?.toString(), 'default');
    rmSync(join(site, 'docs', 'default.htm'));
  });
});

describe('static stage: variants for the compression stage', () => {
  const CSS = Buffer.from('body { color: black; }\n'.repeat(100));
  const tokenOf = (file: string) => {
    const stats = statSync(file);
    return `br.${stats.size.toString(16)}.${Math.floor(stats.mtimeMs).toString(16)}`;
  };

  test('a sibling comes with a token of its own bytes; a kept encoding with the token it was kept with', async () => {
    const root = mkdtempSync(join(tmp, 'variants-'));
    writeFileSync(join(root, 'app.css'), CSS);
    utimesSync(join(root, 'app.css'), MTIME, MTIME);
    writeFileSync(join(root, 'app.css.br'), 'brotli bytes, version 1');
    const s = createStaticStage(options({ root }), { fallthrough: false, encoded: createEncodedStore(1024 * 1024) });
    const reply = await s(context('/app.css'), next);
    assert.ok(isFileBody(reply.body));
    await reply.body.handle.close();
    const variants = reply.variants!;

    const sibling = await variants.get('br');
    assert.ok(sibling && isFileBody(sibling.body));
    await sibling.body.handle.close();
    assert.equal(sibling.token, tokenOf(join(root, 'app.css.br')), 'coding, size and mtime of the sibling');
    // rewritten: another token, though the file (and its ETag) did not change
    writeFileSync(join(root, 'app.css.br'), 'brotli bytes, version two');
    const rewritten = await variants.get('br');
    assert.ok(rewritten && isFileBody(rewritten.body));
    await rewritten.body.handle.close();
    assert.notEqual(rewritten.token, sibling.token);
    assert.equal(rewritten.token, tokenOf(join(root, 'app.css.br')));

    assert.equal(await variants.get('gzip'), undefined, 'no sibling, nothing kept');
    variants.put!('gzip', Buffer.from('fast'), 'gzip4', Buffer.from('identity'));
    const kept = await variants.get('gzip');
    assert.deepEqual({ body: kept?.body, token: kept?.token }, { body: Buffer.from('fast'), token: 'gzip4' });
    assert.equal(kept?.held?.(), true, 'still the kept bytes');
    variants.put!('gzip', Buffer.from('best'), 'gzip9', Buffer.from('identity')); // the upgrade replaces it
    assert.equal(kept?.held?.(), false, 'replaced: a reply made from it may not be sent again');
    const best = await variants.get('gzip');
    assert.deepEqual({ body: best?.body, token: best?.token }, { body: Buffer.from('best'), token: 'gzip9' });
  });

  test('a 304 offers the variants too, with the identity body when it is in memory', async () => {
    const files = createFileCache({ maxSize: 1024 * 1024, maxFileSize: 64 * 1024 });
    const s = createStaticStage(options(), { fallthrough: false, files });
    const first = await s(context('/hello.txt'), next);
    const notModified = await s(context('/hello.txt', { headers: { 'if-none-match': first.headers.etag as string } }), next);
    assert.equal(notModified.status, 304);
    assert.equal(notModified.variants?.identity?.toString(), HELLO, 'the size tells whether its 200 varies');
  });
});
