import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

// Which variant Node's AsyncContextFrame class has: its prototype is the variant, and reading it
// does not make Node decide (reading `enabled` would).
const variantOf = "Object.getPrototypeOf(require('internal/async_context_frame')).name";

test('runtime/async-context.ts makes Node settle how it carries async context', () => {
  const script = `
    const before = ${variantOf};
    import('./src/runtime/async-context.ts').then(() => console.log(before, ${variantOf}));
  `;
  const output = execFileSync(process.execPath, ['--expose-internals', '-e', script], { encoding: 'utf8' }).trim();
  assert.equal(output, 'InactiveAsyncContextFrame ActiveAsyncContextFrame');
});

test('main.ts imports runtime/async-context.ts before any other module', () => {
  const imports = readFileSync('src/main.ts', 'utf8').split('\n').filter((line) => line.startsWith('import '));
  assert.equal(imports[0], "import './runtime/async-context.ts';");
});
