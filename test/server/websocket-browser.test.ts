import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumSkipReason } from '../helpers/chromium.ts';
import { startOutpost } from '../helpers/outpost.ts';
import { wsOrigin } from '../helpers/ws-origin.ts';

/**
 * A browser's WebSocket through Outpost: the page comes over HTTP/2, and since Outpost does not
 * offer extended CONNECT (RFC 8441) the browser opens its WebSocket on an HTTP/1.1 connection
 * of its own, which Outpost tunnels to the origin (server/upgrade.ts).
 */
test('a browser page loaded over HTTP/2 opens a WebSocket through Outpost and talks to the origin', { skip: chromiumSkipReason() }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'outpost-ws-page-'));
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>ws</title><p>page</p>');
  const origin = await wsOrigin();
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], static: root, routes: [{ path: '/ws', origin: origin.url }] }] });
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
  } finally {
    await browser.close();
    await outpost.close();
    await origin.close();
    rmSync(root, { recursive: true, force: true });
  }
});
