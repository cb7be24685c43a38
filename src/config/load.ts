import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, type Config } from './schema.ts';
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
  const staticRoot = (key: string, spec: unknown) => {
    const root = typeof spec === 'string' ? spec : object(spec)?.root;
    if (typeof root === 'string' && root !== '' && !flagged(key) && !isDir(root)) problems.push(`${key}: not a directory: ${JSON.stringify(root)}`);
  };
  const data = object(raw);
  if (data === null) return problems;
  // The default catch-all site serves public/ when the file names no sites.
  const sites = data.sites === undefined ? [{ static: 'public' }] : list(data.sites);
  sites.forEach((site, i) => {
    const s = object(site);
    if (s === null) return;
    if (s.static !== undefined) staticRoot(`sites[${i}].static`, s.static);
    list(s.routes).forEach((route, j) => {
      const r = object(route);
      if (r?.static !== undefined) staticRoot(`sites[${i}].routes[${j}].static`, r.static);
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
