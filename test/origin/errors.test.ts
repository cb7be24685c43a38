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
