import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { checkCertificates, checkConfigData, checkLogFile, checkPorts, checkSqliteStore, checkTempPaths } from '../../src/config/check.ts';
import { DatabaseSync } from 'node:sqlite';
import { validateConfig } from '../../src/config/load.ts';

const dir = mkdtempSync(join(tmpdir(), 'outpost-check-'));
const DAY = 86_400_000;

/** A self-signed certificate for these names, written to dir; answers the two file paths. */
async function certificate(name: string, hosts: string[], days = 365): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: hosts[0] }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256', notAfterDate: new Date(Date.now() + days * DAY),
    extensions: [{ name: 'subjectAltName', altNames: hosts.map((value) => ({ type: 2, value })) }],
  });
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private);
  return { cert, key };
}

const run = (...args: string[]) => spawnSync(process.execPath, ['src/main.ts', ...args], { encoding: 'utf8', timeout: 20_000 });

test('certificates: a good pair passes; a key from another pair, a key given as the certificate and a certificate given as the key are errors', async () => {
  const good = await certificate('good', ['example.com', '*.example.com']);
  const other = await certificate('other', ['other.test']);
  const config = (certificates: unknown[], sites: unknown[] = [{ hosts: ['example.com'], static: 'public' }]) =>
    validateConfig({ tls: { certificates }, sites });
  assert.deepEqual(checkCertificates(config([{ hosts: ['example.com'], ...good }])), { errors: [], warnings: [] });

  const report = checkCertificates(config([
    { hosts: ['example.com'], cert: good.cert, key: other.key },
    { hosts: ['a.test'], cert: good.key, key: good.key },
    { hosts: ['b.test'], cert: good.cert, key: good.cert },
  ], [{ hosts: ['*'], static: 'public' }]));
  assert.deepEqual(report.errors.map((e) => e.replaceAll(dir, 'DIR')), [
    `tls.certificates[0].key: "DIR/other.key" does not belong to the certificate in "DIR/good.pem"`,
    `tls.certificates[1].cert: "DIR/good.key" holds a private key, not a certificate`,
    `tls.certificates[2].key: "DIR/good.pem" holds a certificate, not a private key`,
    `tls.certificates[2].hosts: "b.test" is not among the certificate's names (DNS:example.com, DNS:*.example.com)`,
  ]);
});

test('certificates: expired and soon-expiring are warnings, with the clock injected', async () => {
  const pair = await certificate('expiry', ['example.com'], 100);
  const config = validateConfig({ tls: { certificates: [{ hosts: ['example.com'], ...pair }] }, sites: [{ hosts: ['example.com'], static: 'public' }] });
  assert.deepEqual(checkCertificates(config, Date.now()).warnings, []);
  const soon = checkCertificates(config, Date.now() + 90 * DAY);
  assert.equal(soon.errors.length, 0);
  assert.match(soon.warnings[0], /^tls\.certificates\[0\]\.cert: ".*expiry\.pem" expires in (9|10) days \(/);
  assert.match(checkCertificates(config, Date.now() + 200 * DAY).warnings[0], /expired on \d{4}-/);
});

test('certificates: a site host that the certificate SNI picks for it does not name is an error', async () => {
  const pair = await certificate('covered', ['example.com', '*.example.com']);
  const config = validateConfig({
    tls: { certificates: [{ hosts: ['example.com', '*.example.com'], ...pair }] },
    sites: [{ hosts: ['example.com', 'www.example.com', '*.example.com', 'a.b.example.com', 'shop.test', '*'], static: 'public' }],
  });
  const errors = checkCertificates(config).errors;
  assert.equal(errors.length, 2, errors.join('\n'));
  assert.match(errors[0], /^sites\[0\]\.hosts: "a\.b\.example\.com" is not covered by any certificate \(SNI picks tls\.certificates\[0\]/);
  assert.match(errors[1], /^sites\[0\]\.hosts: "shop\.test" is not covered by any certificate/);
});

test('ports in use are warnings naming their key', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  try {
    const config = validateConfig({ listen: { host: '127.0.0.1', https: port, http: null }, admin: { listen: null } });
    assert.deepEqual(await checkPorts(config), [`listen.https: 127.0.0.1:${port} is already in use`]);
  } finally {
    busy.close();
  }
});

test('checkConfigData: schema errors, missing files and certificate problems in one report', async () => {
  const good = await certificate('mixed', ['example.com']);
  const other = await certificate('mixed-other', ['example.com']);
  const report = await checkConfigData({
    listen: { https: 'x' },
    sites: [{ hosts: ['example.com'], static: 'no/such/dir' }],
    tls: { certificates: [{ hosts: ['example.com'], cert: good.cert, key: other.key }, { hosts: ['example.com'], cert: join(dir, 'missing.pem'), key: good.key }] },
  });
  assert.equal(report.config, null);
  assert.deepEqual(report.errors.map((e) => e.replaceAll(dir, 'DIR').split(' (')[0]), [
    'listen.https: expected a port number, got "x"',
    'sites[0].static: not a directory: "no/such/dir"',
    'tls.certificates[1].cert: cannot read "DIR/missing.pem"',
    `tls.certificates[0].key: "DIR/mixed-other.key" does not belong to the certificate in "DIR/mixed.pem"`,
  ]);
});

test('outpost check: every problem at once, warnings apart; start refuses a mismatched key in one line', async () => {
  const good = await certificate('cli', ['localhost']);
  const other = await certificate('cli-other', ['localhost']);
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  const file = join(dir, 'cli.yaml');
  writeFileSync(file, [
    `listen: { host: 127.0.0.1, https: ${port}, http: null }`,
    'log: { access: "off" }',
    'tls:',
    '  certificates:',
    `    - { hosts: [localhost], cert: ${JSON.stringify(good.cert)}, key: ${JSON.stringify(other.key)} }`,
    `    - { hosts: [localhost], cert: ${JSON.stringify(good.key)}, key: ${JSON.stringify(good.key)} }`,
    '',
  ].join('\n'));
  try {
    const checked = run('check', '-c', file);
    assert.equal(checked.status, 1);
    assert.match(checked.stderr, /warning: listen\.https: 127\.0\.0\.1:\d+ is already in use/);
    assert.match(checked.stderr, /tls\.certificates\[0\]\.key: .* does not belong to the certificate/);
    assert.match(checked.stderr, /tls\.certificates\[1\]\.cert: .* holds a private key, not a certificate/);
    const started = run('-c', file);
    assert.equal(started.status, 1);
    assert.doesNotMatch(started.stderr, /\n\s+at /, 'no stack trace');
    assert.match(started.stderr, /does not belong to the certificate/);
  } finally {
    busy.close();
  }
});

test('outpost start: a port in use is one clear line and exit 1, no stack trace', async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  const file = join(dir, 'busy.yaml');
  writeFileSync(file, `listen: { host: 127.0.0.1, https: ${port}, http: null }\nlog: { access: "off" }\ntls: { devCertDir: ${JSON.stringify(join(dir, 'dev'))} }\nadmin: { listen: null }\n`);
  try {
    const started = run('-c', file);
    assert.equal(started.status, 1, started.stdout + started.stderr);
    assert.equal(started.stderr.trim(), `outpost: cannot start: listen.https: 127.0.0.1:${port} is already in use`);
  } finally {
    busy.close();
  }
});

