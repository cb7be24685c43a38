import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders as Http2Headers, ServerHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import type { Context, Reply, Reuse } from '../pipeline/context.ts';
import type { RequestFacts } from '../observability/channels.ts';
import { END_STREAM, http2HeaderList, reportOnClose, reportUnsent, respondOrFail, sendWholeHttp2 } from './respond.ts';
import { hostLines, peerOf, plainAddress } from './request.ts';
import { frontCounters } from './counters.ts';
import { keptHead, writeKeptHead, type KeptHead } from './h1-head.ts';
import { hash32 } from '../hash.ts';

/**
 * Replies kept ready to send again: the server's answer to a request whose reply is already known.
 *
 * A cache hit or a kept static file goes through the whole chain (router, guard, compression
 * negotiation, cache lookup, freshness, headers copied at every stage) to send bytes that were the
 * same a moment ago. When the stage that answered marks its reply reusable (Reply.reuse) and the
 * chain has answered that request's shape often enough this second (PROOF), the server keeps it
 * here under that shape: method, scheme, authority, target and Accept-Encoding. A later request
 * of exactly that shape, carrying none of the fields that could change the answer
 * (CHANGES_THE_ANSWER), gets the kept reply while its `valid()` holds — the stored record, variant
 * or file is still the one it was made from, and still fresh — with only Age and Cache-Status
 * filled in per response (`stamp`). Anything else runs the chain as before.
 *
 * The key is finer than any stage's: two requests that share it carry the same strings in every
 * field a stage reads to choose this answer, so the chain would answer them alike. A stage that
 * looks at more (the guard's address lists and rate limits) drops `reuse`. With a subscriber on
 * the response channel (access log, metrics) it is sent the same way and reported as the response
 * writer reports the chain's answers, with what the chain noted when it made the reply.
 *
 * Bounded by count and by body bytes (bodies are mostly shared with the cache's records); the
 * oldest entry goes first, and `sweep()` lets go of replies nobody asked for lately. `clear()` on
 * a reload: replies made under the old configuration are never sent again (a request in flight
 * across the reload cannot add one, see `epoch`).
 */

/** Request fields that select another answer than the plain one: conditionals, ranges, cache directives, bodies. */
const CHANGES_THE_ANSWER = [
  'cache-control', 'pragma', // RFC 9111 §5.2.1, §5.4: request directives
  'range', 'if-range', // RFC 9110 §14
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', // RFC 9110 §13
  'expect', 'content-length', 'transfer-encoding', // a request body, or the wish to send one
] as const;

/** The header block as last sent, kept while the per-response fields stay the same object. */
interface Ready<Block> {
  fields: Readonly<OutgoingHttpHeaders> | undefined;
  block: Block;
  /** Whether the block has a Date (else Node adds its own). */
  dated: boolean;
  /** The reply as sent (the kept fields with `fields` stamped in), for the end report. */
  sent: Reply;
}

interface Kept {
  /** The request as the chain saw it, what it noted and where it routed it, for the access log and metrics. */
  readonly learned: Pick<Context, 'method' | 'target' | 'host' | 'notes' | 'site' | 'route'>;
  readonly status: number;
  /** The fields as sent over HTTP/1.1; over HTTP/2 they go as a flat list, with `:status` and without connection fields. */
  readonly headers: OutgoingHttpHeaders;
  readonly body: Buffer | null;
  readonly reuse: Reuse;
  readonly h1ready: Ready<OutgoingHttpHeaders>;
  /** The text Node made of `h1ready.block`, for the next response (see h1-head.ts). */
  readonly h1head: KeptHead;
  readonly h2ready: Ready<string[]>;
  /** Learned or sent since the last sweep. */
  used: boolean;
}

/**
 * The header block for this response: the kept one, or with the per-response fields (Age,
 * Cache-Status) stamped in; rebuilt only when those change (Node leaves a header object as it
 * was; an HTTP/2 list is handed over as a copy, see sendHttp2).
 */
