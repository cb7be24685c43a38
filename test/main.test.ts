import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { h2, startOrigin } from './helpers/outpost.ts';

test('outpost start: prints its URLs; SIGTERM lets an in-flight request finish, then exits 0', async () => {
  const origin = await startOrigin((_req, res) => { setTimeout(() => res.end('finished'), 500); });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-main-'));
  const config = join(dir, 'outpost.yaml');
  writeFileSync(config, `listen: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\n`);
  const child = spawn(process.execPath, ['src/main.ts', '-c', config, '--origin', origin.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d; });
  child.stderr.on('data', (d: Buffer) => { output += d; });
  try {
    const deadline = Date.now() + 10_000;
    while (!/listening on https:\/\/127\.0\.0\.1:\d+\//.test(output)) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`did not start: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const url = /listening on (https:\/\/127\.0\.0\.1:\d+)\//.exec(output)![1];
    const ca = (await import('node:fs')).readFileSync(join(dir, 'cert', 'dev-cert.pem'), 'utf8');
    const inFlight = h2(`${url}/slow`, { ca });
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill('SIGTERM');
    const res = await inFlight;
    assert.equal(res.body.toString(), 'finished');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
    assert.match(output, /SIGTERM: finishing in-flight requests/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await origin.close();
  }
});

test('a SIGTERM that comes the moment outpost says it listens drains and exits 0 (one process and the cluster primary)', async () => {
  // A preload that sends the signal from inside console.log, as the line is written: before the
  // fix the handler was installed only after the line (and the admin API's start), so the
  // default action killed the process.
  const signalAtListen = 'const log = console.log; console.log = (...a) => { log(...a); if (String(a[0]).startsWith("outpost: listening on")) process.kill(process.pid, "SIGTERM"); };';
  const preload = `--import=data:text/javascript;base64,${Buffer.from(signalAtListen).toString('base64')}`;
  for (const workers of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-main-'));
    const config = join(dir, 'outpost.yaml');
    writeFileSync(config, `workers: ${workers}\nlisten: { host: 127.0.0.1, https: 0, http: null }\nlog: { access: "off" }\nadmin: { listen: "127.0.0.1:0", token: "main-test-token-0123456789" }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }\nsites: [{ hosts: ["*"], static: ${JSON.stringify(dir)} }]\n`);
    const child = spawn(process.execPath, ['src/main.ts', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: preload } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d; });
    child.stderr.on('data', (d: Buffer) => { output += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code, signal] = await once(child, 'exit');
    clearTimeout(timer);
    assert.deepEqual([code, signal], [0, null], `workers: ${workers}\n${output}`);
    assert.match(output, /SIGTERM: finishing in-flight requests/);
  }
});
