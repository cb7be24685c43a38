/**
 * Request path → file name segments, pure. Every input is hostile: the path is checked segment by
 * segment before anything touches the disk.
 *
 * What each vector gets, and whether a falling-through stage passes it on (`passable`):
 *
 *   vector                                          status  passable  why
 *   path not starting with '/'                      400     no        not an origin-form path (RFC 9112 §3.2.1)
 *   '%' not followed by two hex digits              400     no        malformed (RFC 3986 §2.1)
 *   escapes that are not UTF-8 (%ff, %c0%af)        400     yes       valid URI, only no UTF-8 file name (a Latin-1 origin may want
 *                                                                     it); the other checks run on the raw bytes before decoding
 *   '.' / '..' in any encoding (.., %2e%2e, .%2E)   404     no        clients remove dot segments (RFC 3986 §5.2.4; %2E ≡ '.' §6.2.2.2): hostile
 *   NUL, raw or %00                                 404     no        never a file name; the classic truncation attack
 *   raw '\' or %5C                                  404     no        a separator on Windows origins; not valid raw in a URI
 *   %2F                                             404     yes       cannot name a file; proxied APIs use it (npm: @scope%2Fname)
 *   %2F hiding a dot segment (..%2F, %2F..)         404     no        an origin that decodes %2F would walk up
 *   dotfile segment (.git, .env), except a leading  404     yes       hidden, as if absent; /.well-known/ is public (RFC 8615)
 *     /.well-known
 *   empty inner segment (a//b)                      404     yes       no file has an empty name
 *   outside the mount prefix                        404     yes       the router sent us something we do not own
 *
 * 404 rather than 403 for hidden and hostile names, so a scanner learns nothing about what exists.
 * The checks that need the disk (symlinks leaving the root: 403) are in serve.ts.
 */

export type MappedPath =
  /** Decoded segments under the root; `directory` when the path ends in '/'. */
  | { readonly kind: 'path'; readonly segments: readonly string[]; readonly directory: boolean }
  | Refusal;

export interface Refusal {
  readonly kind: 'refuse';
  readonly status: 400 | 403 | 404;
  /** For the access log (ctx.notes), never for the client. */
  readonly reason: string;
  /** True when the path merely cannot name a file here: a falling-through stage passes it on. */
  readonly passable: boolean;
}

const refusal = (status: Refusal['status'], reason: string, passable: boolean): Refusal =>
  ({ kind: 'refuse', status, reason, passable });

const MALFORMED_ESCAPE = /%(?![0-9A-Fa-f]{2})/;

/**
 * Maps `path` (percent-encoded, no query) below the mount `base` ('' for '/', else the prefix
 * without its trailing slash) to decoded segments. A non-passable refusal wins over a passable one
 * found earlier in the path, so `/a//../b` is refused, not passed on.
 */
export function mapRequestPath(path: string, base: string): MappedPath {
  if (path.charCodeAt(0) !== 0x2f /* '/' */) return refusal(400, 'path does not start with /', false);
  if (base !== '' && path !== base && !path.startsWith(`${base}/`)) return refusal(404, 'outside the mount', true);
  const rest = path.slice(base.length);
  // '/assets' on the mount '/assets/': the mount directory itself, without its slash (→ 301).
  if (rest === '') return { kind: 'path', segments: [], directory: false };

  const parts = rest.slice(1).split('/');
  const directory = parts[parts.length - 1] === '';
  if (directory) parts.pop();

  const segments: string[] = [];
  let passable: Refusal | undefined;
  for (let i = 0; i < parts.length; i++) {
    const result = decodeSegment(parts[i], i === 0 && base === '');
    if (typeof result === 'string') segments.push(result);
    else if (!result.passable) return result;
    else passable ??= result;
  }
  return passable ?? { kind: 'path', segments, directory };
}

/** One segment: its decoded file name, or why it cannot be one. */
function decodeSegment(raw: string, firstOfUrl: boolean): string | Refusal {
  if (raw === '') return refusal(404, 'empty segment', true);
  if (raw.includes('\\')) return refusal(404, 'backslash', false);
  if (raw.includes('\0')) return refusal(404, 'NUL', false);
  let name = raw;
  if (raw.includes('%')) {
    if (MALFORMED_ESCAPE.test(raw)) return refusal(400, 'malformed percent-encoding', false);
    // Structure first, byte by byte: slash, backslash, dot and NUL are ASCII, so this holds whatever
    // charset an origin behind us decodes with, and before UTF-8 decoding can fail.
    const bytes = raw.replace(ESCAPE, latin1);
    if (bytes.includes('\0')) return refusal(404, 'encoded NUL', false);
    if (bytes.includes('\\')) return refusal(404, 'encoded backslash', false);
    // An origin that decodes %2F would see the dot segment in a/..%2F../b: never pass that on.
    if (bytes.includes('/')) return bytes.split('/').some(isDotSegment)
      ? refusal(404, 'dot segment behind %2F', false)
      : refusal(404, 'encoded slash', true);
    if (isDotSegment(bytes)) return refusal(404, 'dot segment', false);
    try {
      name = decodeURIComponent(raw);
    } catch {
      return refusal(400, 'percent-encoding is not UTF-8', true);
    }
  }
  if (isDotSegment(name)) return refusal(404, 'dot segment', false);
  if (name.charCodeAt(0) === 0x2e /* '.' */ && !(firstOfUrl && name === '.well-known')) {
    return refusal(404, 'dotfile', true);
  }
  return name;
}

const ESCAPE = /%([0-9A-Fa-f]{2})/g;
const latin1 = (_: string, hex: string): string => String.fromCharCode(Number.parseInt(hex, 16));
const isDotSegment = (name: string): boolean => name === '.' || name === '..';

/**
 * A fingerprinted file name: `name.<hash>.ext` or `name-<hash>.ext`, where the hash is
 * - 8+ lower-case hex digits with at least one digit and one letter (webpack, Parcel: app.3f9a8c1b.js,
 *   main-5f3b2a1c9d.css), or
 * - exactly 8 base64url/base32 characters with at least one digit and one upper-case letter
 *   (Vite/Rollup: index-BwXq3k9L.js; esbuild: app-5HNDF2B2.js).
 * Requiring a digit and a letter keeps words and dates out (jquery-migrate.js, report-20240101.pdf,
 * pdf-worker2021.js): a false positive caches a mutable file for a year, a miss only costs revalidations.
 */
export const FINGERPRINTED =
  /^.+[.-](?:(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}|(?=[0-9A-Za-z_]*[0-9])(?=[0-9A-Za-z_]*[A-Z])[0-9A-Za-z_]{8})\.[0-9A-Za-z]+$/;

export const isFingerprinted = (name: string): boolean => FINGERPRINTED.test(name);
