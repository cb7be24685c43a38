import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFingerprinted, mapRequestPath } from '../../src/static/path.ts';

// [path, mount base, expected]: segments (and directory flag) or a refusal [status, passable].
type Expected = { segments: string[]; directory: boolean } | [status: number, passable: boolean];
const cases: Array<[string, string, Expected]> = [
  ['/', '', { segments: [], directory: true }],
  ['/a/b.txt', '', { segments: ['a', 'b.txt'], directory: false }],
  ['/docs/', '', { segments: ['docs'], directory: true }],
  ['/with%20space.txt', '', { segments: ['with space.txt'], directory: false }],
  ['/caf%C3%A9.txt', '', { segments: ['café.txt'], directory: false }],
  ['/%252e%252e/x', '', { segments: ['%2e%2e', 'x'], directory: false }], // decoded once only
  ['/...', '', [404, true]], // a dotfile, not a dot segment
  ['/.well-known/security.txt', '', { segments: ['.well-known', 'security.txt'], directory: false }],
  ['/%2Ewell-known/x', '', { segments: ['.well-known', 'x'], directory: false }],
  ['/docs/.well-known/x', '', [404, true]],
  ['/.well-known/.secret', '', [404, true]],
  ['/assets/.well-known/x', '/assets', [404, true]], // the exception is for the URL root only

  // not origin-form, malformed escapes
  ['', '', [400, false]],
  ['hello.txt', '', [400, false]],
  ['*', '', [400, false]],
  ['/%zz', '', [400, false]],
  ['/%4', '', [400, false]],
  ['/abc%', '', [400, false]],
  ['/ok/%g0/x', '', [400, false]],
  // valid escapes that are not UTF-8
  ['/%ff', '', [400, true]],
  ['/%c0%af', '', [400, true]], // overlong '/'
  ['/%c0%ae%c0%ae/x', '', [400, true]], // overlong '..': not UTF-8, no file, never a dot segment here

  // dot segments in every spelling
  ['/..', '', [404, false]],
  ['/../etc/passwd', '', [404, false]],
  ['/a/../../etc/passwd', '', [404, false]],
  ['/a/..', '', [404, false]],
  ['/a/../', '', [404, false]],
  ['/./hello.txt', '', [404, false]],
  ['/%2e%2e/etc/passwd', '', [404, false]],
  ['/%2E%2E/etc/passwd', '', [404, false]],
  ['/.%2e/etc/passwd', '', [404, false]],
  ['/%2e./etc/passwd', '', [404, false]],
  ['/%2e/hello.txt', '', [404, false]],
  ['/a//../b', '', [404, false]], // the non-passable refusal wins over the earlier empty segment
  ['/x/..%2f..%2fetc%2fpasswd', '', [404, false]], // %2F hiding dot segments
  ['/x/%2f..', '', [404, false]],
  ['/x/..%2F', '', [404, false]],
  ['/%ff/../x', '', [404, false]],

  // NUL
  ['/hello.txt\0.html', '', [404, false]],
  ['/hello.txt%00.html', '', [404, false]],
  ['/%00', '', [404, false]],

  // backslash, raw and encoded
  ['/..\\etc\\passwd', '', [404, false]],
  ['/a\\b', '', [404, false]],
  ['/..%5cetc%5cpasswd', '', [404, false]],
  ['/a%5Cb', '', [404, false]],

  // encoded slash alone: cannot name a file, passed on
  ['/a%2fb', '', [404, true]],
  ['/%40scope%2Fname', '', [404, true]],

  // dotfiles, empty segments
  ['/.env', '', [404, true]],
  ['/.git/config', '', [404, true]],
  ['/%2eenv', '', [404, true]],
  ['/a/.htpasswd', '', [404, true]],
  ['//hello.txt', '', [404, true]],
  ['/a//b', '', [404, true]],
  ['//', '', [404, true]],

  // mounts
  ['/assets/app.js', '/assets', { segments: ['app.js'], directory: false }],
  ['/assets', '/assets', { segments: [], directory: false }],
  ['/assets/', '/assets', { segments: [], directory: true }],
  ['/assetsx/app.js', '/assets', [404, true]],
  ['/other/app.js', '/assets', [404, true]],
  ['/assets/../secret', '/assets', [404, false]],
  ['/assets/%2e%2e/secret', '/assets', [404, false]],
  ['/assets//x', '/assets', [404, true]],
];

test('mapRequestPath: hostile and ordinary paths', () => {
  for (const [path, base, expected] of cases) {
    const got = mapRequestPath(path, base);
    const label = `${JSON.stringify(path)} on ${JSON.stringify(base || '/')}`;
    if (Array.isArray(expected)) {
      assert.equal(got.kind, 'refuse', `${label}: expected a refusal, got ${JSON.stringify(got)}`);
      if (got.kind !== 'refuse') continue;
      assert.deepEqual([got.status, got.passable], expected, `${label}: ${got.reason}`);
    } else {
      assert.deepEqual(got, { kind: 'path', ...expected }, label);
    }
  }
});

test('isFingerprinted: hashed build outputs only', () => {
  const yes = [
    'app.3f9a8c1b.js', 'main-5f3b2a1c9d.css', 'chunk.0123456789abcdef0123.js', 'logo.a1b2c3d4.svg',
    'index-BwXq3k9L.js', 'app-5HNDF2B2.js', 'vendor.Ab12_xYz.mjs', 'font.deadbee1.woff2',
  ];
  const no = [
    'app.js', 'index.html', 'jquery-migrate.js', 'bootstrap.min.css', 'report-20240101.pdf', 'app.12345678.js',
    'pdf-worker2021.js', 'react-dom-production.js', 'app.3f9a8c1.js', 'app.3f9a8c1b', '3f9a8c1b.js',
    'app.deadbeef.js', 'font-awesome.css', 'styles.ABCDEFGH.css', 'photo-abcdefgh.jpg', 'app.3f9a8c1b.js/',
  ];
  for (const name of yes) assert.ok(isFingerprinted(name), name);
  for (const name of no) assert.ok(!isFingerprinted(name), name);
});
