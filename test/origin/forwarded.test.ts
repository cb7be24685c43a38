import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addForwarded } from '../../src/origin/forwarded.ts';
import type { Context } from '../../src/pipeline/context.ts';

const ctx = (remoteAddress: string, authority: string, httpVersion: string, scheme: 'https' | 'http' = 'https') =>
  ({ remoteAddress, authority, httpVersion, scheme, headers: {} }) as unknown as Context;

const forwarded = (c: Context) => {
  const headers: Record<string, string | string[]> = {};
  addForwarded(headers, c, false, 'outpost');
  return { forwarded: headers.forwarded, via: headers.via, for: headers['x-forwarded-for'], host: headers['x-forwarded-host'], proto: headers['x-forwarded-proto'] };
};

test('forwarding fields: each request gets its own peer, host, scheme and protocol version, however the one before differed', () => {
  const cases: Array<[Context, ReturnType<typeof forwarded>]> = [
    [ctx('192.0.2.1', 'shop.example', '2'), { forwarded: 'for=192.0.2.1;host="shop.example";proto=https', via: '2 outpost', for: '192.0.2.1', host: 'shop.example', proto: 'https' }],
    [ctx('192.0.2.1', 'shop.example', '2'), { forwarded: 'for=192.0.2.1;host="shop.example";proto=https', via: '2 outpost', for: '192.0.2.1', host: 'shop.example', proto: 'https' }],
    [ctx('192.0.2.1', 'api.example', '2'), { forwarded: 'for=192.0.2.1;host="api.example";proto=https', via: '2 outpost', for: '192.0.2.1', host: 'api.example', proto: 'https' }],
    [ctx('2001:db8::7', 'api.example', '1.1'), { forwarded: 'for="[2001:db8::7]";host="api.example";proto=https', via: '1.1 outpost', for: '2001:db8::7', host: 'api.example', proto: 'https' }],
    [ctx('2001:db8::7', 'api.example', '1.0', 'http'), { forwarded: 'for="[2001:db8::7]";host="api.example";proto=http', via: '1.0 outpost', for: '2001:db8::7', host: 'api.example', proto: 'http' }],
    [ctx('192.0.2.1', 'we"ird\\.example', '2'), { forwarded: 'for=192.0.2.1;host="weird.example";proto=https', via: '2 outpost', for: '192.0.2.1', host: 'we"ird\\.example', proto: 'https' }],
    [ctx('192.0.2.1', 'shop.example', '2'), { forwarded: 'for=192.0.2.1;host="shop.example";proto=https', via: '2 outpost', for: '192.0.2.1', host: 'shop.example', proto: 'https' }],
  ];
  for (const [c, expected] of cases) assert.deepEqual(forwarded(c), expected);
});
