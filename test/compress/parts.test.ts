import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPopularity, createUpgradeQueue } from '../../src/compress/upgrades.ts';
import { createEncodedStore } from '../../src/static/encoded.ts';
import { createCompressStage } from '../../src/compress/stage.ts';
import { createOriginDecode } from '../../src/compress/origin-decode.ts';
import { validateConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { isToken, matchingTag, suffixTag, tagFor304, varyWithAcceptEncoding, widenIfNoneMatch } from '../../src/compress/validators.ts';
import { brotliWindowFor, createEncoder, encodeBuffer, tokenOf } from '../../src/compress/encoders.ts';
import zlib from 'node:zlib';

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('upgrade queue: one job per key at a time, bounded concurrency, bounded bytes waiting', async () => {
  const errors: unknown[] = [];
  const queue = createUpgradeQueue({ concurrency: 1, maxQueuedBytes: 100, onError: (e) => errors.push(e) });
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => { release = resolve; });
  assert.equal(queue.admits('a', 1000), true, 'nothing running: a job starts at once, whatever its size');
  assert.equal(queue.schedule('a', 80, async () => { order.push('a start'); await gate; order.push('a end'); }), true);
  assert.equal(queue.schedule('a', 80, async () => { order.push('a again'); }), false, 'a is running');
  assert.equal(queue.schedule('b', 60, async () => { order.push('b'); }), true);
  assert.equal(queue.schedule('b', 10, async () => { order.push('b again'); }), false, 'b is queued');
  assert.deepEqual([queue.admits('a', 1), queue.admits('b', 1), queue.admits('c', 50), queue.admits('c', 40)], [false, false, false, true],
    'admits answers as schedule would: running, queued, over the bytes, room');
  assert.equal(queue.schedule('c', 50, async () => { order.push('c'); }), false, '60 + 50 bytes would wait: dropped');
  assert.equal(queue.schedule('d', 40, async () => { throw new Error('boom'); }), true);
  await tick();
  assert.deepEqual(order, ['a start'], 'one at a time');
  release();
  for (let i = 0; i < 5; i++) await tick();
  assert.deepEqual(order, ['a start', 'a end', 'b']);
  assert.equal((errors[0] as Error).message, 'boom', 'a failed job is reported, not thrown');
  assert.equal(queue.schedule('a', 80, async () => { order.push('a later'); }), true, 'done: the key may run again');
  await tick();
  assert.equal(order.at(-1), 'a later');
  assert.throws(() => createUpgradeQueue({ concurrency: 0, maxQueuedBytes: 1, onError: () => {} }), /concurrency/);
});

test('popularity: true on the n-th use of a key, then it counts afresh; bounded keys', () => {
  const popular = createPopularity({ hits: 2, maxKeys: 3 });
  assert.equal(popular.hit('a'), false);
  assert.equal(popular.hit('a'), true, 'the second use');
  assert.equal(popular.hit('a'), false, 'counted afresh after');
  for (const key of ['b', 'c', 'd']) assert.equal(popular.hit(key), false);
  assert.equal(popular.hit('e'), false, 'full: starts afresh');
  assert.equal(popular.hit('b'), false, 'b was forgotten');
  assert.equal(popular.hit('e'), true);
  popular.settle('e');
  assert.equal(popular.settled('e'), true);
  assert.equal(popular.hit('e'), false, 'settled: no more counting');
  assert.equal(popular.hit('e'), false);
  assert.throws(() => createPopularity({ hits: 0, maxKeys: 1 }), /hits/);
});

test('encoded-file store: LRU by bytes, replacing, refusing entries over an eighth, keeping tokens', () => {
  const store = createEncodedStore(800);
  assert.equal(store.maxEntrySize, 100);
  store.set('a', Buffer.alloc(100), 'br4');
  store.set('too-big', Buffer.alloc(101), 'br4');
  assert.equal(store.get('too-big'), undefined);
  for (const key of ['b', 'c', 'd', 'e', 'f', 'g', 'h']) store.set(key, Buffer.alloc(100), 'gzip6');
  assert.equal(store.size, 800);
  assert.equal(store.get('a')?.token, 'br4'); // a is now the most recent
  store.set('i', Buffer.alloc(100), 'zstd3');
  assert.equal(store.get('b'), undefined, 'the least recently used went');
  assert.ok(store.get('a'));
  store.set('a', Buffer.alloc(50), 'br11'); // a fast encoding replaced by a smaller, better one
  assert.equal(store.size, 750);
  assert.equal(store.get('a')?.body.length, 50);
  assert.equal(store.get('a')?.token, 'br11', 'the token names the bytes kept now');
  assert.throws(() => createEncodedStore(-1), /staticMemory/);
});