function headerBlock<Block>(entry: Kept, ready: Ready<Block>, make: (status: number, headers: OutgoingHttpHeaders) => Block): Block {
  const fields = entry.reuse.stamp?.();
  if (fields !== ready.fields) {
    const headers = { ...entry.headers, ...fields };
    ready.fields = fields;
    ready.block = make(entry.status, headers);
    ready.dated = entry.headers.date !== undefined || fields?.date !== undefined;
    ready.sent = { status: entry.status, headers, body: entry.body };
  }
  return ready.block;
}

const asIs = (_status: number, headers: OutgoingHttpHeaders) => headers;

export interface ReadyReplies {
  /** The key of an HTTP/2 request that may be answered from here (from its field lines, name and value in turn), or undefined. */
  keyOfHttp2(rawHeaders: readonly string[], endAfterHeaders: boolean): string | undefined;
  /** The key of an HTTP/1.1 request that may be answered from here, or undefined. */
  keyOfHttp1(req: IncomingMessage, scheme: 'https' | 'http'): string | undefined;
  /** Sends the kept reply for `key` if there is a valid one; false: run the chain. */
  sendHttp2(key: string, stream: ServerHttp2Stream, headers: Http2Headers): boolean;
  sendHttp1(key: string, req: IncomingMessage, res: ServerResponse): boolean;
  /** Keeps `reply` to `ctx` under `key` if it is reusable; `epoch`: the value of `epoch` when the request arrived. */
  learn(key: string, ctx: Context, reply: Reply, epoch: number): void;
  /**
   * Drops every kept reply not learned or sent since the last sweep. A reply is checked when it is
   * asked for, so one nobody asks for again (its record evicted, purged or expired) would hold its
   * body until pushed out; the server calls this every few seconds to let those bodies go. Idle
   * replies go without a validity check: that check reads the store's record, and a read marks it
   * as in use for the store's eviction, which would keep idle records in the cache for the sake of
   * replies nobody sends. The chain makes one again when it is asked for.
   */
  sweep(): void;
  /** Changes on every clear(). */
  readonly epoch: number;
  clear(): void;
  readonly size: number;
}

export interface ReadyRepliesOptions {
  readonly maxEntries?: number;
  /** Body bytes kept at most. */
  readonly maxBytes?: number;
  /** Chain answers a request shape needs within one second of `now` before its reply is kept (1-255; see `provenHot`). */
  readonly proof?: number;
  /** Milliseconds (the seconds `proof` counts in). */
  readonly now?: () => number;
  /** Whether anyone listens for each response's end: then the response writer reports each one, as for the chain's. */
  readonly reported?: () => boolean;
}

const isGetOrHead = (method: unknown) => method === 'GET' || method === 'HEAD';

/**
 * A reply is kept once the chain has answered its request shape PROOF times within one second.
 * Keeping one is worth it for a shape asked for many times a second (a hot object: its header block
 * is made once a second and sent to all of them); for one asked for once or twice a second it saves
 * nothing (its block is made again for nearly every response, Age and Date having moved on) and
 * costs memory: the kept reply, its blocks and its stamps live a second to a freshness lifetime, so
 * V8 moves them to its old generation, which then grows between full collections. The memory
 * soak (2,000 URLs of 1-15 KB, each asked for ~2 times a second per coding) kept every one of them
 * and its RSS was 231-279 MiB; keeping none, 188-191 MiB; with this rule 202-222, each at the same
 * CPU per request within the host's noise (2026-12-03).
 */
const PROOF = 8;
/** Counters of chain answers this second, by a hash of the request shape: 64 KiB, so that a few thousand shapes rarely share one (those that do get kept sooner). */
const PROOF_SLOTS = 65_536;

const METHOD = 0;
const AUTHORITY = 1;
const PATH = 2;
const ACCEPT = 3;
const CHAIN = 4;
const SCHEME = 5;
/**
 * What an HTTP/2 request field is to the key: a part of it, or a reason to run the chain (a field
 * that changes the answer; a Host beside :authority, which the chain checks, RFC 9113 §8.3.1).
 */
