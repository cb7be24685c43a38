import { Readable } from 'node:stream';
import { disposeBody, type Context, type Reply } from '../pipeline/context.ts';
import type { Directives } from '../http/cache-control.ts';
import { httpDate } from '../http/dates.ts';
import { declaredLength } from '../http/content-length.ts';
import { secondaryKey, varyNames } from './key.ts';
import { tagsOf, type Found } from './entries.ts';
import { initialAge, currentAge, responseFacts, retentionMs, whyNotStorable, type StoredResponse } from './policy.ts';
import { SharedBody } from './shared-body.ts';
import type { Leader } from './flights.ts';
import { justStoredReply, storedReply } from './serve.ts';
import { appendCacheStatus, setCacheStatus } from './status.ts';
import { EMPTY_BODY, readUpTo, settledWithin, storedFields, wantsLess } from './requests.ts';
import type { CacheRoute } from './route.ts';

/**
 * A full response from the origin to a fetch meant for storing: stored when RFC 9111 §3 allows it
 * (else remembered as uncacheable, hit-for-miss), and the client answered from it while its body
 * streams to the store and to the flight's waiters (shared-body.ts).
 */

/** How long a miss may wait for a small body to be complete and stored, so Cache-Status can say `stored`. */
export const STORED_WAIT_MS = 20;

/** 8 MiB: how far one reader of a shared body may fall behind the fastest before it is cut off. */
const MAX_LAG = 8 * 1024 * 1024;

export interface Admission {
  readonly ctx: Context;
  readonly request: Directives;
  readonly primary: string;
  /** The origin's full response to a fetch meant for storing. */
  readonly reply: Reply;
  readonly requestTime: number;
  /** Cache-Status parameters so far (`fwd=uri-miss`). */
  readonly params: string;
  readonly leader?: Leader;
  /** The stale response this fetch replaces, if any. */
  readonly replaces?: Found;
  /** false: an answer that is not storable says nothing about later GETs (a POST's). */
  readonly learn?: boolean;
}

export interface Admitting {
  /** Stores the response when allowed, and answers the client from it. */
  admit(a: Admission): Promise<Reply>;
  /** Answers from a complete body that is (or was meant to be) stored: conditionals, ranges, HEAD. */
  fromBuffer(ctx: Context, primary: string, meta: StoredResponse, body: Buffer, params: string): Reply;
}

