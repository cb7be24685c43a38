import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, type Config, type OriginPoolConfig, type UpstreamTlsConfig } from './schema.ts';
import { ConfigError } from '../errors.ts';

/** Overrides from the command line and OUTPOST_* variables; they win over the file. */
export interface Overrides {
  origin?: string;
  root?: string;
  httpsPort?: number;
  httpPort?: number | null;
  host?: string;
  adminToken?: string;
}

export const DEFAULT_CONFIG_FILE = 'config/outpost.yaml';

/** Reads the environment once, here, and nowhere else. */
export function overridesFromEnv(env: NodeJS.ProcessEnv): { file?: string; overrides: Overrides } {
  const overrides: Overrides = {};
  if (env.OUTPOST_ADMIN_TOKEN) overrides.adminToken = env.OUTPOST_ADMIN_TOKEN;
  if (env.OUTPOST_ORIGIN) overrides.origin = env.OUTPOST_ORIGIN;
  if (env.OUTPOST_ROOT) overrides.root = env.OUTPOST_ROOT;
  if (env.OUTPOST_HOST) overrides.host = env.OUTPOST_HOST;
  if (env.OUTPOST_HTTPS_PORT) overrides.httpsPort = Number(env.OUTPOST_HTTPS_PORT);
  if (env.OUTPOST_HTTP_PORT) overrides.httpPort = env.OUTPOST_HTTP_PORT === 'off' ? null : Number(env.OUTPOST_HTTP_PORT);
  return { file: env.OUTPOST_CONFIG || undefined, overrides };
}