const H2_KEY_FIELDS = new Map<string, number>([
  [':method', METHOD], [':scheme', SCHEME], [':authority', AUTHORITY], [':path', PATH], ['accept-encoding', ACCEPT], ['host', CHAIN],
  ...CHANGES_THE_ANSWER.map((name) => [name, CHAIN] as const),
]);

function hasFieldThatChangesTheAnswer(headers: Readonly<Record<string, unknown>>): boolean {
  for (const name of CHANGES_THE_ANSWER) if (headers[name] !== undefined) return true;
  return false;
}

/**
 * With a subscriber on the response channel (access log, metrics), a kept reply is reported as the
 * response writer reports the chain's answers: when `destination` closes (its body handed over
 * whole), or at once when the client is gone already. False: gone, nothing to send.
 */
function reportKept(destination: Writable, facts: RequestFacts, sent: Reply): boolean {
  if (destination.destroyed) {
    reportUnsent(facts, sent);
    return false;
  }
  reportOnClose(destination, facts, sent, { bytes: Buffer.isBuffer(sent.body) ? sent.body.length : 0, failed: false });
  return true;
}

/** The request facts the access log and metrics read: the learned request's, this client's address (plain) and fields. */
function factsOf(entry: Kept, headers: IncomingHttpHeaders, remoteAddress: string, httpVersion: string): RequestFacts {
  const { learned } = entry;
  return {
    method: learned.method, target: learned.target, host: learned.host, remoteAddress, httpVersion,
    headers, startedAt: process.hrtime.bigint(), notes: learned.notes, site: learned.site, route: learned.route,
  };
}

