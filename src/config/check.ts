import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createServer } from 'node:net';
import { isIP } from 'node:net';
import { configSchema, type Config } from './schema.ts';
import { validateConfig } from './load.ts';
import { ConfigError } from '../errors.ts';
import { sqlitePath } from '../cache/store/sqlite.ts';

/**
 * What `outpost check` (and start) verifies beyond the schema, all at once: certificates that do
 * not parse, a key file given as the certificate (or the reverse), keys that do not belong to
 * their certificate, hosts no certificate covers (errors); certificates that expired or expire
 * soon, ports already in use (warnings: the first may be renewed before it matters, the second
 * may be the running Outpost that is about to be replaced).
 */

export interface CheckReport {
  readonly errors: string[];
  readonly warnings: string[];
}

/** A certificate expiring within this many days is worth a warning (Let's Encrypt renews at 30). */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

interface Loaded {
  readonly index: number;
  readonly hosts: readonly string[];
  readonly x509: X509Certificate;
}

const holdsKey = (pem: string) => /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem);
const holdsCertificate = (pem: string) => pem.includes('-----BEGIN CERTIFICATE-----');

/** Whether the certificate's names (subject alt names, else CN) cover this host or IP literal. */
function covers(x509: X509Certificate, host: string): boolean {
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0) return x509.checkIP(bare) !== undefined;
  // A wildcard site pattern is covered when any one-label name under it is.
  const probe = bare.startsWith('*.') ? `outpost-check-probe.${bare.slice(2)}` : bare;
  return x509.checkHost(probe, { wildcards: true, partialWildcards: false }) !== undefined;
}

/**
 * The certificate SNI picks for a host name, by the rule `sniSelector` (src/server/tls.ts)
 * applies: exact host, then a one-label wildcard, else the first certificate.
 */
function pickFor(loaded: readonly Loaded[], all: readonly { hosts: readonly string[] }[], name: string): Loaded | undefined {
  const index = (() => {
    const exact = all.findIndex((c) => c.hosts.includes(name));
    if (exact !== -1) return exact;
    const dot = name.indexOf('.');
    const wildcard = dot > 0 ? all.findIndex((c) => c.hosts.includes(`*.${name.slice(dot + 1)}`)) : -1;
    return wildcard !== -1 ? wildcard : 0;
  })();
  return loaded.find((l) => l.index === index);
}

function readText(file: string): string | Error {
  try { return readFileSync(file, 'utf8'); } catch (err) { return err as Error; }
}

