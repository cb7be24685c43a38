import { test } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import type { OutgoingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { createCompressStage } from '../../src/compress/stage.ts';
import { matchesTagList } from '../../src/http/conditional.ts';
import type { Context, Encoding, Reply, StoredVariant, Variants } from '../../src/pipeline/context.ts';
import { fastQuality, highQuality, htmlPage, stageContext as context, until } from './support.ts';

// The compression stage called directly, in front of a fake holder of variants that answers
// If-None-Match the way the cache and static stages do (weakly, against its identity tag). No sockets.

const PAGE = htmlPage(30_000);
const SMALL = Buffer.from('small text, not worth a coding\n'.repeat(10)); // 310 bytes < minSize
const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), Buffer.alloc(8000, 7)]);

/** A holder of one identity body and its encodings, like a cache entry; counts what reaches it. */
function holder(body: Buffer, headers: OutgoingHttpHeaders) {
  const stored = new Map<Encoding, StoredVariant>();
  const seen: Array<string | undefined> = [];
  const puts: StoredVariant[] = [];
  const variants: Variants = {
    identity: body,
    get: (coding) => stored.get(coding),
    put: (coding, encoded, token) => { puts.push({ body: encoded, token }); stored.set(coding, { body: encoded, token }); },
  };
  const handler = async (ctx: Context): Promise<Reply> => {
    const inm = ctx.headers['if-none-match'] as string | undefined;
    seen.push(inm);
    if (inm !== undefined && typeof headers.etag === 'string' && matchesTagList(inm, headers.etag, false)) {
      return { status: 304, headers: { etag: headers.etag, 'cache-control': 'max-age=60' }, body: null, variants };
    }
    return { status: 200, headers: { ...headers, 'content-length': body.length }, body, variants };
  };
  return { stored, seen, puts, handler };
}

const HTML = { 'content-type': 'text/html; charset=utf-8', etag: '"p1"', 'cache-control': 'max-age=60' };
const vary = (reply: Reply) => reply.headers.vary;

test('the fast body and the Brotli 11 body that replaces it have different tags', async () => {
  const compress = createCompressStage({ encodings: ['br', 'zstd', 'gzip'], minSize: 1024 });
  const page = holder(PAGE, HTML);
  const br = { 'accept-encoding': 'br' };

  // first request: encoded at fast quality, kept with its token, tagged with it
  const first = await compress(context(br), page.handler);
  assert.equal(first.headers.etag, '"p1-br2"');
  assert.deepEqual(first.body, fastQuality('br', PAGE));
  assert.equal(page.stored.get('br')?.token, 'br2');

  // served from the holder twice: popular, so the background upgrade replaces it with Brotli 11 under its own token
  for (let i = 0; i < 2; i++) assert.equal((await compress(context(br), page.handler)).headers.etag, '"p1-br2"');
  await until(async () => page.stored.get('br')?.token === 'br11', 'the Brotli 11 variant', 5000);
  const upgraded = await compress(context(br), page.handler);
  assert.equal(upgraded.headers.etag, '"p1-br11"');
  assert.deepEqual(upgraded.body, highQuality('br', PAGE));
  assert.notDeepEqual(upgraded.body, first.body);

  // the final tag: widened for the holder, which answers 304; the 304 names the client's tag
  const held = await compress(context({ ...br, 'if-none-match': '"p1-br11"' }), page.handler);
  assert.equal(held.status, 304);
  assert.equal(held.headers.etag, '"p1-br11"');
  assert.match(String(vary(held)), /Accept-Encoding/);
  assert.equal(page.seen.at(-1), '"p1-br11", "p1"');

  // the fast tag: those bytes are gone, so it is not widened and the 200 carries the new tag
  const stale = await compress(context({ ...br, 'if-none-match': '"p1-br2"' }), page.handler);
  assert.equal(page.seen.at(-1), '"p1-br2"', 'passed on as it is');
  assert.equal(stale.status, 200);
  assert.equal(stale.headers.etag, '"p1-br11"');
  assert.deepEqual(stale.body, highQuality('br', PAGE));

  // the level-less tag of earlier versions named both bodies: a 200
  assert.equal((await compress(context({ ...br, 'if-none-match': '"p1-br"' }), page.handler)).status, 200);
  // the final tag of another coding than the client gets now: a 200 in the coding it gets
  const gzip = await compress(context({ 'accept-encoding': 'gzip', 'if-none-match': '"p1-br11"' }), page.handler);
  assert.equal(gzip.status, 200);
  assert.equal(gzip.headers['content-encoding'], 'gzip');
  assert.equal(gzip.headers.etag, '"p1-gzip4"');
  // the identity tag: a 304 naming it, as before
  const identity = await compress(context({ ...br, 'if-none-match': '"p1"' }), page.handler);
  assert.equal(identity.status, 304);
  assert.equal(identity.headers.etag, '"p1"');

  // HEAD: the stored variant's tag and length
  const head = await compress(context(br, 'HEAD'), page.handler);
  assert.equal(head.headers.etag, '"p1-br11"');
  assert.equal(head.headers['content-length'], highQuality('br', PAGE).length);
});

