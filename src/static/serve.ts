import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { OutgoingHttpHeaders } from 'node:http';
import { extname, join, sep } from 'node:path';
import { contentType } from 'mime-types';
import type { StaticOptions } from '../config/schema.ts';
import { clientError } from '../errors.ts';
import type { Handler, Stage } from '../pipeline/compose.ts';
import { textReply } from '../pipeline/reply.ts';
import type { Context, Encoding, Reply, StoredVariant, Variants } from '../pipeline/context.ts';
import type { EncodedStore } from './encoded.ts';
import type { CachedFile, FileCache } from './file-cache.ts';
import {
  evaluatePreconditions, fileValidators, httpDate, ifRangeHolds, parseRange, type RangeDecision,
} from '../http/conditional.ts';
import { contentRange, unsatisfiableRange } from '../http/range.ts';
import { dateFields } from '../http/dates.ts';
import { isFingerprinted, mapRequestPath, type Refusal } from './path.ts';
import { createSharedWork } from '../shared-work.ts';
import { checkIndex, mountBase, realpathStrategy, resolveRoot } from './root.ts';

export interface StaticStageOptions {
  /** true: what is not a file here goes to `next` (the proxy behind); false: 404 / 405 here. */
  readonly fallthrough: boolean;
  /** The route prefix stripped from the path before it maps to the root (default '/'). */
  readonly mountPath?: string;
  /** Where encoded files are kept (shared by the app's static stages); none: encoded per request. */
  readonly encoded?: EncodedStore;
  /** Small files kept in memory (shared by the app's static stages); none: every request opens the file. */
  readonly files?: FileCache;
  /** The clock (ms): Last-Modified is capped at it, and a reply sent again gets its Date (default Date.now). */
  readonly now?: () => number;
}

const ALLOW = 'GET, HEAD';
const ignore = () => {};

/** Precompressed siblings, as nginx gzip_static / brotli_static and Caddy's `precompressed` name them. */
const SIBLING: Readonly<Record<Encoding, string>> = { br: '.br', zstd: '.zst', gzip: '.gz' };

// O_NONBLOCK: opening a FIFO someone left in the root must not block a thread-pool thread until a
// writer appears (it is refused after fstat). No effect on regular files.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * The static file stage. Serves GET and HEAD from `options.root` with validators, conditionals and
 * single byte ranges; the response writer sends the FileBody and closes its handle. Whole 200s offer
 * `variants` to the compression stage (see `variantsFor`); this stage never negotiates codings.
 *
 * Statuses decided on the disk (the path checks are in path.ts, with their table):
 *   symlink whose realpath leaves the root   403, never passed on (nginx disable_symlinks does 403)
 *   file the server may not read (EACCES)    403, never passed on
 *   no such file, directory without index,   404, or `next` when falling through
 *   not a regular file (FIFO, socket, device)
 */