export function checkCertificates(config: Pick<Config, 'tls' | 'sites'>, now: number = Date.now()): CheckReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  const loaded: Loaded[] = [];
  const certificates = config.tls.certificates;
  certificates.forEach((entry, index) => {
    const at = `tls.certificates[${index}]`;
    const certText = readText(entry.cert);
    const keyText = readText(entry.key);
    let x509: X509Certificate | undefined;
    let key: KeyObject | undefined;
    if (certText instanceof Error) errors.push(`${at}.cert: cannot read ${JSON.stringify(entry.cert)}: ${certText.message}`);
    else if (holdsKey(certText) && !holdsCertificate(certText)) errors.push(`${at}.cert: ${JSON.stringify(entry.cert)} holds a private key, not a certificate`);
    else {
      try { x509 = new X509Certificate(certText); } catch (err) {
        errors.push(`${at}.cert: ${JSON.stringify(entry.cert)} is not a PEM certificate (${(err as Error).message})`);
      }
    }
    if (keyText instanceof Error) errors.push(`${at}.key: cannot read ${JSON.stringify(entry.key)}: ${keyText.message}`);
    else if (holdsCertificate(keyText) && !holdsKey(keyText)) errors.push(`${at}.key: ${JSON.stringify(entry.key)} holds a certificate, not a private key`);
    else {
      try { key = createPrivateKey(keyText); } catch (err) {
        errors.push(`${at}.key: ${JSON.stringify(entry.key)} is not a usable PEM private key (${(err as Error).message})`);
      }
    }
    if (x509 === undefined) return;
    if (key !== undefined && !x509.checkPrivateKey(key)) {
      errors.push(`${at}.key: ${JSON.stringify(entry.key)} does not belong to the certificate in ${JSON.stringify(entry.cert)}`);
    }
    const validTo = x509.validToDate.getTime();
    const validFrom = x509.validFromDate.getTime();
    if (validTo <= now) warnings.push(`${at}.cert: ${JSON.stringify(entry.cert)} expired on ${x509.validToDate.toISOString()}`);
    else if (validTo - now < EXPIRY_WARNING_DAYS * DAY_MS) {
      warnings.push(`${at}.cert: ${JSON.stringify(entry.cert)} expires in ${Math.floor((validTo - now) / DAY_MS)} days (${x509.validToDate.toISOString()})`);
    }
    if (validFrom > now) warnings.push(`${at}.cert: ${JSON.stringify(entry.cert)} is not valid before ${x509.validFromDate.toISOString()}`);
    for (const host of entry.hosts) {
      if (!covers(x509, host)) errors.push(`${at}.hosts: ${JSON.stringify(host)} is not among the certificate's names (${x509.subjectAltName ?? x509.subject})`);
    }
    loaded.push({ index, hosts: entry.hosts, x509 });
  });

  // Site hosts: the certificate SNI would pick for each must carry its name. With no certificate
  // configured the development certificate (localhost) is used: nothing to compare.
  if (certificates.length > 0) {
    config.sites.forEach((site, i) => {
      for (const host of site.hosts) {
        if (host === '*') continue;
        const picked = pickFor(loaded, certificates, host);
        if (picked === undefined) continue; // its own problem is reported above
        if (!covers(picked.x509, host)) {
          errors.push(`sites[${i}].hosts: ${JSON.stringify(host)} is not covered by any certificate (SNI picks tls.certificates[${picked.index}]: ${picked.x509.subjectAltName ?? picked.x509.subject})`);
        }
      }
    });
  }
  return { errors, warnings };
}

/** Binds each configured port for a moment; a port in use (or refused) is a warning naming its key. */
export async function checkPorts(config: Pick<Config, 'listen' | 'admin'>): Promise<string[]> {
  const wanted: Array<[string, string, number]> = [];
  if (config.listen.https !== 0) wanted.push(['listen.https', config.listen.host, config.listen.https]);
  if (config.listen.http !== null && config.listen.http !== 0) wanted.push(['listen.http', config.listen.host, config.listen.http]);
  if (config.admin.listen !== null && config.admin.token !== null) {
    const colon = config.admin.listen.lastIndexOf(':');
    const port = Number(config.admin.listen.slice(colon + 1));
    if (port !== 0) wanted.push(['admin.listen', config.admin.listen.slice(0, colon).replace(/^\[|\]$/g, ''), port]);
  }
  const warnings: string[] = [];
  for (const [key, host, port] of wanted) {
    const problem = await new Promise<string | null>((resolve) => {
      const server = createServer();
      server.once('error', (err: NodeJS.ErrnoException) => resolve(describeListenError(err)));
      server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
    });
    if (problem !== null) warnings.push(`${key}: ${host.includes(':') ? `[${host}]` : host}:${port} ${problem}`);
  }
  return warnings;
}

/** A listen failure in a few words: what start would run into. */
export function describeListenError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE': return 'is already in use';
    case 'EACCES': return 'needs privileges (ports below 1024) or is refused';
    case 'EADDRNOTAVAIL': return 'is not an address of this machine';
    default: return `cannot be bound: ${err.code ?? err.message}`;
  }
}

/**
 * A sqlite:// cache store as start would meet it (check only: start opens it and says the same):
 * an existing file must be a database SQLite can open, and a new one must have a directory it can
 * be created in. Other stores have nothing on disk to look at.
 */
export function checkSqliteStore(store: string): string[] {
  if (!store.startsWith('sqlite://')) return [];
  const path = sqlitePath(store);
  if (existsSync(path)) {
    try {
      const db = new DatabaseSync(path, { readOnly: true });
      try { db.prepare('SELECT count(*) FROM sqlite_master').get(); } finally { db.close(); }
    } catch (err) {
      return [`cache.store: cannot open ${JSON.stringify(path)}: ${(err as Error).message}`];
    }
    return [];
  }
  // Start makes the missing directories: the nearest one that exists must take them.
  let dir = dirname(resolve(path));
  while (!existsSync(dir)) dir = dirname(dir);
  if (!canCreateIn(dir)) return [`cache.store: cannot create ${JSON.stringify(path)}: ${JSON.stringify(dir)} is not a directory it can be written in`];
  return [];
}

