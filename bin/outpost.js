#!/usr/bin/env node
// Runs Outpost on Node 24 or newer: the running node when it is recent enough, otherwise the
// runtime pinned in this package's devDependencies (TypeScript is run natively by Node 24).
import { spawn } from 'node:child_process';
import module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const args = process.argv.slice(2);
// Node's module compile cache, as bin/pinned-node sets it (src/runtime/compile-cache.ts).
const compileCache = process.env.NODE_COMPILE_CACHE ?? fileURLToPath(new URL('../node_modules/.cache/outpost-compile', import.meta.url));
const major = Number(process.versions.node.split('.')[0]);

if (major >= 24) {
  // A server starts as `npm start` starts it: with the serving runtime flags (src/runtime/node-flags.ts:
  // without --expose-gc, uploads fall into storms of full collections and memory.trim cannot
  // collect at rest) and glibc held to two arenas (bin/pinned-node). V8 takes its flags only at
  // start, so this process becomes that one (execve: the same PID, for signals and supervisors).
  // `check`, `--help` and a start that has its flags already run here as they are.
  const { servingLaunch } = await import('../src/runtime/node-flags.ts');
  const launch = servingLaunch(args, process.execArgv, process.env.NODE_OPTIONS);
  if (launch !== null && typeof process.execve === 'function') {
    const env = { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2', NODE_COMPILE_CACHE: compileCache };
    try {
      process.execve(process.execPath, [process.execPath, ...launch, main, ...args], env);
    } catch (error) {
      // Not replaced (a sandbox refusing exec): serve from this process, without the flags.
      console.error(`outpost: starting without the serving runtime flags (${error.message})`);
    }
  }
  if (compileCache !== '' && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) module.enableCompileCache?.(compileCache);
  await import(main);
} else {
  let node;
  try {
    node = createRequire(import.meta.url).resolve('node/bin/node');
  } catch {
    console.error(`outpost needs Node.js 24 or newer (this is ${process.version}); run npm install to get the pinned runtime`);
    process.exit(1);
  }
  // The pinned runtime runs this file again, which starts the server as above.
  const child = spawn(node, [here, ...args], { stdio: 'inherit', env: { NODE_COMPILE_CACHE: compileCache, ...process.env } });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
