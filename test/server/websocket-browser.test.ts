import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumSkipReason } from '../helpers/chromium.ts';
import { startOutpost } from '../helpers/outpost.ts';
import { until } from '../helpers/wait.ts';
import { wsOrigin } from '../helpers/ws-origin.ts';
import { responseEndChannel, type ResponseEndEvent } from '../../src/observability/channels.ts';

/**
 * A browser's WebSocket through Outpost: the page comes over HTTP/2, and the browser opens its
 * WebSocket on a stream of that connection (RFC 8441's extended CONNECT, which Outpost offers),
 * which Outpost tunnels to the origin over HTTP/1.1 (server/upgrade.ts).
 */
test('a browser page loaded over HTTP/2 opens a WebSocket through Outpost and talks to the origin', { skip: chromiumSkipReason() }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'outpost-ws-page-'));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>ws</title><p>page</p>');
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], static: root, routes: [{ path: '/ws', origin: origin.url }] }] });
  const reports: ResponseEndEvent[] = [];
  const onEnd = (event: unknown) => reports.push(event as ResponseEndEvent);
  responseEndChannel.subscribe(onEnd);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--ignore-certificate-errors'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`https://localhost:${outpost.httpsPort}/`);
    // Run in the page (a string: the test is compiled without the DOM's types).
    const result = await page.evaluate(`new Promise((resolve, reject) => {
      const ws = new WebSocket('wss://' + location.host + '/ws', ['chat']);
      ws.onerror = () => reject(new Error('websocket error'));
      ws.onopen = () => ws.send('hello from the browser');
      ws.onmessage = (event) => {
        resolve({ page: performance.getEntriesByType('navigation')[0].nextHopProtocol, echoed: String(event.data), protocol: ws.protocol });
        ws.close();
      };
    })`);
    assert.deepEqual(result, { page: 'h2', echoed: 'hello from the browser', protocol: 'chat' });
    assert.equal(origin.upgrades.length, 1);
    assert.equal(origin.upgrades[0].url, '/ws');
    // The tunnel was a stream of the page's HTTP/2 connection, answered 200 (RFC 8441 §5).
    await until(() => reports.some((r) => r.request.target === '/ws'));
    const tunnel = reports.find((r) => r.request.target === '/ws')!;
    assert.deepEqual({ version: tunnel.request.httpVersion, status: tunnel.status }, { version: '2', status: 200 });
  } finally {
    responseEndChannel.unsubscribe(onEnd);
    await browser.close();
    await outpost.close();
    await origin.close();
    rmSync(root, { recursive: true, force: true });
  }
});