/** Reads a YAML file into plain data; a missing default file is an empty config. */
export function readConfigFile(file: string | undefined): unknown {
  const path = file ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (file === undefined && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError([`${path}: cannot read: ${(err as Error).message}`]);
  }
  try {
    return parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 }) ?? {};
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? `:${err.linePos[0].line}:${err.linePos[0].col}` : '';
    throw new ConfigError([`${path}${where}: invalid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
}

/** Applies overrides to raw (unvalidated) config data, so the schema validates them too. */
export function applyOverrides(raw: unknown, overrides: Overrides): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const data = structuredClone(raw) as Record<string, any>;
  if (overrides.host !== undefined || overrides.httpsPort !== undefined || overrides.httpPort !== undefined) {
    const listen = (data.listen ??= {});
    if (typeof listen === 'object' && listen !== null) {
      if (overrides.host !== undefined) listen.host = overrides.host;
      if (overrides.httpsPort !== undefined) listen.https = overrides.httpsPort;
      if (overrides.httpPort !== undefined) listen.http = overrides.httpPort;
    }
  }
  if (overrides.adminToken !== undefined) {
    const admin = (data.admin ??= {});
    if (typeof admin === 'object' && admin !== null) admin.token = overrides.adminToken;
  }
  if (overrides.origin !== undefined || overrides.root !== undefined) {
    // --origin/--root change the catch-all site (created when the file has none).
    if (!Array.isArray(data.sites)) data.sites = [{ hosts: ['*'], static: 'public' }];
    let site = data.sites.find((s: any) => Array.isArray(s?.hosts) && s.hosts.includes('*'));
    if (!site) data.sites.push((site = { hosts: ['*'], static: 'public' }));
    if (overrides.origin !== undefined) site.origin = overrides.origin;
    if (overrides.root !== undefined) site.static = overrides.root;
  }
  return data;
}

/** `sites[0].routes[1].origin` from a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || '(top level)';
}

/** Validates raw data and returns the frozen config, or throws a ConfigError listing every problem (schema and files together). */
export function validateConfig(raw: unknown): Config {
  const result = configSchema.safeParse(raw);
  const problems = result.success ? [] : result.error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    return `${formatPath(issue.path)}: ${message}`;
  });
  problems.push(...checkFiles(raw, problems));
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  // What needs the parsed config: the files of TLS towards upstreams, keys valid alone but not together.
  const more = [...upstreamTlsFiles(result.data), ...checkCombinations(result.data)];
  if (more.length > 0) throw new ConfigError(more);
  return deepFreeze(result.data);
}

/**
 * Things the schema cannot know: static roots must be directories, certificate files readable.
 * Read from the raw data, so a file problem is reported beside schema problems elsewhere; a key
 * the schema already complained about is not reported twice.
 */
function checkFiles(raw: unknown, reported: readonly string[]): string[] {
  const problems: string[] = [];
  const isDir = (dir: string) => {
    try { return statSync(resolve(dir)).isDirectory(); } catch { return false; }
  };
  const isFile = (file: string) => {
    try { return statSync(resolve(file)).isFile(); } catch { return false; }
  };
  const object = (value: unknown): Record<string, unknown> | null =>
    value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : null;
  const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
  const flagged = (key: string) => reported.some((p) => p.startsWith(`${key}:`) || p.startsWith(`${key}.`));
  const directory = (key: string, dir: unknown) => {
    if (typeof dir === 'string' && dir !== '' && !flagged(key) && !isDir(dir)) problems.push(`${key}: not a directory: ${JSON.stringify(dir)}`);
  };
  const staticRoot = (key: string, spec: unknown) => directory(key, typeof spec === 'string' ? spec : object(spec)?.root);
  const tempPath = (key: string, proxy: unknown) => directory(`${key}.tempPath`, object(proxy)?.tempPath);
  const data = object(raw);
  if (data === null) return problems;
  // An access log file is opened (created) in a directory that must be there: start and reload
  // would otherwise run on and lose every line (nginx refuses to start).
  const access = object(data.log)?.access;
  if (typeof access === 'string' && access !== 'stdout' && access !== 'off' && access !== '' && !flagged('log.access') && !isDir(dirname(resolve(access)))) {
    problems.push(`log.access: no directory to write ${JSON.stringify(access)} in: ${JSON.stringify(dirname(access))}`);
  }
  tempPath('proxy', data.proxy);
  // The default catch-all site serves public/ when the file names no sites.
  const sites = data.sites === undefined ? [{ static: 'public' }] : list(data.sites);
  sites.forEach((site, i) => {
    const s = object(site);
    if (s === null) return;
    if (s.static !== undefined) staticRoot(`sites[${i}].static`, s.static);
    tempPath(`sites[${i}].proxy`, s.proxy);
    list(s.routes).forEach((route, j) => {
      const r = object(route);
      if (r?.static !== undefined) staticRoot(`sites[${i}].routes[${j}].static`, r.static);
      tempPath(`sites[${i}].routes[${j}].proxy`, r?.proxy);
    });
  });
  list(object(data.tls)?.certificates).forEach((entry, i) => {
    const c = object(entry);
    for (const field of ['cert', 'key'] as const) {
      const file = c?.[field];
      const key = `tls.certificates[${i}].${field}`;
      if (typeof file === 'string' && file !== '' && !flagged(key) && !isFile(file)) problems.push(`${key}: cannot read ${JSON.stringify(file)}`);
    }
  });
  return problems;
}

/** The TLS files of every upstream: readable, certificates that parse, keys that match. */
function upstreamTlsFiles(config: Config): string[] {
  const problems: string[] = [];
  for (const [where, pool] of origins(config)) {
    for (const upstream of pool.upstreams) {
      if (upstream.tls !== null) problems.push(...upstreamTlsProblems(upstream.tls, `${where}: upstream ${upstream.url}: tls`));
    }
  }
  return problems;
}

/** Keys that are valid alone but not together. */
function checkCombinations(config: Config): string[] {
  const problems: string[] = [];
  if (config.listen.proxyProtocol && config.trustedProxies.length === 0) {
    problems.push('listen.proxyProtocol: needs trustedProxies, the balancers whose PROXY headers are accepted');
  }
  return problems;
}

/** Every origin pool with the key that configures it. */
function origins(config: Config): Array<[string, OriginPoolConfig]> {
  const found: Array<[string, OriginPoolConfig]> = [];
  config.sites.forEach((site, i) => {
    if (site.origin) found.push([`sites[${i}].origin`, site.origin]);
    site.routes.forEach((route, j) => { if (route.origin) found.push([`sites[${i}].routes[${j}].origin`, route.origin]); });
  });
  return found;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The files of TLS towards an upstream: readable, certificates that parse, a key that matches its certificate. */
function upstreamTlsProblems(tls: UpstreamTlsConfig, where: string): string[] {
  const problems: string[] = [];
  const read = (key: string, file: string | null): Buffer | undefined => {
    if (file === null) return undefined;
    try {
      return readFileSync(resolve(file));
    } catch (err) {
      problems.push(`${where}.${key}: cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  const certificates = (key: string, pem: Buffer) => {
    const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
    if (blocks.length === 0) problems.push(`${where}.${key}: no PEM certificate in ${JSON.stringify((tls as Record<string, unknown>)[key])}`);
    for (const block of blocks) {
      try { new X509Certificate(block); } catch (err) { problems.push(`${where}.${key}: invalid certificate: ${(err as Error).message}`); }
    }
    return blocks.length > 0;
  };
  const ca = read('ca', tls.ca);
  if (ca) certificates('ca', ca);
  const cert = read('cert', tls.cert);
  const key = read('key', tls.key);
  if (cert && key && certificates('cert', cert)) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      const message = (err as Error).message;
      problems.push(`${where}.key: ${/mismatch/.test(message) ? `does not match ${JSON.stringify(tls.cert)}` : `cannot use: ${message}`}`);
    }
  }
  return problems;
}

/** Valid but risky settings, printed at start and by `outpost check`. */
export function configWarnings(config: Config): string[] {
  const warnings: string[] = [];
  for (const [where, pool] of origins(config)) {
    for (const upstream of pool.upstreams) {
      if (upstream.tls?.verify === false) {
        warnings.push(`${where}: upstream ${upstream.url}: tls.verify is false: its certificate is not checked, anyone on the path can impersonate it`);
      }
    }
  }
  return warnings;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** File + overrides → validated config. */
export function loadConfig(file: string | undefined, overrides: Overrides = {}): Config {
  return validateConfig(applyOverrides(readConfigFile(file), overrides));
}
