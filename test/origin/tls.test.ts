import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { h1, h2, startOutpost } from '../helpers/outpost.ts';
import { makeCa, makeLeaf, textFile, type PemFiles } from '../helpers/pki.ts';
import { manualTimers } from '../helpers/timers.ts';
import { configWarnings, validateConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import diagnostics from 'node:diagnostics_channel';
import { formatErrorLine } from '../../src/observability/log.ts';
import type { ErrorEvent } from '../../src/observability/channels.ts';

/**
 * TLS towards the origin: a private CA, the SNI name, mutual TLS, verification on by default. The
 * origins are real HTTPS servers with certificates from a CA made at test start.
 */

let ca: PemFiles;
let clientCa: PemFiles;
let edge: PemFiles;
let origin: Server;
let mtlsOrigin: Server;
let originUrl: string;
let mtlsUrl: string;

/** Answers what the TLS layer saw: the SNI name and the client certificate's CN; for a POST, the body's size and digest. */
function describe(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) {
  const socket = req.socket as TLSSocket;
  if (req.method === 'POST') {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => { bytes += chunk.length; hash.update(chunk); });
    req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ servername: socket.servername, client: socket.getPeerCertificate()?.subject?.CN ?? null, path: req.url }));
}

const listen = (server: Server) => new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`https://127.0.0.1:${(server.address() as { port: number }).port}`)));

before(async () => {
  ca = await makeCa('Outpost Test Origin CA');
  clientCa = await makeCa('Outpost Test Edge CA');
  const server = await makeLeaf(ca, 'origin.internal', { dns: ['origin.internal'] });
  edge = await makeLeaf(clientCa, 'edge-1', { client: true });
  origin = createServer({ cert: server.cert, key: server.key }, describe);
  mtlsOrigin = createServer({ cert: server.cert, key: server.key, requestCert: true, rejectUnauthorized: true, ca: clientCa.cert }, describe);
  originUrl = await listen(origin);
  mtlsUrl = await listen(mtlsOrigin);
});

after(() => {
  origin.closeAllConnections();
  origin.close();
  mtlsOrigin.closeAllConnections();
  mtlsOrigin.close();
});

const site = (upstream: unknown, extra: Record<string, unknown> = {}) =>
  ({ sites: [{ hosts: ['*'], cache: { enabled: false }, origin: { upstreams: [upstream], ...extra } }] });

test('an HTTPS origin with its own CA: checked against that CA and the configured name (sent as SNI), by requests and health probes', async () => {
  const timers = manualTimers();
  const outpost = await startOutpost({
    admin: { token: 'tls-test-admin-token-012345' },
    ...site({ url: originUrl, tls: { ca: ca.certFile, servername: 'origin.internal' } }, { healthCheck: { path: '/health', interval: '1s' } }),
  }, { timers, random: () => 0.5 });
  try {
    for (const send of [h1, h2]) {
      const res = await send(`${outpost.url}/a`);
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body.toString()), { servername: 'origin.internal', client: null, path: '/a' });
    }
    timers.advance(500);
    await outpost.probesSettled();
    const stats = await (await fetch(`${outpost.adminUrl}/stats`, { headers: { authorization: 'Bearer tls-test-admin-token-012345' } })).json() as any;
    assert.equal(stats.origins['sites[0]'].upstreams[0].lastCheck, 'status 200');
  } finally {
    await outpost.close();
  }
});

test('a 4 MiB upload reaches an HTTPS origin whole, from either protocol', async () => {
  // A TLS socket keeps Node's 64 KB write buffer (tls.connect takes no buffer sizes), smaller than a
  // batch (upload-writes.ts): each batch goes when the socket asks for a drain.
  const outpost = await startOutpost(site({ url: originUrl, tls: { ca: ca.certFile, servername: 'origin.internal' } }));
  const body = randomBytes(4 * 1024 * 1024);
  const sha256 = createHash('sha256').update(body).digest('hex');
  try {
    for (const send of [h1, h2]) {
      const res = await send(`${outpost.url}/upload`, { method: 'POST', body });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body.toString()), { bytes: body.length, sha256 });
    }
  } finally {
    await outpost.close();
  }
});