test('check opens a sqlite:// cache file as start would: one that is not a database is an error naming cache.store; a valid or new one passes', async () => {
  const garbage = join(dir, 'garbage.db');
  writeFileSync(garbage, Buffer.alloc(4096, 0x5a));
  const valid = join(dir, 'valid.db');
  new DatabaseSync(valid).close();
  assert.deepEqual(checkSqliteStore(`sqlite://${garbage}`), [`cache.store: cannot open ${JSON.stringify(garbage)}: file is not a database`]);
  assert.deepEqual(checkSqliteStore(`sqlite://${valid}`), []);
  assert.deepEqual(checkSqliteStore(`sqlite://${join(dir, 'new', 'deeper', 'cache.db')}`), [], 'start makes the directories');
  const notADirectory = join(dir, 'plain-file');
  writeFileSync(notADirectory, 'x');
  assert.match(checkSqliteStore(`sqlite://${join(notADirectory, 'cache.db')}`)[0] ?? '', /^cache\.store: cannot create .* is not a directory it can be written in$/);
  // A directory that cannot take a file, whoever asks (root passes access(2) for /proc too).
  assert.match(checkSqliteStore('sqlite:///proc/outpost-check/cache.db')[0] ?? '', /^cache\.store: cannot create "\/proc\/outpost-check\/cache\.db": "\/proc" is not a directory it can be written in$/);
  assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith('.outpost-check-')), [], 'the trial directory is taken away');
  assert.deepEqual(checkSqliteStore('memory'), []);
  // The check command's path (ports: true) reports it with the rest; start meets it as it opens the file.
  const report = await checkConfigData({ listen: { https: 0, http: null }, admin: { listen: null }, cache: { store: `sqlite://${garbage}` } }, { ports: true });
  assert.equal(report.config, null);
  assert.ok(report.errors.some((e) => e.startsWith('cache.store: cannot open')), report.errors.join('\n'));
});

test('check opens the access log file as start would: an existing one for appending, a new one where a file can be made, and makes none itself', async () => {
  const logDir = mkdtempSync(join(tmpdir(), 'outpost-check-log-'));
  const existing = join(logDir, 'access.log');
  writeFileSync(existing, 'earlier line\n');
  assert.deepEqual(checkLogFile(existing), []);
  const fresh = join(logDir, 'new.log');
  assert.deepEqual(checkLogFile(fresh), []);
  assert.equal(existsSync(fresh), false, 'start makes it, not check');
  assert.deepEqual(readdirSync(logDir).sort(), ['access.log']);
  assert.deepEqual(checkLogFile(logDir), [`log.access: cannot open ${JSON.stringify(logDir)} to append to it`], 'a directory is no log file');
  assert.deepEqual(checkLogFile('/proc/outpost-access.log'), ['log.access: cannot open "/proc/outpost-access.log" to append to it']);
  assert.deepEqual([checkLogFile('stdout'), checkLogFile('off')], [[], []]);
  const report = await checkConfigData({ listen: { https: 0, http: null }, admin: { listen: null }, log: { access: '/proc/outpost-access.log' } }, { ports: true });
  assert.ok(report.errors.includes('log.access: cannot open "/proc/outpost-access.log" to append to it'), report.errors.join('\n'));
});

test('check writes in the proxy\'s temp file directories, wherever they are given; a directory that takes no file is named', () => {
  const writable = mkdtempSync(join(tmpdir(), 'outpost-check-temp-'));
  const config = validateConfig({
    proxy: { tempPath: writable },
    sites: [{ hosts: ['*'], origin: 'http://127.0.0.1:3000', routes: [{ path: '/a/', origin: 'http://127.0.0.1:3000', proxy: { tempPath: '/proc' } }] }],
  });
  assert.deepEqual(checkTempPaths(config), ['sites[0].routes[0].proxy.tempPath: cannot write temp files in "/proc"']);
  assert.deepEqual(readdirSync(writable), [], 'the trial directory is taken away');
  assert.deepEqual(checkTempPaths(validateConfig({})), [], 'none given: the system\'s temp directory');
});
