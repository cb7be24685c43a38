import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:http2';

/**
 * `bin/pinned-node bench/workers.ts`: hit ratio and memory with 1 and with 2 workers, the memory
 * cache (with 2, the node tier in the primary and each worker's near copies). 200 URLs of a 30 KB page, each asked 10 times, every request on a new connection
 * (connections are what the primary hands to workers in turn). Reads /stats and the resident memory
 * of the primary and its workers. Loopback only, bounded: 2000 requests per run.
 */

const ROOT = resolve(import.meta.dirname, '..');
const TOKEN = 'workers-bench-token-0123456789';
const URLS = 200;
const ROUNDS = 10;
const page = Buffer.from(`<!doctype html>${'<p>Outpost workers benchmark, a page of text.</p>'.repeat(620)}`);

const origin = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'max-age=600', 'content-length': page.length });
  res.end(page);
});
await new Promise<void>((done) => origin.listen(0, '127.0.0.1', done));
const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;

const rssMiB = (pid: number) => {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return kb / 1024;
};

async function run(workers: number) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-workers-bench-'));
  const file = join(dir, 'outpost.yaml');
  writeFileSync(file, [
    `workers: ${workers}`,
    'listen: { host: 127.0.0.1, https: 0, http: null }',
    'log: { access: "off" }',
    `tls: { devCertDir: ${JSON.stringify(join(dir, 'cert'))} }`,
    `admin: { listen: "127.0.0.1:0", token: ${TOKEN} }`,
    `sites: [{ hosts: ["*"], origin: ${JSON.stringify(originUrl)} }]`,
    '',
  ].join('\n'));
  const child = spawn(process.execPath, ['src/main.ts', '-c', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d; });
  child.stderr.on('data', (d: Buffer) => { output += d; });
  const deadline = Date.now() + 20_000;
  while (!/admin API on/.test(output)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`outpost did not start:\n${output}`);
    await new Promise((done) => setTimeout(done, 50));
  }
  const url = /listening on (https:\/\/127\.0\.0\.1:\d+)\//.exec(output)![1];
  const admin = /admin API on (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)![1];
  const ca = readFileSync(join(dir, 'cert', 'dev-cert.pem'), 'utf8');
  const get = (path: string) => new Promise<void>((done, fail) => {
    const session = connect(url, { ca });
    session.on('error', fail);
    const stream = session.request({ ':path': path, 'accept-encoding': 'br' });
    stream.on('error', fail);
    stream.resume();
    stream.on('end', () => { session.close(); done(); });
  });
  for (let round = 0; round < ROUNDS; round++) {
    // Four connections at a time: enough to spread them, bounded.
    for (let i = 0; i < URLS; i += 4) await Promise.all([0, 1, 2, 3].map((k) => get(`/page/${i + k}`)));
  }
  const stats = await (await fetch(`${admin}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Record<string, any>;
  const pids: number[] = [child.pid!, ...(stats.workerPids ?? [])];
  const rss = pids.map(rssMiB);
  child.kill('SIGTERM');
  await new Promise((done) => child.once('exit', done));
  return { workers, hits: stats.hits as number, misses: stats.misses as number, stores: stats.stores as number, rss };
}

console.log(`${URLS} URLs x ${ROUNDS} requests, each on a new HTTP/2 connection; 30 KB page (and its Brotli variant); memory cache (with 2 workers: the node tier the primary holds)`);
console.log('workers | hit ratio | origin fetches (stores) | RSS MiB (primary + workers)');
for (const workers of [1, 2]) {
  const r = await run(workers);
  const total = r.rss.reduce((a, b) => a + b, 0);
  console.log(`${r.workers} | ${((r.hits / (r.hits + r.misses)) * 100).toFixed(1)} % (${r.hits}/${r.hits + r.misses}) | ${r.stores} | ${total.toFixed(0)} (${r.rss.map((m) => m.toFixed(0)).join(' + ')})`);
}
origin.close();
