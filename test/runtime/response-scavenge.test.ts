import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { h1 } from '../helpers/outpost.ts';
import { spawnOutpost } from '../helpers/process.ts';
import { SERVING_FLAGS } from '../../src/runtime/node-flags.ts';

/**
 * Large response bodies pass through in fresh Buffers (a file read stream's chunks, an origin's
 * socket reads on the proxy, a temp file's reads). Before src/runtime/body-scavenge.ts counted
 * them (it counted request bodies only), V8 reached its external-memory limit every ~15-20 MiB and
 * ran a full mark-compact for buffers that were already garbage: 8-10 for four 32 MiB responses,
 * 0-1 once they were counted (--trace-gc of an Outpost started with `npm start`'s flags).
 *
 * What is asserted is the mechanism: a young collection asked for (`gc({ type: 'minor' })`, which
 * --trace-gc reports as "testing") every 8 MiB of response body, on both paths. V8 answers such a
 * request with a full collection instead when its incremental marking is ready to finish ("testing;
 * Incremental marking forced finalization", Heap::SelectGarbageCollector): on a busy machine 3 of
 * the 16 asks came out that way in one run, so both kinds of line count. The full
 * collections it saves are a measure of the machine as much as of the code: beside two busy loops
 * (the test runner's other files can be one) V8's own old-space marking still came 3-4 times per
 * four responses in one run of five, and without the scavenges 2-6 with the same flags, so their
 * count belongs to the bench (the large-body rows' CPU per response), not to a test. The proxied
 * route has no temp file, so that the origin's reads are what is counted.
 */
test('a 32 MiB file, and a 32 MiB pass-through response, each sent four times, ask for a young collection every 8 MiB of body', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-young-'));
  const size = 32 * 1024 * 1024;
  const body = randomBytes(size);
  writeFileSync(join(dir, 'big.bin'), body);
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'content-length': size });
    res.end(body);
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  t.after(() => origin.close());
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, [
    'workers: 1',
    'listen: { host: 127.0.0.1, https: 0, http: null }',
    'log: { access: "off" }',
    'admin: { listen: null }',
    `tls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }`,
    `sites: [{ hosts: ["*"], static: ${JSON.stringify(dir)}, routes: [{ path: /o/, origin: "http://127.0.0.1:${(origin.address() as AddressInfo).port}", proxy: { maxTempFileSize: 0 } }] }]`,
    '',
  ].join('\n'));
  const outpost = spawnOutpost(['-c', config], {}, 'src/main.ts', [...SERVING_FLAGS, '--trace-gc']);
  t.after(async () => {
    await outpost.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const base = (await outpost.waitFor(/listening on (https:\S+?)\/?(\s|$)/, 30_000))[1];
  const ca = readFileSync(join(dir, 'cert', 'dev-cert.pem'), 'utf8');
  // 4 x 32 MiB: a scavenge per 8 MiB is 16 (the count carries less than 8 MiB over from the warm-up).
  const asked = (from: number) => outpost.output().slice(from).split('\n').filter((line) => /\b(Scavenge|Mark-Compact)\b.*\btesting\b/.test(line)).length;
  for (const path of ['/big.bin', '/o/big']) {
    assert.equal((await h1(`${base}${path}`, { ca })).body.length, size); // warm: code compiled, pools made
    const from = outpost.output().length;
    for (let i = 0; i < 4; i++) assert.equal((await h1(`${base}${path}`, { ca })).body.length, size);
    const scavenges = asked(from);
    assert.ok(scavenges >= 15 && scavenges <= 17, `${path}: ${scavenges} young collections asked for 128 MiB of body (16 expected)`);
  }
});