export function createAdmitting(route: CacheRoute): Admitting {
  const { engine, rules, status, hide, passThrough } = route;

  async function admit(a: Admission): Promise<Reply> {
    const { ctx, reply, primary, leader } = a;
    const responseTime = engine.now();
    // RFC 9110 §6.6.1: a response without Date gets the time it was received.
    if (reply.headers.date === undefined) reply.headers.date = httpDate(responseTime);
    const facts = responseFacts({ status: reply.status, headers: reply.headers, receivedAt: responseTime }, engine.policy);
    const fwdStatus = `${a.params}; fwd-status=${reply.status}`;
    const meta: StoredResponse = { status: reply.status, headers: storedFields(reply.headers, rules), requestTime: a.requestTime, responseTime, tags: tagsOf(reply.headers) };
    const age = currentAge(initialAge(meta, facts.date), responseTime, responseTime);
    const reason = whyNotStorable({ requestHeaders: ctx.headers, requestDirectives: a.request, status: reply.status, headers: reply.headers, facts }, rules)
      ?? (declaredLength(reply.headers) > engine.maxObjectSize ? 'too-large' : null)
      ?? (retentionMs({ facts, age, graceSeconds: engine.graceSeconds }) <= 0 ? 'no-lifetime' : null);

    if (reason !== null) {
      const learnt = reason !== 'request-no-store' && a.learn !== false;
      if (learnt) engine.hitForMiss.remember(primary, reason);
      leader?.settle(learnt ? { kind: 'pass', uncacheable: reason } : { kind: 'pass' });
      // A stale copy superseded by a response that may not be stored must not be served again
      // (unless it was only this request that asked for nothing to be stored).
      if (a.replaces !== undefined && reason !== 'request-no-store') await engine.invalidate([primary]);
      if (wantsLess(ctx) && reply.status === 200) {
        // This fetch left out the client's Range / conditionals / HEAD. The client is answered from
        // this response when it is small enough to read (a Range sliced from it, as nginx and
        // Varnish do), so the origin is not asked twice for one request; a larger one is dropped
        // and the request forwarded as the client sent it (a Range then gets the origin's 206).
        const whole = declaredLength(reply.headers) <= engine.maxObjectSize ? await readUpTo(reply.body, engine.maxObjectSize) : null;
        if (whole !== null) return fromBuffer(ctx, primary, meta, whole, `${fwdStatus}; detail=${reason}`);
        disposeBody(reply.body);
        return passThrough(ctx, a.params);
      }
      hide(reply);
      setCacheStatus(reply, status(`${fwdStatus}; detail=${reason}`));
      return reply;
    }

    engine.hitForMiss.forget(primary);
    const expected = declaredLength(reply.headers);
    let completed!: (body: Buffer | null) => void;
    const completion = new Promise<Buffer | null>((resolve) => { completed = resolve; });
    let accepted!: (stored: Found | undefined) => void;
    const stored = new Promise<Found | undefined>((resolve) => { accepted = resolve; });
    // A body that came whole (exchange.ts) and complete is no stream to tee: readers start on it ended.
    const whole = Buffer.isBuffer(reply.body) && (expected === -1 || reply.body.length === expected) ? reply.body : null;
    const source = whole ?? (reply.body === null ? EMPTY_BODY() : Buffer.isBuffer(reply.body) ? Readable.from([reply.body]) : 'kind' in reply.body ? null : reply.body);
    if (source === null) throw new TypeError('cache: the origin handler answered with a file body');
    const body = new SharedBody(source, {
      maxKept: engine.maxObjectSize,
      maxLag: Math.max(engine.maxObjectSize, MAX_LAG),
      onDone: (whole) => {
        // A truncated response is never stored (its Content-Length did not match).
        const complete = whole !== null && (expected === -1 || whole.length === expected) ? whole : null;
        completed(complete);
        if (complete === null) {
          if (whole === null && body.received > engine.maxObjectSize) engine.hitForMiss.remember(primary, 'too-large');
          accepted(undefined);
          leader?.land();
          return;
        }
        engine.save(primary, ctx.headers, meta, complete).then((saved) => {
          accepted(saved);
          leader?.land();
        }, () => { accepted(undefined); leader?.land(); });
      },
    });
    const vary = varyNames(meta.headers.vary);
    const names = vary === '*' ? [] : vary;
    const clientHeaders = hide({ status: reply.status, headers: { ...reply.headers }, body: null }).headers;
    leader?.settle({ kind: 'shared', meta, body, completed: completion, stored, clientHeaders, vary: names, secondary: secondaryKey(names, ctx.headers) });

    if (wantsLess(ctx)) {
      const whole = await completion;
      if (whole === null) return passThrough(ctx, a.params);
      const saved = await stored;
      return fromBuffer(ctx, primary, meta, whole, saved !== undefined ? `${fwdStatus}; stored` : fwdStatus);
    }
    // A whole body needs no reader of the tee: it is sent as it is, or as stored.
    const reader = whole === null ? body.attach() : null;
    if (whole === null && reader === null) return passThrough(ctx, a.params);
    // Small bodies are usually complete by now: wait a moment so Cache-Status can tell the truth.
    const saved = await settledWithin(stored, STORED_WAIT_MS);
    const cacheStatus = appendCacheStatus(clientHeaders['cache-status'], status(saved !== undefined ? `${fwdStatus}; stored` : fwdStatus));
    if (saved !== undefined && ctx.method === 'GET') {
      reader?.destroy();
      return justStoredReply(saved, clientHeaders, cacheStatus, (record) => engine.variants(record, true, true));
    }
    return { status: reply.status, headers: { ...clientHeaders, 'cache-status': cacheStatus }, body: reader ?? whole };
  }

  function fromBuffer(ctx: Context, primary: string, meta: StoredResponse, body: Buffer, params: string): Reply {
    const found: Found = { key: '', primary, meta, body };
    return storedReply({ ctx, found, view: engine.view(found), age: undefined, cacheStatus: status(params) });
  }

  return { admit, fromBuffer };
}
