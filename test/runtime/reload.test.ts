import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { generate } from 'selfsigned';
import { h2, h2request, h2session, startOrigin } from '../helpers/outpost.ts';
import { spawnOutpost } from '../helpers/process.ts';
import { validateConfig } from '../../src/config/load.ts';
import { startInstance } from '../../src/runtime/instance.ts';

const TOKEN = 'reload-test-token-0123456789';

for (const workers of [1, 2]) test(`SIGHUP reloads (workers: ${workers}): a slow request in flight finishes on the old config, the same connection then gets the new one; a bad config is refused and the old one keeps serving; POST /reload answers the problems; SIGUSR1 reopens the log`, async () => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow body'), 1500);
    else res.end('fast body');
  });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-reload-'));
  const file = join(dir, 'outpost.yaml');
  const write = (extra: string) => writeFileSync(file, [
    `workers: ${workers}`,
    'listen: { host: 127.0.0.1, https: 0, http: null }',
    `log: { access: ${JSON.stringify(join(dir, 'access.log'))}, format: json }`,
    `tls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }`,
    `admin: { listen: "127.0.0.1:0", token: ${TOKEN} }`,
    `sites: [{ hosts: ["*"], origin: ${JSON.stringify(origin.url)}, cache: { enabled: false } }]`,
    extra, '',
  ].join('\n'));
  write('');
  const outpost = spawnOutpost(['-c', file]);
  try {
    const url = (await outpost.waitFor(/listening on (https:\/\/127\.0\.0\.1:\d+)\//))[1];
    const admin = (await outpost.waitFor(/admin API on (http:\/\/127\.0\.0\.1:\d+)\//))[1];
    const ca = readFileSync(join(dir, 'cert', 'dev-cert.pem'), 'utf8');
    const session = await h2session(url, { ca });

    // A slow request is in flight on the old config (no HSTS) when SIGHUP arrives.
    const slow = h2request(session, '/slow');
    while (origin.seen.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    write('hsts: { maxAge: 60s }');
    outpost.child.kill('SIGHUP');
    await outpost.waitFor(/configuration reloaded \(SIGHUP\)/);

    // A new request on the same, still open, connection: the new config.
    const fresh = await h2request(session, '/fast');
    assert.equal(fresh.status, 200);
    assert.equal(fresh.headers['strict-transport-security'], 'max-age=60');
    // The slow one finishes, whole, on the config it started with.
    const finished = await slow;
    assert.equal(finished.status, 200);
    assert.equal(finished.body.toString(), 'slow body');
    assert.equal(finished.headers['strict-transport-security'], undefined);
    assert.ok(!session.destroyed && !session.closed, 'the connection stays open across the reload');

    // A config that fails validation: refused, logged, the previous one keeps serving.
    write('hsts: { maxAge: 120s }\nlimits: { maxBodySize: "lots" }');
    outpost.child.kill('SIGHUP');
    await outpost.waitFor(/reload \(SIGHUP\) refused, the previous configuration keeps serving.*\n\s+limits\.maxBodySize: expected a size/);
    assert.equal((await h2request(session, '/fast')).headers['strict-transport-security'], 'max-age=60');

    // POST /reload says why.
    const auth = { authorization: `Bearer ${TOKEN}` };
    const refused = await fetch(`${admin}/reload`, { method: 'POST', headers: auth });
    assert.equal(refused.status, 422);
    assert.deepEqual(await refused.json(), { reloaded: false, problems: ['limits.maxBodySize: expected a size such as 16KB or 1MB, got "lots"'] });
    write('hsts: { maxAge: 120s }\nlimits: { maxBodySize: 1MB }');
    const applied = await fetch(`${admin}/reload`, { method: 'POST', headers: auth });
    assert.equal(applied.status, 200);
    assert.deepEqual(await applied.json(), { reloaded: true, warnings: ['limits.maxBodySize changed: it takes effect on restart'], restartNeeded: ['limits.maxBodySize'] });
    assert.equal((await h2request(session, '/fast')).headers['strict-transport-security'], 'max-age=120');

    // SIGUSR1 after logrotate moved the file: later entries go to a new file at the configured path.
    const log = join(dir, 'access.log');
    const lines = async (path: string, pattern: RegExp) => {
      for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 20))) {
        if (existsSync(path) && pattern.test(readFileSync(path, 'utf8'))) return;
      }
      assert.fail(`no ${pattern} in ${path}`);
    };
    await lines(log, /"path":"\/slow".*"bytes":9,.*"outcome":"ok"/);
    renameSync(log, `${log}.1`);
    outpost.child.kill('SIGUSR1');
    await outpost.waitFor(/SIGUSR1: access log reopened/);
    await h2request(session, '/after-rotate');
    await lines(log, /"path":"\/after-rotate"/);
    assert.doesNotMatch(readFileSync(`${log}.1`, 'utf8'), /after-rotate/);
    session.close();

    assert.equal(await outpost.stop(), 0, outpost.output());
    assert.doesNotMatch(outpost.output(), /\n\s+at /, 'no stack trace');
  } finally {
    await outpost.stop();
    await origin.close();
  }
});

test('reload: certificates replaced on disk are served to new handshakes; the cache survives a reload that keeps the cache section', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-reload-tls-'));
  const make = async (name: string) => {
    const pems = await generate([{ name: 'commonName', value: name }], {
      keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
    });
    writeFileSync(join(dir, `${name}.pem`), pems.cert);
    writeFileSync(join(dir, `${name}.key`), pems.private);
    return pems.cert;
  };
  const first = await make('first');
  const second = await make('second');
  copyFileSync(join(dir, 'first.pem'), join(dir, 'live.pem'));
  copyFileSync(join(dir, 'first.key'), join(dir, 'live.key'));
  let served = 0;
  const origin = await startOrigin((_req, res) => { served++; res.setHeader('cache-control', 'max-age=600'); res.end('cached'); });
  const raw = {
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { certificates: [{ hosts: ['localhost'], cert: join(dir, 'live.pem'), key: join(dir, 'live.key') }] },
    sites: [{ hosts: ['*'], origin: origin.url }],
  };
  const instance = await startInstance(validateConfig(raw));
  const peer = () => new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: instance.running.httpsPort, servername: 'localhost', rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()!.fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
  });
  try {
    assert.equal(await peer(), new X509Certificate(first).fingerprint256);
    assert.equal((await h2(`https://localhost:${instance.running.httpsPort}/a`, { ca: first })).body.toString(), 'cached');
    // Same paths, new files: a reload picks them up.
    copyFileSync(join(dir, 'second.pem'), join(dir, 'live.pem'));
    copyFileSync(join(dir, 'second.key'), join(dir, 'live.key'));
    const outcome = await instance.reload(validateConfig({ ...raw, hsts: { maxAge: '1m' } }));
    assert.deepEqual(outcome, { restartNeeded: [], cacheKept: true });
    assert.equal(await peer(), new X509Certificate(second).fingerprint256);
    // Served from the cache the previous app filled.
    const again = await h2(`https://localhost:${instance.running.httpsPort}/a`, { ca: second });
    assert.match(String(again.headers['cache-status']), /hit/);
    assert.equal(served, 1);
    // A new cache section starts a new cache.
    assert.equal((await instance.reload(validateConfig({ ...raw, cache: { maxSize: '64MB' } }))).cacheKept, false);
    await h2(`https://localhost:${instance.running.httpsPort}/a`, { ca: second });
    assert.equal(served, 2);
  } finally {
    await instance.close();
    await origin.close();
  }
});
