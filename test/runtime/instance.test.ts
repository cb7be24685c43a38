import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { h1, h2, startOrigin } from '../helpers/outpost.ts';
import { validateConfig } from '../../src/config/load.ts';
import { startInstance } from '../../src/runtime/instance.ts';

/**
 * A reload swaps the app new requests run on; the replaced one is closed once the last request it
 * took has its reply, answered or failed (runtime/instance.ts counts them, the listener tells each
 * one's end). Closed too early, its origin pools would cut those requests off; never closed, every
 * reload would leak its pools and timers.
 */

test('a replaced configuration is closed after its last request, answered over HTTP/2 or failed over HTTP/1.1, not before', async () => {
  // The origin holds each request's response until the test answers it (or cuts it off).
  const held = new Map<string, ServerResponse>();
  const waiting = new Map<string, (res: ServerResponse) => void>();
  const arrival = (path: string) => new Promise<ServerResponse>((resolve) => {
    const res = held.get(path);
    if (res !== undefined) resolve(res);
    else waiting.set(path, resolve);
  });
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'no-store');
    const path = req.url ?? '';
    // Every further attempt at /fail dies without an answer (the retries): the chain fails, a 502.
    if (held.has(path)) return void res.socket?.destroy();
    held.set(path, res);
    waiting.get(path)?.(res);
  });
  const raw = {
    listen: { host: '127.0.0.1', https: 0, http: null }, log: { access: 'off' },
    tls: { devCertDir: mkdtempSync(join(tmpdir(), 'outpost-instance-cert-')) },
    sites: [{ hosts: ['*'], origin: origin.url }],
  };
  const instance = await startInstance(validateConfig(raw));
  const base = `https://localhost:${instance.running.httpsPort}`;
  const ca = readFileSync(join(instance.config().tls.devCertDir, 'dev-cert.pem'), 'utf8');
  try {
    const answered = h2(`${base}/slow`, { ca });
    const failed = h1(`${base}/fail`, { ca });
    const slow = await arrival('/slow');
    const fail = await arrival('/fail');

    const previous = instance.current();
    let closes = 0;
    const close = previous.close.bind(previous);
    previous.close = (handedOn) => { closes++; return close(handedOn); };
    await instance.reload(validateConfig({ ...raw, hsts: { maxAge: '1m' } }));
    assert.notEqual(instance.current(), previous);
    assert.equal(closes, 0, 'two requests of the old configuration are open');

    slow.end('slow');
    const first = await answered;
    assert.equal(first.status, 200);
    assert.equal(first.body.toString(), 'slow');
    assert.equal(closes, 0, 'one request of the old configuration is still open');

    fail.socket!.destroy();
    const second = await failed;
    assert.equal(second.status, 502);
    assert.equal(closes, 1, 'the old configuration is closed with its last reply');

    // New requests run on the new configuration, and leave it open.
    const next = h2(`${base}/after`, { ca });
    (await arrival('/after')).end('after');
    const third = await next;
    assert.match(String(third.headers['strict-transport-security']), /max-age=60/);
    assert.equal(closes, 1);
  } finally {
    for (const res of held.values()) if (!res.writableEnded) res.socket?.destroy();
    await instance.close();
    await origin.close();
  }
});
