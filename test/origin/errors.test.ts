import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mapOriginError } from '../../src/origin/proxy.ts';
import { errorReply } from '../../src/pipeline/reply.ts';
import { formatErrorLine } from '../../src/observability/log.ts';

test('origin failures: clients read what happened in general terms; the log says which upstream and why', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:3443'), { code: 'ECONNREFUSED' });
  const timeout = Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' });
  for (const [error, status, body] of [[refused, 502, 'Bad Gateway: the origin could not be reached\n'], [timeout, 504, 'Gateway Timeout: the origin did not answer in time\n']] as const) {
    const mapped = mapOriginError(error, 'https://10.0.0.5:3443');
    const reply = errorReply(mapped);
    assert.equal(reply.status, status);
    assert.equal(String(reply.body), body);
    assert.match(formatErrorLine({ ctx: null, error: mapped, where: 'request' }), /origin https:\/\/10\.0\.0\.5:3443: (ECONNREFUSED|UND_ERR_HEADERS_TIMEOUT)/);
  }
});

test('a 502 says how the exchange failed: unreached, closed early, or an answer that could not be used; its cause stays on the log line', () => {
  const cases: Array<[Error, string]> = [
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'Bad Gateway: the origin could not be reached'],
    [Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }), 'Bad Gateway: the origin closed the connection before its answer was complete'],
    [Object.assign(new Error('Response does not match the HTTP/1.1 protocol (Invalid status code)'), { code: 'HPE_INVALID_STATUS' }), 'Bad Gateway: the origin\'s answer could not be used'],
  ];
  for (const [error, text] of cases) assert.equal(mapOriginError(error, 'http://10.0.0.5:80').message, text, String(error.message));
  // undici's assertion messages span lines: the error log keeps one line per error.
  const assertion = Object.assign(new Error('The expression evaluated to a falsy value:\n\n  assert(statusCode >= 100)\n'), { code: 'ERR_ASSERTION' });
  const line = formatErrorLine({ ctx: null, error: mapOriginError(assertion, 'http://10.0.0.5:80'), where: 'request' });
  assert.equal(line.split('\n').length, 2, line);
  assert.match(line, /falsy value: assert\(statusCode >= 100\)/);
});
