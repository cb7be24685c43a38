import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type { ClientHttp2Session } from 'node:http2';
import v8 from 'node:v8';
import vm from 'node:vm';
import zlib from 'node:zlib';
import { h2session, startOrigin, startOutpost, type RunningOutpost, type TestOrigin } from '../helpers/outpost.ts';
import { htmlPage } from './support.ts';

// 200 MB through the proxy chain, in its own process so the memory reading is this test's alone:
// the origin gzips it on the fly, Outpost decodes and re-encodes it as br, the client decodes it.
// Nothing may hold the body: backpressure all the way, memory flat.
const MB = 1024 * 1024;
const BLOCK = htmlPage(MB);

let origin: TestOrigin;
let outpost: RunningOutpost;
/** SHA-256 of what the origin sent, by request path. */
const sent = new Map<string, Promise<string>>();

/** Writes `total` bytes of text (each 1 MB block stamped with its number) into `out`, with backpressure. */
function writeText(out: Writable, total: number): Promise<string> {
  const hash = createHash('sha256');
  let offset = 0;
  let block = 0;
  return new Promise((resolve) => {
    const pump = () => {
      while (offset < total) {
        const chunk = Buffer.from(BLOCK.subarray(0, Math.min(BLOCK.length, total - offset)));
        chunk.write(`<!-- block ${block++} -->`, 0);
        offset += chunk.length;
        hash.update(chunk);
        if (!out.write(chunk)) return void out.once('drain', pump);
      }
      out.end();
      resolve(hash.digest('hex'));
    };
    pump();
  });
}

before(async () => {
  origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip', 'cache-control': 'no-store' });
    const gzip = zlib.createGzip({ level: 1 });
    gzip.pipe(res);
    sent.set(req.url!, writeText(gzip, Number(new URL(req.url!, 'http://x').searchParams.get('mb')) * MB));
  });
  // Transcoding a body this large takes an explicit maxDecodedSize: the default (16 MB) refuses more.
  outpost = await startOutpost({ compression: { maxDecodedSize: '1GB' }, sites: [{ hosts: ['*'], origin: origin.url }] });
});

after(async () => {
  await outpost?.close();
  await origin?.close();
});

/** Fetches `path` as br, decodes it as it arrives; the byte count and SHA-256 of the decoded body. */
async function transfer(session: ClientHttp2Session, path: string): Promise<{ bytes: number; digest: string }> {
  const stream = session.request({ ':path': path, 'accept-encoding': 'br' });
  const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
    stream.once('response', resolve);
    stream.once('error', reject);
  });
  assert.equal(headers[':status'], 200);
  assert.equal(headers['content-encoding'], 'br');
  assert.equal(headers['content-length'], undefined);
  const received = createHash('sha256');
  let bytes = 0;
  await pipeline(stream, zlib.createBrotliDecompress(), new Writable({
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      received.update(chunk);
      callback();
    },
  }));
  return { bytes, digest: received.digest('hex') };
}

/**
 * Live memory: the JS heap plus memory outside it that V8 is told about (Buffers, and zlib's
 * codec state, which node:zlib reports), after a full collection so garbage does not count.
 * RSS is no measure here: freed buffers return to the OS late, so it jitters by tens of MB.
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const live = () => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};

test('HTTP/2: a 200 MB uncached body is transcoded gzip → br as a stream, in flat memory', async () => {
  const session = await h2session(outpost.url);
  const baseline = live();
  let peak = baseline;
  const sampler = setInterval(() => { peak = Math.max(peak, live()); }, 50);
  try {
    const big = await transfer(session, '/big?mb=200');
    assert.equal(big.bytes, 200 * MB);
    assert.equal(big.digest, await sent.get('/big?mb=200'), 'the exact bytes the origin sent');
  } finally {
    clearInterval(sampler);
    session.close();
  }
  const grown = (peak - baseline) / MB;
  // Origin, Outpost and client all live in this process: codec windows, TLS and HTTP/2 buffers
  // for three hops take some MB; a buffered body would hold 200 MB.
  assert.ok(grown < 48, `live memory grew by ${grown.toFixed(1)} MB during the transfer`);
});
