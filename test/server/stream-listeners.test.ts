import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerHttp2Stream } from 'node:http2';
import { applyOverrides, validateConfig } from '../../src/config/load.ts';
import { startServers } from '../../src/server/listener.ts';
import { responseEndChannel } from '../../src/observability/channels.ts';
import { devCertificate } from '../../src/server/tls.ts';
import type { Context, Reply } from '../../src/pipeline/context.ts';
import { h2session, h2request } from '../helpers/outpost.ts';

// A full collection on demand, to see what an HTTP/2 stream still holds once its request is done.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * A stream that V8 keeps after its response (a table of the session's stream Map left in the old
 * generation, src/server/stream-listeners.ts) must not keep the request with it: its listeners
 * hold the stream, the session and the abort source, never the context or the reply.
 */
async function heldByStream(options: { reported: boolean }): Promise<{ ctx: boolean; reply: boolean }> {
  const certDir = mkdtempSync(join(tmpdir(), 'outpost-stream-'));
  const config = validateConfig(applyOverrides({
    log: { access: 'off' },
    limits: { shutdownTimeout: '2s' },
    listen: { host: '127.0.0.1', https: 0, http: null },
    tls: { devCertDir: certDir },
  }, {}));
  let ctxRef: WeakRef<Context> | undefined;
  let replyRef: WeakRef<Reply> | undefined;
  const handler = (ctx: Context): Promise<Reply> => {
    ctxRef = new WeakRef(ctx);
    const reply: Reply = { status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.from('done') };
    replyRef = new WeakRef(reply);
    return Promise.resolve(reply);
  };
  const running = await startServers(config, handler, {});
  const streams: ServerHttp2Stream[] = []; // held here as the old table would hold them
  running.servers.https.on('stream', (stream: ServerHttp2Stream) => streams.push(stream));
  const reports: unknown[] = [];
  const report = (message: unknown) => reports.push(message);
  if (options.reported) responseEndChannel.subscribe(report);
  const { cert: ca } = await devCertificate(certDir);
  const session = await h2session(`https://127.0.0.1:${running.httpsPort}`, { ca });
  try {
    const response = await h2request(session, '/');
    assert.equal(response.body.toString(), 'done');
    if (!streams[0].closed || !streams[0].destroyed) await once(streams[0], 'close');
    if (options.reported) assert.equal(reports.length, 1);
    reports.length = 0;
    // Past the job that made the WeakRefs, and past Node's own deferred cleanup of the stream.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    gc();
    return { ctx: ctxRef!.deref() !== undefined, reply: replyRef!.deref() !== undefined };
  } finally {
    if (options.reported) responseEndChannel.unsubscribe(report);
    session.close();
    await running.close();
  }
}

test('an HTTP/2 stream kept after its response holds neither the request context nor the reply', async () => {
  assert.deepEqual(await heldByStream({ reported: false }), { ctx: false, reply: false });
});

test('with a subscriber on the response channel (the access log) a kept stream holds neither either', async () => {
  assert.deepEqual(await heldByStream({ reported: true }), { ctx: false, reply: false });
});
