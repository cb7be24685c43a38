import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathTable, routingPath } from '../../src/router/match.ts';

test('routingPath: escapes decoded, repeated slashes merged, dot-segments removed (RFC 3986 §6.2.2, §5.2.4); case kept', () => {
  const cases: Array<[string, string]> = [
    ['/', '/'],
    ['/api/v1/users', '/api/v1/users'],
    ['/%61dmin/secret', '/admin/secret'],
    ['/%7Euser/%7euser', '/~user/~user'],
    ['//admin//secret', '/admin/secret'],
    ['/a/b/../c', '/a/c'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/../../etc', '/etc'],
    ['/x/%2e%2e/admin', '/admin'],
    ['/admin%2fsecret', '/admin/secret'],
    ['/.well-known/acme', '/.well-known/acme'],
    ['/ADMIN/secret', '/ADMIN/secret'],
    ['/bad%zzescape', '/bad%zzescape'],
    ['/trailing/', '/trailing/'],
  ];
  for (const [path, expected] of cases) assert.equal(routingPath(path), expected, path);
});

test('routingPath: a path with nothing to normalize is the same string', () => {
  const path = '/assets/app.js';
  assert.equal(routingPath(path), path);
});

test('pathTable: the longest prefix wins; a prefix without a slash matches itself and below it only', () => {
  const table = pathTable([{ prefix: '/', value: 'root' }, { prefix: '/api', value: 'api' }, { prefix: '/api/v2/', value: 'v2' }]);
  assert.equal(table.lookup('/api'), 'api');
  assert.equal(table.lookup('/api/x'), 'api');
  assert.equal(table.lookup('/apix'), 'root');
  assert.equal(table.lookup('/api/v2/x'), 'v2');
});
