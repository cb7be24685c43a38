import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

/** `src/main.ts` (or another entry, `bin/outpost.js`) as its own process, the way an operator runs it; output collected for assertions. */
export interface OutpostProcess {
  readonly child: ChildProcess;
  output(): string;
  /** Waits (bounded) until the output matches; answers the match. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL if it has not exited within the deadline; answers the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/**
 * `env` is added to this process's environment; a variable given as undefined is left out.
 * `nodeFlags` go before the entry (V8's flags, which NODE_OPTIONS does not all take).
 */
export function spawnOutpost(args: string[], env: NodeJS.ProcessEnv = {}, entry = 'src/main.ts', nodeFlags: readonly string[] = []): OutpostProcess {
  const child = spawn(process.execPath, [...nodeFlags, entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => { output += d; });
  child.stderr!.on('data', (d: Buffer) => { output += d; });
  return {
    child,
    output: () => output,
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(output);
        if (match) return match;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no ${pattern} in the output:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    async stop(timeoutMs = 10_000) {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const [code] = await exited;
      clearTimeout(timer);
      return code as number | null;
    },
  };
}

/**
 * A config file for Outpost with `workers: 2` on loopback (port 0, no plain HTTP, no access log,
 * its development certificate in the directory made for it) plus `lines`; answers the file and the
 * directory (the certificate is `cert/dev-cert.pem` in it once Outpost started).
 */
export function writeClusterConfig(name: string, lines: readonly string[]): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), `outpost-${name}-`));
  const file = join(dir, 'outpost.yaml');
  writeFileSync(file, [
    'workers: 2',
    'listen: { host: 127.0.0.1, https: 0, http: null }',
    'log: { access: "off" }',
    `tls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }`,
    ...lines, '',
  ].join('\n'));
  return { dir, file };
}
