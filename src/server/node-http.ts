import type * as Http from 'node:http';

/**
 * node:http's exports, taken without an ESM `import` of it. Importing a built-in as ESM builds its
 * module namespace from every export, getters included, and node:http's WebSocket, CloseEvent and
 * MessageEvent getters load the undici Node bundles for its own fetch (a 760 KB source string, its
 * compiled code and objects) into a process that never uses them: a bigger live V8 heap, which
 * V8 lets grow to several times its size between full collections. `getBuiltinModule` hands over
 * the module's exports object and reads nothing. (Types still come from `import type`.)
 */
export const http: typeof Http = process.getBuiltinModule('node:http');
