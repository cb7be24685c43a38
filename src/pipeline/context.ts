import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import type { SiteConfig, RouteConfig } from '../config/schema.ts';

/**
 * The request facts every stage reads. Built once by the server's request adapter from either an
 * HTTP/2 stream or an HTTP/1.1 request, so stages never care which protocol carried it.
 */
export interface Context {
  readonly method: string;
  readonly scheme: 'https' | 'http';
  /** Host as the client sent it (`:authority` or `Host`), port included. Validated syntax. */
  readonly authority: string;
  /** Lower-cased host name without port, for routing and cache keys. */
  readonly host: string;
  /** The origin-form request target as received: path plus query, still percent-encoded. */
  readonly target: string;
  /** Path part of the target (percent-encoded, begins with '/'). */
  readonly path: string;
  /** Query part including the leading '?', or ''. */
  readonly query: string;
  /** Request headers, lower-case names, no pseudo-headers. */
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** '2' for HTTP/2 streams, '1.1' or '1.0' for HTTP/1.x. */
  readonly httpVersion: string;
  /** The request body. Empty-ended for requests that carry none. */
  readonly body: Readable;
  /**
   * Whether the request carries content: HTTP/2 without END_STREAM on its HEADERS, HTTP/1.1 with
   * a non-zero Content-Length or chunked. A request without content is forwarded without any.
   */
  readonly hasBody: boolean;
  /** Aborted when the client goes away before the response is finished. */
  readonly signal: AbortSignal;
  /** process.hrtime.bigint() at arrival. */
  readonly startedAt: bigint;
  /** Set by the router. */
  site?: SiteConfig;
  route?: RouteConfig;
  /**
   * Sends an interim 1xx response (103 Early Hints) to this client ahead of the final one
   * (RFC 9110 §15.2: a proxy MUST forward 1xx responses). Set by the server; absent for contexts
   * no client waits on (background revalidation) and after the final response has started.
   */
  readonly sendInformational?: (status: number, headers: Readonly<Record<string, string | string[]>>) => void;
  /** Set by stages for the access log and Cache-Status (e.g. 'hit', 'miss'). */
  readonly notes: Map<string, string>;
  /**
   * The protocol an HTTP/1.1 request asks to switch its connection to (RFC 9110 §7.8), set only
   * for the WebSocket upgrades the listener takes (server/upgrade.ts): the cache lets it pass, and
   * the origin is asked to switch too; a 101 from it comes back as a Reply with a `tunnel`.
   */
  readonly upgrade?: string;
}

/** A file body: the response writer sends `length` bytes from `offset` and closes the handle. */
export interface FileBody {
  readonly kind: 'file';
  readonly handle: FileHandle;
  readonly offset: number;
  readonly length: number;
}

/** What a response body can be. `null` for none (HEAD, 204, 304). */
export type ReplyBody = Buffer | Readable | FileBody | null;

/**
 * A response being built. Header names are lower-case. The server's response writer is the
 * only place that turns this into bytes on the wire.
 */
export interface Reply {
  status: number;
  headers: OutgoingHttpHeaders;
  body: ReplyBody;
  /** Encoded forms of this (identity) body that are already made or can be kept. */
  variants?: Variants;
  /** Set when this exact reply may be sent again without the chain (see Reuse). */
  reuse?: Reuse;
  /**
   * A 101 (Switching Protocols) from the origin to a request with `upgrade`: the origin's
   * connection, now speaking that protocol. Whoever writes the 101 joins it to the client's
   * connection (server/upgrade.ts), or destroys it.
   */
  tunnel?: Duplex;
  /**
   * The origin's trailer fields (RFC 9110 §6.5), filled in once its body has ended; present only
   * where the origin's header announced them (`Trailer`) or the content is gRPC's, whose status
   * comes as trailers. HTTP/2 clients get them after the body (server/respond.ts).
   */
  trailers?: Trailers;
}