test('upgrades: only a kept fast variant that proves popular (its second hit) is re-encoded at Brotli 11, never on first store', async () => {
  const compress = createCompressStage({ encodings: ['br'], minSize: 1024 });
  const br = { 'accept-encoding': 'br' };
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
  const tokens = (h: ReturnType<typeof holder>) => h.puts.map((p) => p.token);

  // seen once: encoded at Brotli 2 and kept; nothing more, however long it stays
  const once = holder(PAGE, { ...HTML, etag: '"once"' });
  assert.equal((await compress(context(br), once.handler)).headers.etag, '"once-br2"');
  await settle();
  assert.deepEqual(tokens(once), ['br2'], 'no upgrade for an object seen once');

  // popular: the first hit of the kept body is not yet enough, the second is
  const popular = holder(PAGE, { ...HTML, etag: '"popular"' });
  await compress(context(br), popular.handler);
  assert.equal((await compress(context(br), popular.handler)).headers.etag, '"popular-br2"');
  await settle();
  assert.deepEqual(tokens(popular), ['br2'], 'one hit: not yet');
  const second = await compress(context(br), popular.handler);
  assert.equal(second.headers.etag, '"popular-br2"', 'the second hit still gets the fast bytes');
  await until(async () => popular.puts.length === 2, 'the Brotli 11 variant', 5000);
  assert.deepEqual(tokens(popular), ['br2', 'br11']);
  assert.deepEqual(popular.stored.get('br')?.body, highQuality('br', PAGE));
  const upgraded = await compress(context(br), popular.handler);
  assert.equal(upgraded.headers.etag, '"popular-br11"');
  assert.deepEqual(upgraded.body, highQuality('br', PAGE));
  await settle();
  assert.deepEqual(tokens(popular), ['br2', 'br11'], 'upgraded once');
});

test('a fast tag the holder still keeps is answered 304 by the stage, exactly', async () => {
  const compress = createCompressStage({ encodings: ['br'], minSize: 1024 });
  const page = holder(PAGE, HTML);
  page.stored.set('br', { body: fastQuality('br', PAGE), token: 'br2' });
  const res = await compress(context({ 'accept-encoding': 'br', 'if-none-match': 'W/"p1-br2"' }), page.handler);
  assert.equal(res.status, 304);
  assert.equal(res.headers.etag, '"p1-br2"');
  assert.equal(res.body, null);
});

test('a stored variant is tagged with its own token; a token an ETag cannot carry is refused', async () => {
  const compress = createCompressStage({ encodings: ['br'], minSize: 1024 });
  const page = holder(PAGE, HTML);
  const sibling = fastQuality('br', PAGE);
  page.stored.set('br', { body: sibling, token: 'br.1f4.18c3f0e2a41' });
  const res = await compress(context({ 'accept-encoding': 'br' }), page.handler);
  assert.equal(res.headers.etag, '"p1-br.1f4.18c3f0e2a41"');
  assert.equal(res.body, sibling);
  const again = await compress(context({ 'accept-encoding': 'br', 'if-none-match': '"p1-br.1f4.18c3f0e2a41"' }), page.handler);
  assert.equal(again.status, 304, 'the exact sibling tag');
  assert.equal(page.seen.at(-1), '"p1-br.1f4.18c3f0e2a41"', 'not widened: a sibling can be rewritten');

  const errors: unknown[] = [];
  const onError = (event: unknown) => { errors.push(event); };
  diagnostics.subscribe('outpost:error', onError);
  try {
    page.stored.set('br', { body: sibling, token: undefined as unknown as string });
    const fallback = await compress(context({ 'accept-encoding': 'br' }), page.handler);
    assert.equal(fallback.headers.etag, '"p1-br2"', 'made here at fast quality instead');
    assert.deepEqual(fallback.body, fastQuality('br', PAGE));
    assert.equal(errors.length, 1);
  } finally {
    diagnostics.unsubscribe('outpost:error', onError);
  }
});

