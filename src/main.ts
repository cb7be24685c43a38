// First: Node settles its async context before anything runs (runtime/async-context.ts says why).
import './runtime/async-context.ts';
import { parseArgs } from 'node:util';
import { configWarnings, overridesFromEnv, type Overrides } from './config/load.ts';
import { ConfigError } from './errors.ts';
import { describeListenError } from './config/check.ts';
import type { Config } from './config/schema.ts';
import { configSource } from './runtime/source.ts';
import { serveSingle } from './runtime/serve.ts';
import { allocatorLine, allocatorOf } from './runtime/allocator.ts';
import { HELPER_PATH, loadMallocHelper } from './runtime/malloc-trim.ts';
import { loadPressureHelper } from './runtime/v8-pool.ts';
import { nativeEncoder } from './compress/background.ts';
import cluster from 'node:cluster';
import { runPrimary, runWorker, workerCount, WORKER_CONFIG } from './runtime/cluster.ts';

const USAGE = `usage: outpost [start|check] [options]

  start (default)        run the edge node
  check                  validate the configuration and exit (non-zero on error), like nginx -t

  -c, --config FILE      config file (default: config/outpost.yaml when present)
      --origin URL       proxy what the static root does not have to this origin
      --root DIR         static root of the catch-all site (default: public)
      --host ADDR        address to bind (default: ::)
      --https-port N     HTTPS port (default: 8443)
      --http-port N|off  plain-HTTP port that redirects to HTTPS (default: 8080)
  -h, --help

Environment: OUTPOST_CONFIG, OUTPOST_ORIGIN, OUTPOST_ROOT, OUTPOST_HOST, OUTPOST_HTTPS_PORT,
OUTPOST_HTTP_PORT; command-line flags win over the environment, which wins over the file.`;

function parseCli(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      origin: { type: 'string' },
      root: { type: 'string' },
      host: { type: 'string' },
      'https-port': { type: 'string' },
      'http-port': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const port = (flag: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError([`--${flag}: expected a port number, got ${JSON.stringify(value)}`]);
    return n;
  };
  const overrides: Overrides = {};
  if (values.origin !== undefined) overrides.origin = values.origin;
  if (values.root !== undefined) overrides.root = values.root;
  if (values.host !== undefined) overrides.host = values.host;
  if (values['https-port'] !== undefined) overrides.httpsPort = port('https-port', values['https-port']);
  if (values['http-port'] !== undefined) overrides.httpPort = values['http-port'] === 'off' ? null : port('http-port', values['http-port']);
  return { command: positionals[0] ?? 'start', file: values.config, overrides, help: values.help === true };
}

async function main(argv: string[]): Promise<number> {
  let cli;
  try {
    cli = parseCli(argv);
  } catch (err) {
    console.error(`outpost: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (cli.help) {
    console.log(USAGE);
    return 0;
  }
  if (cli.command !== 'start' && cli.command !== 'check') {
    console.error(`outpost: unknown command ${JSON.stringify(cli.command)}\n\n${USAGE}`);
    return 2;
  }
  // A cluster worker: its config comes from the primary, which validated it and reports problems.
  if (cluster.isWorker && process.env[WORKER_CONFIG] !== undefined) {
    for (const signal of ['SIGHUP', 'SIGUSR1'] as const) process.on(signal, () => {});
    try {
      return await runWorker(JSON.parse(process.env[WORKER_CONFIG]) as Config);
    } catch {
      return 1; // the primary says why, once
    }
  }
  const env = overridesFromEnv(process.env);
  // Signals that would end the process by default do nothing until their handlers are in place.
  for (const signal of ['SIGHUP', 'SIGUSR1'] as const) process.on(signal, () => {});
  const source = configSource(cli.file ?? env.file, { ...env.overrides, ...cli.overrides });
  const report = await source({ ports: cli.command === 'check' });
  for (const line of report.warnings) console.error(`outpost: warning: ${line}`);
  if (report.config === null) {
    console.error(`outpost: ${new ConfigError(report.errors).message}`);
    return 1;
  }
  const config = report.config;
  // Settings that work but weaken something (verify: false towards an origin), said at every start.
  for (const warning of configWarnings(config)) console.error(`outpost: warning: ${warning}`);
  if (cli.command === 'check') {
    const n = report.warnings.length;
    console.log(`outpost: configuration is valid${n > 0 ? ` (${n} warning${n > 1 ? 's' : ''})` : ''}`);
    return 0;
  }
  const allocator = allocatorOf();
  const line = allocatorLine(allocator);
  if (line !== null) (line.warning ? console.error : console.log)(line.text);
  // On jemalloc the trim is not needed, and the line above already names the allocator.
  if (config.memory.trim && allocator !== 'jemalloc') {
    const { why } = loadMallocHelper(HELPER_PATH, allocator);
    if (why !== undefined) console.log(`outpost: memory.trim off: ${why}`);
    else if (config.memory.pressure !== null) {
      const pressure = loadPressureHelper();
      if (pressure.why !== undefined) console.log(`outpost: memory.pressure off: ${pressure.why}`);
    }
  }
  const encoder = nativeEncoder();
  if (encoder.why !== undefined) console.log(`outpost: high-quality compression runs in a worker thread (12-20 MiB more memory): ${encoder.why}`);
  try {
    return workerCount(config.workers) === 1 ? await serveSingle(config, source) : await runPrimary(config, source);
  } catch (err) {
    console.error(`outpost: cannot start: ${startupFailure(err, config)}`);
    return 1;
  }
}

/** A start-up failure in one line: which key and what went wrong, never a stack trace. */
function startupFailure(err: unknown, config: Config): string {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.syscall === 'listen' || e?.code === 'EADDRINUSE' || e?.code === 'EACCES') {
    const key = e.port === config.listen.https ? 'listen.https' : e.port === config.listen.http ? 'listen.http' : 'admin.listen';
    const address = e.address !== undefined ? `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}` : `port ${e.port}`;
    return `${key}: ${address} ${describeListenError(e)}`;
  }
  return e instanceof Error ? e.message : String(err);
}

// Whatever goes wrong before serving is one line, never a stack trace.
process.exitCode = await main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`outpost: ${err instanceof Error ? err.message : String(err)}`);
  return 1;
});