/** Trailer fields that arrive with the end of a body: `fields` stays null until then, or when none came. */
export interface Trailers {
  fields: Record<string, string | string[]> | null;
}

/**
 * `reply` with `trailers` when there are some. Only then is the field set: most replies have none,
 * and one object shape for them keeps the server's reads of a reply monomorphic.
 */
export function withTrailers(reply: Reply, trailers: Trailers | undefined): Reply {
  if (trailers !== undefined) reply.trailers = trailers;
  return reply;
}

/**
 * A reply the server may send again to a later request of the same shape without running the
 * chain (src/server/replies.ts): same method, scheme, authority, target and Accept-Encoding, and
 * none of the request fields that could change the answer. Offered by the stage that answered
 * from state it holds (a fresh cache hit, a kept static file); a stage that adds anything that
 * depends on more than that shape (a client's address, its rate) drops it, and a stage that
 * rebuilds the reply passes it on only when the new reply is as deterministic.
 */
export interface Reuse {
  /** Whether the chain would still answer exactly this: still fresh, the same stored record, file or variant. */
  valid(): boolean;
  /**
   * Called once for each response sent: counts it, and answers the fields that differ per response
   * (Age, Cache-Status) — the same object for as long as they do not change, so the server can keep
   * the whole header block ready between changes.
   */
  stamp?(): Readonly<OutgoingHttpHeaders>;
}

/** Both conditions: a reply made from a reusable one and a stored variant whose own validity is `held`. */
export function reuseWith(reuse: Reuse | undefined, held: (() => boolean) | undefined): Reuse | undefined {
  if (reuse === undefined || held === undefined) return undefined;
  return { valid: () => reuse.valid() && held(), stamp: reuse.stamp };
}

export const isFileBody = (body: ReplyBody): body is FileBody =>
  body !== null && !Buffer.isBuffer(body) && (body as FileBody).kind === 'file';

/** Content codings Outpost produces (RFC 9110 §8.4.1). */
export type Encoding = 'br' | 'zstd' | 'gzip';

/**
 * One stored encoded body and the token that names its exact bytes. The compression stage puts the
 * token in the ETag suffix (`"abc"` → `"abc-br11"`), so a strong validator names one byte sequence:
 * the fast Brotli body and the Brotli 11 body that later replaces it are different bytes and get
 * different tags (RFC 9110 §8.8.3: a strong validator changes whenever the bytes do).
 */
export interface StoredVariant {
  readonly body: Exclude<ReplyBody, null>;
  /** `<coding><level>` for bodies Outpost encoded (`br2`, `br11`, `gzip4`); another token for siblings. */
  readonly token: string;
  /** Whether its holder still holds these very bytes under this token (see Reuse); absent: unknown. */
  readonly held?: () => boolean;
}

/**
 * Encoded forms of one identity response, offered by whoever holds them (the cache for a stored
 * response, the static stage for precompressed siblings), so compression happens once per object
 * and encoding and a hit only sends stored bytes. The compression stage is the only consumer.
 * Call get and put on the object: the cache's are methods on a prototype (engine.ts).
 */
export interface Variants {
  /** A ready encoded body (exact length) with its token, or undefined when none is stored. */
  get(encoding: Encoding): StoredVariant | undefined | Promise<StoredVariant | undefined>;
  /** Keep an encoded body made from the identity bytes `from`; called off the hot path. Optional. */
  put?(encoding: Encoding, body: Buffer, token: string, from: Buffer): void;
  /** The complete identity body when it is in memory (a cache hit), to encode without re-reading. */
  readonly identity?: Buffer;
}

/** Releases a body that will not be sent: closes a file, destroys a stream. */
export function disposeBody(body: ReplyBody | undefined): void {
  if (body === null || body === undefined || Buffer.isBuffer(body)) return;
  if (isFileBody(body)) {
    void body.handle.close().catch(() => {});
  } else {
    body.on('error', () => {}); // an origin body destroyed unread may still report its abort
    body.destroy();
  }
}