export function createStaticStage(options: StaticOptions, opts: StaticStageOptions): Stage {
  const root = resolveRoot(options.root);
  const index = checkIndex(options.index);
  const base = mountBase(opts.mountPath ?? '/');
  const { fallthrough, encoded, files } = opts;
  const now = opts.now ?? Date.now;
  // A reply sent again without the chain (src/server/replies.ts) gets the Date of the second it is
  // sent in; over HTTP/1.1 the head Node wrote for it is then reused whole (src/server/h1-head.ts).
  const stampDate = dateFields(now);
  const { cacheControl, immutableCacheControl } = options;
  const realpathOf = realpathStrategy(root);
  const rootPrefix = root.endsWith(sep) ? root : root + sep;
  const isInsideRoot = (real: string): boolean => real === root || real.startsWith(rootPrefix);

  /**
   * Files being read to be kept, by path: the requests that find a file not kept while another
   * reads it wait for that read instead of opening and reading it too (a file nobody asked for
   * yet, or one just changed, under 1,000 requests in flight: ~570 opens and ~950 reads for its
   * first 1,000, and each its own fast encoding of the bytes). They get the entry kept, or open
   * the file themselves when none was (too large to keep, refused, changed while read); null says
   * there is no file to use (a precompressed sibling absent or older than its file: ~490 failed
   * opens in those 1,000 otherwise).
   */
  const loads = createSharedWork<Loaded>();
  /**
   * The read under way for `path` (`waiting`), or `done` when `path` is now this caller's to read:
   * it calls `done` as soon as it knows what it keeps (before passing a request on to the origin,
   * which the waiters must not wait for), and again, harmlessly (the first call settles), whatever
   * happens.
   */
  function loadOf(path: string): { readonly waiting: Promise<Loaded>; readonly done?: undefined } | { readonly waiting?: undefined; readonly done: (kept: Loaded) => void } {
    const lead: { done?: (kept: Loaded) => void } = {};
    const waiting = loads.run(path, () => new Promise<Loaded>((resolve) => { lead.done = resolve; }));
    return lead.done === undefined ? { waiting } : { done: lead.done };
  }

  /** Refusals: passed on when they only mean "not a file here", else the error. */
  function refuse(ctx: Context, next: Handler, r: Refusal): Promise<Reply> {
    ctx.notes.set('static', r.reason);
    if (fallthrough && r.passable) return next(ctx);
    throw r.status === 400 ? clientError.badRequest('Bad Request: malformed path')
      : r.status === 403 ? clientError.forbidden()
      : clientError.notFound();
  }

  /** Opens `file` once and checks the handle: inside the root, a directory or a regular file. */
  async function openChecked(file: string): Promise<Opened> {
    let handle: FileHandle;
    try {
      handle = await open(file, OPEN_FLAGS);
    } catch (err) {
      return openFailure(err);
    }
    let keep = false;
    try {
      // After open, on what was opened: a traversal through a symlink cannot reach outside the root.
      if (!isInsideRoot(await realpathOf(handle, file))) return OUTSIDE_ROOT;
      const stats = await handle.stat();
      if (stats.isDirectory()) return DIRECTORY;
      if (!stats.isFile()) return NOT_REGULAR;
      keep = true;
      return { kind: 'file', handle, stats };
    } finally {
      if (!keep) await closeQuietly(handle);
    }
  }

  /**
   * The encoded forms of a file, for the compression stage (the only caller of get and put):
   * - get: the kept encoding (memory, `encoded`) with the token it was kept with, else a
   *   precompressed sibling (`app.js.br`) that is a regular file inside the root and not older than
   *   the file (a stale sibling would serve old content), opened fresh, with `siblingToken`; its
   *   handle belongs to the caller. Undefined: none.
   * - put: keeps an encoding made from this file with its token, keyed by path, ETag and coding;
   *   offered only when a store is configured and the file is small enough for it.
   * Content-Type, ETag (suffixed with the token by the compression stage) and Cache-Control stay
   * the file's. 304s offer them too: `identity` tells the compression stage a small file's size,
   * so the 304 varies exactly when the 200 does.
   */
  function variantsFor(file: string, stats: FileFacts, etag: string, identity?: Buffer): Variants {
    const keyOf = (coding: Encoding) => `${file}\0${etag}\0${coding}`;
    return {
      identity,
      get: (coding) => keptEncoding(keyOf(coding)) ?? openSibling(coding, file + SIBLING[coding], stats.mtimeMs),
      put: encoded !== undefined && stats.size <= encoded.maxEntrySize
        ? (coding, body, token) => encoded.set(keyOf(coding), body, token)
        : undefined,
    };
  }

  function keptEncoding(key: string): StoredVariant | undefined {
    const kept = encoded?.get(key);
    return kept === undefined ? undefined : { body: kept.body, token: kept.token, held: () => encoded!.holds(key, kept) };
  }

  /**
   * A precompressed sibling. A small one is kept in memory like any small file (`files`): a hit
   * then costs no open, fstat, read and close through the thread pool.
   */
  async function openSibling(coding: Encoding, path: string, notBefore: number): Promise<StoredVariant | undefined> {
    if (files === undefined) return openSiblingFile(coding, path, notBefore, undefined);
    const kept = await files.get(path);
    if (kept !== undefined) return keptSibling(coding, path, kept, notBefore);
    const load = loadOf(path);
    if (load.waiting !== undefined) {
      const loaded = await load.waiting;
      if (loaded === null) return undefined;
      return loaded !== undefined ? keptSibling(coding, path, loaded, notBefore) : openSiblingFile(coding, path, notBefore, undefined);
    }
    return openSiblingFile(coding, path, notBefore, load.done);
  }

  /** Opens (and, when small, reads and keeps) a sibling; `done`: this caller reads it for the ones waiting. */
  async function openSiblingFile(coding: Encoding, path: string, notBefore: number, done: ((kept: Loaded) => void) | undefined): Promise<StoredVariant | undefined> {
    let entry: Loaded;
    try {
      let opened: Opened;
      try {
        opened = await openChecked(path);
      } catch {
        return undefined; // an unexpected error on the sibling: serve without it
      }
      if (opened.kind !== 'file') {
        entry = null;
        return undefined;
      }
      if (opened.stats.mtimeMs < notBefore) {
        entry = null;
        await closeQuietly(opened.handle);
        return undefined;
      }
      const { handle, stats } = opened;
      if (files && stats.size <= files.maxFileSize) {
        const body = await readAndClose(handle);
        if (body.length !== stats.size) return undefined; // changed while read: serve without it
        entry = files.keep(path, body, stats);
        return entry === undefined ? { body, token: siblingToken(coding, stats) } : keptSibling(coding, path, entry, notBefore);
      }
      return { body: { kind: 'file', handle, offset: 0, length: stats.size }, token: siblingToken(coding, stats) };
    } finally {
      done?.(entry);
    }
  }

  /** A sibling kept in memory, unless it is older than the file it encodes (it would serve old content). */
  function keptSibling(coding: Encoding, path: string, kept: CachedFile, notBefore: number): StoredVariant | undefined {
    if (kept.stats.mtimeMs < notBefore) return undefined;
    return { body: kept.body, token: siblingToken(coding, kept.stats), held: () => files!.holds(path, kept) };
  }

  return async function serveStatic(ctx, next) {
    const get = ctx.method === 'GET';
    if (!get && ctx.method !== 'HEAD') {
      if (fallthrough) return next(ctx);
      // "The origin server MUST generate an Allow header field in a 405 response" (RFC 9110 §15.5.6).
      return textReply(405, 'Method Not Allowed', { allow: ALLOW });
    }

    const mapped = mapRequestPath(ctx.path, base);
    if (mapped.kind === 'refuse') return refuse(ctx, next, mapped);
    const name = mapped.directory ? index : mapped.segments[mapped.segments.length - 1];
    const file = mapped.directory ? join(root, ...mapped.segments, index) : join(root, ...mapped.segments);

    let done: ((kept: Loaded) => void) | undefined;
    if (files !== undefined) {
      const kept = await files.get(file);
      if (kept) return answer(ctx, name, file, kept.stats, kept.body, kept);
      const load = loadOf(file);
      if (load.waiting !== undefined) {
        const loaded = await load.waiting;
        if (loaded) return answer(ctx, name, file, loaded.stats, loaded.body, loaded);
      }
      done = load.done;
    }
    try {
      return await openAndAnswer(ctx, next, mapped.directory, name, file, done ?? ignore);
    } finally {
      done?.(undefined);
    }
  };

  /** A file not kept in memory: opened, and when small read and kept; `kept` is told what it keeps, before anything else is awaited. */
  async function openAndAnswer(ctx: Context, next: Handler, directory: boolean, name: string | undefined, file: string, kept: (entry: CachedFile | undefined) => void): Promise<Reply> {
    const opened = await openChecked(file);
    if (opened.kind !== 'file' || !files || opened.stats.size > files.maxFileSize) kept(undefined);
    if (opened.kind === 'refuse') return refuse(ctx, next, opened);
    if (opened.kind === 'directory') {
      // A directory asked for with '/' whose index is a directory: nothing to serve.
      if (directory) return refuse(ctx, next, NOT_REGULAR);
      // Relative references in its index resolve against the slash form. The path has no empty
      // segment (path.ts), so the Location cannot become '//host' (an open redirect).
      return bodyless(ctx, textReply(301, 'Moved Permanently', { location: `${ctx.path}/${ctx.query}` }));
    }

    const { handle, stats } = opened;
    if (files && stats.size <= files.maxFileSize) {
      // Small: read once (one read for the whole file), keep it, answer from memory.
      const body = await readAndClose(handle);
      if (body.length !== stats.size) {
        kept(undefined);
        return answer(ctx, name, file, { ...stats, size: body.length }, body); // changed while read: do not keep
      }
      const entry = files.keep(file, body, stats);
      kept(entry);
      return answer(ctx, name, file, stats, body, entry);
    }
    let handedOver = false;
    try {
      const reply = answer(ctx, name, file, stats, handle);
      handedOver = reply.body !== null && !Buffer.isBuffer(reply.body);
      return reply;
    } finally {
      if (!handedOver) await closeQuietly(handle);
    }
  }

  /**
   * The answer for a regular file, its bytes in memory or behind an open handle (handed over in the
   * body). A whole 200 from a file kept in memory (`kept`) may be sent again (Reuse) while the
   * file cache holds it unchecked: the same bytes, validators and fields.
   */
  function answer(ctx: Context, name: string | undefined, file: string, stats: FileFacts, content: Buffer | FileHandle, kept?: CachedFile): Reply {
    const get = ctx.method === 'GET';
    const size = stats.size;
    const at = now();
    const validators = fileValidators(size, stats.mtimeMs, at);
    const headers: OutgoingHttpHeaders = {
      etag: validators.etag,
      'last-modified': httpDate(validators.lastModified),
    };
    const cache = name !== undefined && isFingerprinted(name) ? immutableCacheControl : cacheControl;
    if (cache !== null) headers['cache-control'] = cache;

    const precondition = evaluatePreconditions(ctx.headers, validators);
    const inMemory = Buffer.isBuffer(content);
    // A 304 carries ETag, Last-Modified and Cache-Control, no body (RFC 9110 §15.4.5).
    if (precondition === 'not-modified') {
      return { status: 304, headers, body: null, variants: variantsFor(file, stats, validators.etag, inMemory ? content : undefined) };
    }
    if (precondition === 'failed') return bodyless(ctx, textReply(412, 'Precondition Failed'));

    // "Range handling is defined only for GET" (§14.2): HEAD gets the whole 200.
    const ifRange = ctx.headers['if-range'];
    const range: RangeDecision = get && ctx.headers.range !== undefined &&
        (ifRange === undefined || (typeof ifRange === 'string' && ifRangeHolds(ifRange, validators)))
      ? parseRange(ctx.headers.range, size)
      : FULL;
    if (range.kind === 'unsatisfiable') {
      return unsatisfiableRange(size);
    }

    headers['content-type'] = typeOf(name ?? '');
    headers['x-content-type-options'] = 'nosniff';
    headers['accept-ranges'] = 'bytes';
    let status = 200;
    let offset = 0;
    let length = size;
    if (range.kind === 'partial') {
      status = 206;
      offset = range.start;
      length = range.end - range.start + 1;
      headers['content-range'] = contentRange(range.start, range.end, size);
    }
    headers['content-length'] = length;
    const variants = status === 200 ? variantsFor(file, stats, validators.etag, inMemory ? content : undefined) : undefined;
    // Last-Modified is capped at now for a file dated in the future: that one changes with time.
    const reuse = status === 200 && kept !== undefined && stats.mtimeMs <= at ? { valid: () => files!.holds(file, kept), stamp: stampDate } : undefined;
    if (!get) return { status, headers, body: null, variants, reuse };
    const body = inMemory ? content.subarray(offset, offset + length) : { kind: 'file' as const, handle: content, offset, length };
    return { status, headers, body, variants, reuse };
  }
}