test('tokens: the coding and its level, fast and high', () => {
  assert.deepEqual(
    (['br', 'zstd', 'gzip'] as const).map((coding) => [tokenOf(coding, 'fast'), tokenOf(coding, 'high')]),
    [['br2', 'br11'], ['zstd3', 'zstd19'], ['gzip4', 'gzip9']],
  );
});

// [token, can it go into an ETag suffix]
const TOKENS: Array<[unknown, boolean]> = [
  ['br4', true],
  ['zstd19', true],
  ['br.1f4.18c3f0e2a41', true], // a static sibling's: size and mtime
  ['', false],
  [undefined, false], // a holder that forgot it
  ['br 4', false],
  ['br4"', false], // would end the entity-tag
  ['br4,gzip6', false], // would split the list
  ['b'.repeat(65), false],
];

test('validators: which tokens an ETag may carry', () => {
  for (const [token, ok] of TOKENS) assert.equal(isToken(token), ok, String(token));
});

// [identity tag, token, the coded representation's tag]
const SUFFIXED: Array<[string, string, string]> = [
  ['"abc"', 'br4', '"abc-br4"'],
  ['"abc"', 'br11', '"abc-br11"'],
  ['W/"abc"', 'gzip6', 'W/"abc-gzip6"'],
  ['"2a0-18c3f0e2a40"', 'br.1f4.18c3f0e2a41', '"2a0-18c3f0e2a40-br.1f4.18c3f0e2a41"'],
  ['junk', 'br4', 'junk'], // not an entity-tag: left alone
];

test('validators: the suffix names the bytes', () => {
  for (const [etag, token, tagged] of SUFFIXED) assert.equal(suffixTag(etag, token), tagged, `${etag} + ${token}`);
});

// If-None-Match widened for a client that gets br, whose final token is br11: [value, widened, why]
const WIDENED: Array<[string, string | undefined, string]> = [
  ['"abc"', undefined, 'nothing of ours: unchanged'],
  ['"abc-br11"', '"abc-br11", "abc"', 'the final tag: the inner stage may confirm it'],
  ['W/"abc-br11", "x"', 'W/"abc-br11", "x", W/"abc"', 'weak stays weak'],
  ['"abc-br11", "def-br11"', '"abc-br11", "def-br11", "abc", "def"', 'each one'],
  ['"abc-br4"', undefined, 'fast: an upgrade may have replaced those bytes'],
  ['"abc-br.1f4.18c3f0e2a41"', undefined, 'a sibling: it may have been rewritten'],
  ['"abc-gzip9"', undefined, 'another coding than the client gets now'],
  ['"abc-br"', undefined, 'the level-less tag of earlier versions named two bodies'],
  ['"abc-xbr11"', undefined, 'not a suffix'],
  ['"-br11"', undefined, 'a suffix alone is not one of ours'],
  ['*', undefined, 'nothing to widen'],
];

test('validators: If-None-Match is widened only for final tokens', () => {
  for (const [value, widened, why] of WIDENED) assert.equal(widenIfNoneMatch(value, ['br11']), widened, why);
  assert.equal(widenIfNoneMatch('"abc-br11"', []), undefined, 'identity preferred: nothing is final');
});

test('validators: weak comparison against candidates', () => {
  assert.equal(matchingTag('"a-br11", "b"', ['"a-br11"', '"a"']), '"a-br11"');
  assert.equal(matchingTag('W/"a"', ['"a-br11"', '"a"']), '"a"', 'weak comparison');
  assert.equal(matchingTag('"a-br4"', ['"a-br11"', '"a"']), undefined, 'other bytes, other tag');
  assert.equal(matchingTag('"c"', ['"a-br11"', '"a"']), undefined);
  assert.equal(matchingTag('*', ['"a-br11"', '"a"']), '"a-br11"');
});

