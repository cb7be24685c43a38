import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { createCompressStage } from '../../src/compress/stage.ts';
import type { Reply } from '../../src/pipeline/context.ts';
import { decode, htmlPage, stageContext as context } from './support.ts';

// V8's own answer on an object's layout: `%HasFastProperties` (natives syntax, allowed for the
// functions compiled after the flag is set).
v8.setFlagsFromString('--allow-natives-syntax');
const hasFastProperties = new Function('object', 'return %HasFastProperties(object)') as (object: object) => boolean;

const PAGE = htmlPage(30_000);

test('a coded reply leaves the identity-only fields out of its header object without turning it into a dictionary', async () => {
  const compress = createCompressStage({ encodings: ['br'], minSize: 1024 });
  // Content-Length in the middle, as origins send it: deleting it from a copy made the copy a
  // dictionary (slower for every reader after, Node's serialization of the head among them).
  const origin = async (): Promise<Reply> => ({
    status: 200,
    headers: { 'content-type': 'text/html', 'content-length': String(PAGE.length), 'accept-ranges': 'bytes', digest: 'sha-256=x', etag: '"p1"', 'cache-control': 'max-age=60' },
    body: PAGE,
  });
  const reply = await compress(context({ 'accept-encoding': 'br' }), origin);
  assert.equal(reply.headers['content-encoding'], 'br');
  assert.ok(Buffer.isBuffer(reply.body));
  assert.equal(reply.headers['content-length'], reply.body.length);
  assert.equal(reply.headers['accept-ranges'], undefined);
  assert.equal(reply.headers.digest, undefined);
  assert.deepEqual(decode('br', reply.body), PAGE);
  assert.equal(hasFastProperties(reply.headers), true);
});