export function createReadyReplies(options: ReadyRepliesOptions = {}): ReadyReplies {
  const maxEntries = options.maxEntries ?? 4096;
  const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
  const reported = options.reported ?? (() => false);
  const proof = options.proof ?? PROOF;
  if (!Number.isInteger(proof) || proof < 1 || proof > 255) throw new RangeError(`proof: expected 1-255, got ${proof}`);
  const now = options.now ?? Date.now;
  const kept = new Map<string, Kept>();
  let bytes = 0;
  let epoch = 0;

  // Chain answers this second per request shape, hashed: counted without keeping the key strings.
  const answers = new Uint8Array(PROOF_SLOTS);
  let countingSecond = -1;
  /** Counts one chain answer for `key`; true once it makes `proof` this second. */
  const provenHot = (key: string): boolean => {
    if (proof === 1) return true;
    const second = Math.floor(now() / 1000);
    if (second !== countingSecond) {
      answers.fill(0);
      countingSecond = second;
    }
    const slot = hash32(key) & (PROOF_SLOTS - 1);
    if (answers[slot] + 1 >= proof) return true;
    answers[slot]++;
    return false;
  };

  const drop = (key: string) => {
    const entry = kept.get(key);
    if (entry === undefined) return;
    kept.delete(key);
    bytes -= entry.body?.length ?? 0;
  };

  /** The valid kept reply for `key`, with its per-response fields, or undefined. */
  function ready(key: string): Kept | undefined {
    if (kept.size === 0) return undefined;
    const entry = kept.get(key);
    if (entry === undefined) return undefined;
    if (!entry.reuse.valid()) {
      drop(key);
      return undefined;
    }
    frontCounters.readyReplies++;
    entry.used = true;
    return entry;
  }

  return {
    keyOfHttp2(rawHeaders, endAfterHeaders) {
      if (!endAfterHeaders) return undefined;
      // One pass over the field lines (names are lowercase in HTTP/2): a look-up per line in a
      // small table instead of sixteen in the request's header object, a dictionary (1.6k of
      // 107k instructions per kept file, callgrind).
      let method: string | undefined;
      let authority: string | undefined;
      let path: string | undefined;
      let accept: string | undefined;
      for (let i = 0; i < rawHeaders.length; i += 2) {
        const role = H2_KEY_FIELDS.get(rawHeaders[i]);
        if (role === undefined) continue;
        const value = rawHeaders[i + 1];
        if (role === METHOD) method = value;
        else if (role === AUTHORITY) authority = value;
        else if (role === PATH) path = value;
        else if (role === ACCEPT && accept === undefined) accept = value;
        else if (role === SCHEME) { if (value !== 'https') return undefined; } // the chain answers another
        else return undefined; // a field that changes the answer, a Host beside :authority, a second Accept-Encoding line
      }
      if (!isGetOrHead(method) || authority === undefined || path === undefined) return undefined;
      return `${method!} https://${authority}${path}\n${accept ?? ''}`;
    },
    keyOfHttp1(req, scheme) {
      const method = req.method;
      const url = req.url;
      const host = req.headers.host;
      const accept = req.headers['accept-encoding'];
      if (!isGetOrHead(method) || req.httpVersion !== '1.1' || url === undefined || url.charCodeAt(0) !== 47 /* '/' */) return undefined;
      if (host === undefined || (accept !== undefined && typeof accept !== 'string')) return undefined;
      if (hasFieldThatChangesTheAnswer(req.headers)) return undefined;
      // Two Host lines are a 400 the chain gives (RFC 9112 §3.2).
      if (hostLines(req) !== 1) return undefined;
      return `${method} ${scheme}://${host}${url}\n${accept ?? ''}`;
    },
    sendHttp2(key, stream, requestHeaders) {
      const entry = ready(key);
      if (entry === undefined) return false;
      const list = headerBlock(entry, entry.h2ready, http2HeaderList);
      if (reported() && !reportKept(stream, factsOf(entry, requestHeaders, peerOf(stream).address, '2'), entry.h2ready.sent)) return true;
      if (stream.destroyed) return true; // reset by the client already: nothing to send
      // Node appends `date` to a list that lacks one: then it gets a copy.
      const sent = entry.h2ready.dated ? list : list.slice();
      if (entry.body === null) respondOrFail(stream, sent, END_STREAM, entry.status);
      else if (respondOrFail(stream, sent, undefined, entry.status)) sendWholeHttp2(stream, entry.body, null);
      return true;
    },
    sendHttp1(key, req, res) {
      const entry = ready(key);
      if (entry === undefined) return false;
      const fields = headerBlock(entry, entry.h1ready, asIs);
      if (reported() && !reportKept(res, factsOf(entry, req.headers, plainAddress(req.socket.remoteAddress), req.httpVersion), entry.h1ready.sent)) return true;
      writeKeptHead(res, entry.status, fields, entry.h1head);
      res.end(entry.body ?? undefined);
      return true;
    },
    learn(key, ctx, reply, at) {
      const reuse = reply.reuse;
      if (reuse === undefined || at !== epoch || reply.status < 200) return;
      const body = reply.body;
      if (body !== null && !Buffer.isBuffer(body)) return;
      const size = body?.length ?? 0;
      if (size > maxBytes || !provenHot(key)) return;
      drop(key);
      for (const oldest of kept.keys()) {
        if (kept.size < maxEntries && bytes + size <= maxBytes) break;
        drop(oldest);
      }
      const headers = { ...reply.headers };
      const dated = headers.date !== undefined;
      const learned = { method: ctx.method, target: ctx.target, host: ctx.host, notes: new Map(ctx.notes), site: ctx.site, route: ctx.route };
      const sent: Reply = { status: reply.status, headers, body };
      kept.set(key, {
        learned, status: reply.status, headers, body, reuse,
        h1ready: { fields: undefined, block: headers, dated, sent },
        h1head: keptHead(),
        h2ready: { fields: undefined, block: http2HeaderList(reply.status, headers), dated, sent },
        used: true,
      });
      bytes += size;
    },
    sweep() {
      for (const [key, entry] of kept) {
        if (entry.used) entry.used = false;
        else drop(key);
      }
    },
    get epoch() { return epoch; },
    clear() {
      epoch++;
      kept.clear();
      bytes = 0;
    },
    get size() { return kept.size; },
  };
}