test('verification is on by default: an unknown CA or a certificate for another name is a 502; the log names why', async () => {
  const unknownCa = await startOutpost(site(originUrl));
  const otherName = await startOutpost(site({ url: originUrl, tls: { ca: ca.certFile, servername: 'elsewhere.internal' } }));
  const logged: string[] = [];
  const onError = (event: unknown) => logged.push(formatErrorLine(event as ErrorEvent));
  diagnostics.subscribe('outpost:error', onError);
  try {
    const refused = await h2(`${unknownCa.url}/a`);
    assert.equal(refused.status, 502);
    assert.doesNotMatch(refused.body.toString(), /UNABLE_TO_VERIFY|127\.0\.0\.1/, 'the client is told what happened in general terms only');
    assert.ok(logged.some((line) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE/.test(line)), 'the log names why');
    const wrong = await h2(`${otherName.url}/a`);
    assert.equal(wrong.status, 502);
    assert.ok(logged.some((line) => /ERR_TLS_CERT_ALTNAME_INVALID/.test(line)), 'the log names why');
  } finally {
    diagnostics.unsubscribe('outpost:error', onError);
    await unknownCa.close();
    await otherName.close();
  }
});

test('verify: false accepts any certificate, only when asked, with a warning', async () => {
  const raw = site({ url: originUrl, tls: { verify: false } });
  const outpost = await startOutpost(raw);
  try {
    assert.equal((await h2(`${outpost.url}/a`)).status, 200);
  } finally {
    await outpost.close();
  }
  assert.deepEqual(configWarnings(validateConfig(raw)), [
    `sites[0].origin: upstream ${originUrl}: tls.verify is false: its certificate is not checked, anyone on the path can impersonate it`,
  ]);
  assert.deepEqual(configWarnings(validateConfig(site({ url: originUrl, tls: { ca: ca.certFile } }))), []);
});

test('mutual TLS: the origin sees our client certificate; without one its handshake fails (502)', async () => {
  const withCert = await startOutpost(site({ url: mtlsUrl, tls: { ca: ca.certFile, servername: 'origin.internal', cert: edge.certFile, key: edge.keyFile } }));
  const without = await startOutpost(site({ url: mtlsUrl, tls: { ca: ca.certFile, servername: 'origin.internal' } }));
  try {
    const res = await h2(`${withCert.url}/m`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body.toString()).client, 'edge-1');
    assert.equal((await h2(`${without.url}/m`)).status, 502);
  } finally {
    await withCert.close();
    await without.close();
  }
});

test('outpost check: TLS files that are missing, not certificates, or a key for another certificate are named', async () => {
  const other = await makeLeaf(clientCa, 'other', { client: true });
  const problems = (tls: Record<string, unknown>) => {
    try {
      validateConfig(site({ url: originUrl, tls }));
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems;
    }
    return [];
  };
  const where = `sites[0].origin: upstream ${originUrl}: tls`;
  assert.deepEqual(problems({ ca: '/no/such/ca.pem' }), [`${where}.ca: cannot read "/no/such/ca.pem": ENOENT`]);
  const notPem = textFile('not-a-cert.pem', 'hello\n');
  assert.deepEqual(problems({ ca: notPem }), [`${where}.ca: no PEM certificate in ${JSON.stringify(notPem)}`]);
  assert.deepEqual(problems({ cert: edge.certFile, key: other.keyFile }), [`${where}.key: does not match ${JSON.stringify(edge.certFile)}`]);
  assert.deepEqual(problems({ cert: edge.certFile }), ['sites[0].origin.upstreams[0].tls.key: expected both cert and key (mutual TLS), or neither']);
  assert.deepEqual(problems({ ca: ca.certFile, cert: edge.certFile, key: edge.keyFile }), []);
  // tls on an http:// upstream makes no sense
  assert.throws(() => validateConfig(site({ url: 'http://127.0.0.1:1', tls: { verify: false } })), /upstreams\[0\]\.tls: only for an https:\/\/ upstream/);
});

test('outpost check prints the verify: false warning and still succeeds', () => {
  const file = textFile('verify-off.yaml', `sites:\n  - origin: { upstreams: [{ url: "${originUrl}", tls: { verify: false } }] }\n`);
  const run = spawnSync(process.execPath, ['src/main.ts', 'check', '-c', file], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /warning: sites\[0\]\.origin: upstream https:\/\/127\.0\.0\.1:\d+: tls\.verify is false/);
});
