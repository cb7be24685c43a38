#!/usr/bin/env node
// Runs Outpost on Node 24 or newer: the running node when it is recent enough, otherwise the
// runtime pinned in this package's devDependencies (TypeScript is run natively by Node 24).
import { spawn } from 'node:child_process';
import module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
// Node's module compile cache, as bin/pinned-node sets it (src/runtime/compile-cache.ts).
const compileCache = process.env.NODE_COMPILE_CACHE ?? fileURLToPath(new URL('../node_modules/.cache/outpost-compile', import.meta.url));
const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
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
  const child = spawn(node, [main, ...process.argv.slice(2)], { stdio: 'inherit', env: { NODE_COMPILE_CACHE: compileCache, ...process.env } });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
