import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startOrigin, startOutpost } from '../helpers/outpost.ts';

const run = promisify(execFile);
const curl = spawnSync('curl', ['--version'], { encoding: 'utf8' });
const skip = curl.status !== 0 ? 'curl is not installed' : !/HTTP2/.test(curl.stdout) ? 'curl has no HTTP/2 support' : false;

test('real clients: curl --http2 and --http1.1, and undici, against static and proxied paths', async (t) => {
  const origin = await startOrigin((req, res) => res.end(`proxied ${req.url}`));
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], static: 'public', origin: origin.url }] });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-curl-'));
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, outpost.ca);
  try {
    await t.test('undici over HTTP/1.1', async () => {
      const res = await request(`${outpost.url}/api/x`, { dispatcher: new Agent({ connect: { ca: outpost.ca, servername: 'localhost' } }) });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'proxied /api/x');
    });
    await t.test('curl', { skip }, async () => {
      for (const [flag, version] of [['--http2', '2'], ['--http1.1', '1.1']]) {
        const { stdout } = await run('curl', ['-s', flag, '--cacert', caFile, '--resolve', `localhost:${outpost.httpsPort}:127.0.0.1`,
          '-o', '/dev/null', '-w', '%{http_code} %{http_version} %{content_type}', `https://localhost:${outpost.httpsPort}/`]);
        assert.equal(stdout, `200 ${version} text/html; charset=utf-8`);
        const proxied = await run('curl', ['-s', flag, '--cacert', caFile, '--resolve', `localhost:${outpost.httpsPort}:127.0.0.1`, `https://localhost:${outpost.httpsPort}/api/y?z=1`]);
        assert.equal(proxied.stdout, 'proxied /api/y?z=1');
      }
    });
  } finally {
    await outpost.close();
    await origin.close();
  }
});