/**
 * An access log file as start would open it (check only): an existing one opened for appending,
 * a new one's directory able to take a file (validateConfig has seen that it is there). Not
 * created here: start makes it.
 */
export function checkLogFile(access: string): string[] {
  if (access === 'stdout' || access === 'off') return [];
  const path = resolve(access);
  try {
    if (existsSync(path)) closeSync(openSync(path, 'a'));
    else if (!canCreateIn(dirname(path))) throw new Error('cannot create');
  } catch {
    return [`log.access: cannot open ${JSON.stringify(access)} to append to it`];
  }
  return [];
}

/**
 * The proxy's temp file directories (proxy.tempPath, and a site's or route's own) able to take a
 * file, as a response that spills to disk needs (check only; validateConfig has seen that each is a
 * directory). Without one, a slow client's response would find out at its first spill.
 */
export function checkTempPaths(config: Config): string[] {
  const paths: Array<[string, string | null | undefined]> = [['proxy.tempPath', config.proxy.tempPath]];
  config.sites.forEach((site, i) => {
    paths.push([`sites[${i}].proxy.tempPath`, site.proxy?.tempPath]);
    site.routes.forEach((route, j) => paths.push([`sites[${i}].routes[${j}].proxy.tempPath`, route.proxy?.tempPath]));
  });
  return paths.flatMap(([key, dir]) => (typeof dir === 'string' && !canCreateIn(resolve(dir)) ? [`${key}: cannot write temp files in ${JSON.stringify(dir)}`] : []));
}

/**
 * Whether a file can be made in `dir`: a trial directory is made there and taken away again.
 * Not access(2), which root passes for any directory, /proc's too.
 */
function canCreateIn(dir: string): boolean {
  try {
    if (!statSync(dir).isDirectory()) return false;
    rmdirSync(mkdtempSync(join(dir, '.outpost-check-')));
    return true;
  } catch {
    return false;
  }
}

/**
 * Everything at once for raw config data: schema and file problems (validateConfig), and the
 * certificate checks — run on the `tls` and `sites` sections alone when another section is
 * invalid, so one run names every problem. `ports`: also try to bind the listen ports, open a
 * sqlite:// cache file and the access log file, and write in the temp file directories (check only).
 */
export async function checkConfigData(raw: unknown, options: { now?: number; ports?: boolean } = {}): Promise<CheckReport & { config: Config | null }> {
  let config: Config | null = null;
  const errors: string[] = [];
  try {
    config = validateConfig(raw);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    errors.push(...err.problems);
  }
  const section = <K extends 'tls' | 'sites' | 'listen' | 'admin'>(key: K): Config[K] | undefined => {
    if (config !== null) return config[key];
    const value = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>)[key] : undefined;
    const parsed = configSchema.shape[key].safeParse(value);
    return parsed.success ? parsed.data as Config[K] : undefined;
  };
  const tls = section('tls');
  const sites = section('sites') ?? [];
  const warnings: string[] = [];
  if (tls !== undefined) {
    const certs = checkCertificates({ tls, sites }, options.now);
    // A file validateConfig could not read is already reported under the same key.
    const known = (line: string) => errors.some((e) => e.split(':')[0] === line.split(':')[0] && /cannot read/.test(e));
    errors.push(...certs.errors.filter((line) => !known(line)));
    warnings.push(...certs.warnings);
  }
  const listen = section('listen');
  const admin = section('admin');
  if (options.ports === true && listen !== undefined && admin !== undefined) warnings.push(...await checkPorts({ listen, admin }));
  if (options.ports === true && config !== null) errors.push(...checkSqliteStore(config.cache.store), ...checkLogFile(config.log.access), ...checkTempPaths(config));
  return { config: errors.length === 0 ? config : null, errors, warnings };
}