test('a streamed body carries the fast token, and with a known length the one-shot bytes', async () => {
  const compress = createCompressStage({ encodings: ['br', 'zstd', 'gzip'], minSize: 1024 });
  const chunks = Array.from({ length: Math.ceil(PAGE.length / 4096) }, (_, i) => PAGE.subarray(i * 4096, (i + 1) * 4096));
  const streamed = async (coding: Encoding): Promise<Reply> => compress(context({ 'accept-encoding': coding }),
    async () => ({ status: 200, headers: { ...HTML, 'content-length': PAGE.length }, body: Readable.from(chunks) }));
  for (const coding of ['br', 'gzip'] as const) {
    const res = await streamed(coding);
    assert.equal(res.headers.etag, `"p1-${coding === 'br' ? 'br2' : 'gzip4'}"`);
    assert.equal(res.headers['content-length'], undefined);
    const body = Buffer.concat(await (res.body as Readable).toArray());
    assert.deepEqual(body, fastQuality(coding, PAGE), `${coding}: the bytes its token names`);
  }
  assert.equal((await streamed('zstd')).headers.etag, '"p1-zstd3"');
});

// Vary: Accept-Encoding only where a coded representation could be chosen.
// [what, Accept-Encoding, headers, body, Vary expected, coding expected]
const VARY: Array<[string, string | undefined, OutgoingHttpHeaders, Buffer | null, boolean, string | undefined]> = [
  ['big, no Accept-Encoding: another client would get br', undefined, HTML, PAGE, true, undefined],
  ['big, br', 'br', HTML, PAGE, true, 'br'],
  ['small: never coded', 'br', { 'content-type': 'text/plain' }, SMALL, false, undefined],
  ['small, no Accept-Encoding', undefined, { 'content-type': 'text/plain' }, SMALL, false, undefined],
  ['small, identity refused: coded, so it varies', 'gzip, identity;q=0', { 'content-type': 'text/plain' }, SMALL, true, 'gzip'],
  ['image/png: not a type we code', 'br', { 'content-type': 'image/png' }, PNG, false, undefined],
  ['size unknown (HEAD without a length)', 'br', { 'content-type': 'text/html' }, null, true, 'br'],
  ['small by Content-Length (HEAD)', 'br', { 'content-type': 'text/html', 'content-length': '300' }, null, false, undefined],
];

test('Vary: Accept-Encoding where a coded representation could be chosen', async () => {
  const compress = createCompressStage({ encodings: ['br', 'zstd', 'gzip'], minSize: 1024 });
  for (const [what, accept, headers, body, varies, coding] of VARY) {
    const res = await compress(context(accept === undefined ? {} : { 'accept-encoding': accept }, body === null ? 'HEAD' : 'GET'),
      async () => ({ status: 200, headers: { ...headers }, body }));
    assert.equal(res.headers.vary !== undefined, varies, what);
    assert.equal(res.headers['content-encoding'], coding, what);
  }
  // nothing acceptable: the 406 depends on Accept-Encoding alone
  const refused = await compress(context({ 'accept-encoding': 'identity;q=0, deflate' }),
    async () => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: SMALL }));
  assert.equal(refused.status, 406);
  assert.equal(refused.headers.vary, 'Accept-Encoding');
});

test('Vary on a 304: as the 200 would have it, where the 304 shows it', async () => {
  const compress = createCompressStage({ encodings: ['br', 'zstd', 'gzip'], minSize: 1024 });
  const inm = { 'accept-encoding': 'br', 'if-none-match': '"s"' };
  const notModified = (extra: Partial<Reply>) => async (): Promise<Reply> =>
    ({ status: 304, headers: { etag: '"s"', ...extra.headers }, body: null, variants: extra.variants });
  const small = await compress(context(inm), notModified({ variants: { identity: SMALL, get: () => undefined } }));
  assert.equal(small.headers.vary, undefined, 'the holder shows a small body: no Vary, like its 200');
  const big = await compress(context(inm), notModified({ variants: { identity: PAGE, get: () => undefined } }));
  assert.equal(big.headers.vary, 'Accept-Encoding');
  const unknown = await compress(context(inm), notModified({}));
  assert.equal(unknown.headers.vary, 'Accept-Encoding', 'size and type unknown: it may have been coded');
  const image = await compress(context(inm), notModified({ headers: { 'content-type': 'image/png' } }));
  assert.equal(image.headers.vary, undefined);
});