/** What answering needs to know of a file. */
type FileFacts = Pick<Stats, 'size' | 'mtimeMs'>;

/**
 * The token that names a precompressed sibling's bytes in the ETag suffix: its coding, size and
 * mtime in ms, in hex, as the file's own ETag is made (`br.1f4.18c3f0e2a41`). A rewritten sibling
 * gets another token even when the file it encodes, and so the identity tag, did not change.
 */
function siblingToken(coding: Encoding, stats: FileFacts): string {
  return `${coding}.${stats.size.toString(16)}.${Math.floor(stats.mtimeMs).toString(16)}`;
}

/** What a read for others kept: the entry, none (open it yourself), or null: no file there to use (siblings). */
type Loaded = CachedFile | undefined | null;

type Opened =
  | { readonly kind: 'file'; readonly handle: FileHandle; readonly stats: Stats }
  | { readonly kind: 'directory' }
  | Refusal;

const DIRECTORY: Opened = { kind: 'directory' };
const FULL: RangeDecision = { kind: 'full' };
const OUTSIDE_ROOT: Refusal = { kind: 'refuse', status: 403, reason: 'symlink leaves the root', passable: false };
const NOT_REGULAR: Refusal = { kind: 'refuse', status: 404, reason: 'not a regular file', passable: true };
const NOT_FOUND: Refusal = { kind: 'refuse', status: 404, reason: 'not found', passable: true };
const NOT_READABLE: Refusal = { kind: 'refuse', status: 403, reason: 'not readable', passable: false };