// A 304 from an inner stage for If-None-Match widened with br11: [If-None-Match, identity tag, the 304's tag, why]
const NOT_MODIFIED: Array<[string, string, string, string]> = [
  ['"abc-br11"', '"abc"', '"abc-br11"', 'the client holds the final br body: its tag back'],
  ['W/"abc-br11"', '"abc"', '"abc-br11"', 'weakly listed: the tag the 200 carries'],
  ['"abc-br11"', 'W/"abc"', 'W/"abc-br11"', 'a weak identity tag stays weak'],
  ['"abc", "abc-br11"', '"abc"', '"abc-br11"', 'both: the coded one, which the 200 would carry'],
  ['"abc"', '"abc"', '"abc"', 'held identity: identity'],
  ['"old-br11", "abc"', '"abc"', '"abc"', 'a final tag of other content does not count'],
  ['*', '"abc"', '"abc"', 'any: the identity tag'],
];

test('validators: the 304 tag', () => {
  for (const [inm, etag, tag, why] of NOT_MODIFIED) assert.equal(tagFor304(inm, etag, ['br11']), tag, why);
});

test('validators: Vary merged', () => {
  assert.equal(varyWithAcceptEncoding(undefined), 'Accept-Encoding');
  assert.equal(varyWithAcceptEncoding('Origin'), 'Origin, Accept-Encoding');
  assert.equal(varyWithAcceptEncoding('origin, accept-encoding'), 'origin, accept-encoding');
  assert.equal(varyWithAcceptEncoding('*'), '*');
  assert.equal(varyWithAcceptEncoding(['Origin', 'Cookie']), 'Origin, Cookie, Accept-Encoding');
});

test('bad options are refused at creation, naming the option', () => {
  assert.throws(() => createCompressStage({ encodings: [], minSize: 1024 }), /compression\.encodings/);
  assert.throws(() => createCompressStage({ encodings: ['br', 'deflate' as 'br'], minSize: 1024 }), /compression\.encodings: unknown coding "deflate"/);
  assert.throws(() => createCompressStage({ encodings: ['br', 'br'], minSize: 1024 }), /listed twice/);
  assert.throws(() => createCompressStage({ encodings: ['br'], minSize: -1 }), /compression\.minSize/);
  assert.throws(() => createOriginDecode({ maxDecodedSize: 0 }), /compression\.maxDecodedSize/);
  assert.throws(() => validateConfig({ compression: { maxDecodedSize: 0, encodings: ['lzma'] } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.ok(err.problems.some((p) => p.startsWith('compression.maxDecodedSize')), err.message);
    assert.ok(err.problems.some((p) => p.startsWith('compression.encodings')), err.message);
    return true;
  });
  const config = validateConfig({});
  assert.equal(config.compression.maxDecodedSize, 16 * 1024 ** 2);
  assert.equal(config.compression.staticMemory, 32 * 1024 ** 2);
});

test('brotli window: the smallest that holds the body, from 10 to 22 bits', async () => {
  const Z = zlib.constants;
  // A window holds 2^lgwin − 16 bytes.
  assert.deepEqual([0, 1_008, 1_009, 30_131, (1 << 22) - 16, (1 << 22) - 15, 100 << 20].map(brotliWindowFor), [10, 10, 11, 15, 22, 22, 22]);
  // Encoded with it, fast and streamed alike (the ring buffer Brotli allocates is the window's size:
  // 8 MiB for any body over 16 KB at the default window).
  const input = Buffer.from('<li>cache, vary, stale-while-revalidate</li>\n'.repeat(700));
  const expected = zlib.brotliCompressSync(input, { params: { [Z.BROTLI_PARAM_QUALITY]: 2, [Z.BROTLI_PARAM_SIZE_HINT]: input.length, [Z.BROTLI_PARAM_LGWIN]: 15 } });
  assert.deepEqual(await encodeBuffer('br', input, 'fast'), expected);
  const streamed: Buffer[] = [];
  const encoder = createEncoder('br', input.length);
  encoder.on('data', (chunk: Buffer) => streamed.push(chunk));
  encoder.end(input);
  await new Promise((resolve) => encoder.on('end', resolve));
  assert.deepEqual(Buffer.concat(streamed), expected);
});
