import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Request bodies bring a young collection every 8 MiB (src/runtime/body-scavenge.ts) where the
 * process runs with --expose-gc, as a serving process does. Counted in a child process with V8's
 * own record of its collections (perf_hooks 'gc' entries: a forced minor one is ours, since
 * nothing else in the child asks for one).
 */

const body = fileURLToPath(new URL('../../src/server/body.ts', import.meta.url));

/** Sends `mib` MiB through limitBody in 16 KB chunks; the forced and all young collections V8 recorded meanwhile. */
function bodyThroughLimiter(flags: readonly string[], mib: number): { forcedMinor: number; minor: number; received: number } {
  const script = `
    import { PerformanceObserver, constants } from 'node:perf_hooks';
    import { PassThrough } from 'node:stream';
    import { limitBody } from ${JSON.stringify(body)};
    let forcedMinor = 0, minor = 0;
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.detail.kind !== constants.NODE_PERFORMANCE_GC_MINOR) continue;
        minor++;
        if (e.detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) forcedMinor++;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    const source = new PassThrough();
    const limited = limitBody(source, { maxBytes: 1e10, deadline: 60_000, minRate: 0, grace: 0 });
    let received = 0;
    limited.on('data', (chunk) => { received += chunk.length; });
    limited.on('end', () => setTimeout(() => {
      observer.disconnect();
      console.log(JSON.stringify({ forcedMinor, minor, received }));
    }, 50));
    for (let i = 0; i < ${mib} * 64; i++) source.write(Buffer.alloc(16384, i));
    source.end();`;
  const out = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout);
}

test('with --expose-gc, a young collection every 8 MiB of request bodies', () => {
  const r = bodyThroughLimiter(['--expose-gc'], 40);
  assert.equal(r.received, 40 * 2 ** 20);
  assert.ok(r.forcedMinor >= 4 && r.forcedMinor <= 5, `${r.forcedMinor} forced young collections for 40 MiB (${r.minor} in all)`);
});

test('without it, none asked for, and the body passes the same', () => {
  const r = bodyThroughLimiter([], 16);
  assert.equal(r.received, 16 * 2 ** 20);
  assert.equal(r.forcedMinor, 0);
});