/** What a failed open means for the client; unexpected errors (EMFILE, EIO) propagate as 500. */
function openFailure(err: unknown): Opened {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT': case 'ENOTDIR': case 'ENAMETOOLONG': case 'ELOOP':
      return NOT_FOUND;
    case 'EISDIR': // Windows cannot open a directory: it is one
      return DIRECTORY;
    case 'EACCES': case 'EPERM':
      return NOT_READABLE;
    default:
      throw err;
  }
}

/** HEAD answers carry the headers of the GET answer and no body. */
function bodyless(ctx: Context, reply: Reply): Reply {
  if (ctx.method === 'HEAD') reply.body = null;
  return reply;
}

function typeOf(name: string): string {
  const ext = extname(name);
  // contentType adds the charset for text types: "text/css; charset=utf-8".
  return (ext.length > 1 && contentType(ext)) || 'application/octet-stream';
}

/** A whole file in one read; the handle is closed either way. */
async function readAndClose(handle: FileHandle): Promise<Buffer> {
  try {
    return await handle.readFile();
  } finally {
    await closeQuietly(handle);
  }
}

/** Closing a read-only descriptor cannot lose data; its error must not hide the one in flight. */
async function closeQuietly(handle: FileHandle): Promise<void> {
  try {
    await handle.close();
  } catch {
    // ignored on purpose
  }
}
