import { test } from 'node:test';
import assert from 'node:assert/strict';
import { h1, h2, startOutpost } from '../helpers/outpost.ts';
import { errorChannel, responseEndChannel, type ErrorEvent, type ResponseEndEvent } from '../../src/observability/channels.ts';
import { waitFor } from '../helpers/wait.ts';
import { freePort } from '../helpers/ports.ts';

/**
 * A chain that fails (here: the origin refuses the connection) is answered where the response is
 * written (server/listener.ts, pipeline/reply.ts replyForError): the client gets the error's own
 * status, the 5xx is published to the error log with the request it belongs to, and the access
 * log's report carries the error's code. Over both protocols.
 */

test('a failed origin request: 502 to the client, one error event with its request, the code in the access report', async () => {
  const port = await freePort(); // nothing listens there: the origin refuses
  const outpost = await startOutpost({ sites: [{ hosts: ['*'], origin: `http://127.0.0.1:${port}` }] });
  const errors: ErrorEvent[] = [];
  const ends: ResponseEndEvent[] = [];
  const onError = (event: unknown) => errors.push(event as ErrorEvent);
  const onEnd = (event: unknown) => ends.push(event as ResponseEndEvent);
  errorChannel.subscribe(onError);
  responseEndChannel.subscribe(onEnd);
  try {
    for (const [protocol, get] of [['2', h2], ['1.1', h1]] as const) {
      const path = `/down-${protocol}`;
      const res = await get(`${outpost.url}${path}`, { ca: outpost.ca });
      assert.equal(res.status, 502, protocol);
      const end = await waitFor(() => ends.find((e) => e.request.target === path));
      assert.equal(end.status, 502);
      assert.equal(end.request.httpVersion, protocol);
      assert.equal(end.request.notes?.get('error'), 'BAD_GATEWAY');
      const logged = errors.filter((e) => e.where === 'request' && e.ctx?.target === path);
      assert.equal(logged.length, 1, `one error event for ${path}`);
    }
  } finally {
    errorChannel.unsubscribe(onError);
    responseEndChannel.unsubscribe(onEnd);
    await outpost.close();
  }
});
