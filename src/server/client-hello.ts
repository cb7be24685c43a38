/**
 * The server name a TLS client asks for, read from its ClientHello without terminating TLS, so a
 * connection can be passed through to another server by SNI. Pure and bounded: the caller feeds
 * what it has read so far and is told to read more, that the bytes are not a ClientHello Outpost
 * will route, or the name.
 *
 * RFC 8446 §5.1 (records), §4.1.2 (ClientHello), §4.2 (extensions); RFC 6066 §3 (server_name).
 */

export type HelloResult =
  | { readonly kind: 'more' }
  | { readonly kind: 'hello'; readonly servername: string | null }
  | { readonly kind: 'invalid'; readonly reason: string };

/** RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes." */
const MAX_RECORD = 16_384;
/**
 * The largest ClientHello we wait for: 16 KB. Browsers send 0.5–2 KB (a post-quantum key share
 * included); a larger one is an attack on our memory, not a client.
 */
export const MAX_HELLO = 16_384;
/** Records a ClientHello may be split over: a few in practice; one byte per record is a slow-read attack. */
export const MAX_RECORDS = 8;

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const SERVER_NAME = 0;
const HOST_NAME = 0;

const MORE: HelloResult = { kind: 'more' };
const invalid = (reason: string): HelloResult => ({ kind: 'invalid', reason });

/** Thrown by the cursor when a length runs past its container. */
class Truncated extends Error {}

class Cursor {
  #data: Buffer;
  #at: number;
  #end: number;
  constructor(data: Buffer, at = 0, end = data.length) {
    this.#data = data;
    this.#at = at;
    this.#end = end;
  }
  get left(): number { return this.#end - this.#at; }
  u8(): number { this.#need(1); return this.#data[this.#at++]; }
  u16(): number { this.#need(2); const v = this.#data.readUInt16BE(this.#at); this.#at += 2; return v; }
  skip(n: number): void { this.#need(n); this.#at += n; }
  /** A sub-cursor over the next `n` bytes, which this one skips. */
  take(n: number): Cursor { this.#need(n); const sub = new Cursor(this.#data, this.#at, this.#at + n); this.#at += n; return sub; }
  bytes(n: number): Buffer { this.#need(n); const b = this.#data.subarray(this.#at, this.#at + n); this.#at += n; return b; }
  #need(n: number): void { if (n > this.left) throw new Truncated(); }
}

/** Reads records from the start of `data`; the handshake message may span several. */
export function readClientHello(data: Buffer): HelloResult {
  const fragments: Buffer[] = [];
  let handshakeBytes = 0;
  let offset = 0;
  for (let records = 0; ; records++) {
    if (records === MAX_RECORDS) return invalid(`ClientHello split over more than ${MAX_RECORDS} records`);
    if (data.length - offset < 5) return MORE;
    const type = data[offset];
    const major = data[offset + 1];
    const minor = data[offset + 2];
    const length = data.readUInt16BE(offset + 3);
    if (type !== HANDSHAKE) return invalid(records === 0 ? 'not a TLS handshake' : 'a record other than the handshake inside the ClientHello');
    // legacy_record_version: 0x0301 for compatibility, 0x0303 otherwise; SSL 3.0 (0x0300) still parses.
    if (major !== 3 || minor > 4) return invalid('unknown record version');
    // §5.1: "Implementations MUST NOT send zero-length fragments of Handshake types".
    if (length === 0 || length > MAX_RECORD) return invalid('bad record length');
    if (data.length - offset - 5 < length) return MORE;
    fragments.push(data.subarray(offset + 5, offset + 5 + length));
    handshakeBytes += length;
    offset += 5 + length;
    if (handshakeBytes < 4) continue;
    const head = fragments.length === 1 ? fragments[0] : Buffer.concat(fragments);
    if (head[0] !== CLIENT_HELLO) return invalid('the first handshake message is not a ClientHello');
    const messageLength = head.readUIntBE(1, 3);
    if (messageLength > MAX_HELLO) return invalid(`ClientHello over ${MAX_HELLO} bytes`);
    if (handshakeBytes < 4 + messageLength) continue;
    return parseClientHello(head.subarray(4, 4 + messageLength));
  }
}

/** §4.1.2 ClientHello: legacy_version, random, legacy_session_id, cipher_suites, compression, extensions. */
function parseClientHello(body: Buffer): HelloResult {
  try {
    const c = new Cursor(body);
    c.skip(2 + 32); // legacy_version, random
    const sessionId = c.u8();
    if (sessionId > 32) return invalid('session id over 32 bytes');
    c.skip(sessionId);
    const suites = c.u16();
    if (suites < 2 || suites % 2 !== 0) return invalid('bad cipher suite list');
    c.skip(suites);
    const compression = c.u8();
    if (compression < 1) return invalid('no compression method');
    c.skip(compression);
    // Before TLS 1.2 a ClientHello may end here: no extensions, so no name.
    if (c.left === 0) return { kind: 'hello', servername: null };
    const extensions = c.take(c.u16());
    if (c.left !== 0) return invalid('bytes after the extensions');
    const seen = new Set<number>();
    let servername: string | null = null;
    while (extensions.left > 0) {
      const type = extensions.u16();
      const ext = extensions.take(extensions.u16());
      // §4.2: "There MUST NOT be more than one extension of the same type in a given extension block."
      if (seen.has(type)) return invalid('an extension appears twice');
      seen.add(type);
      if (type !== SERVER_NAME) continue;
      const name = serverName(ext);
      if (typeof name !== 'string') return name;
      servername = name;
    }
    return { kind: 'hello', servername };
  } catch (err) {
    if (err instanceof Truncated) return invalid('a length runs past its field');
    throw err;
  }
}

/** RFC 6066 §3: a ServerNameList with at most one host_name: ASCII, no trailing dot. */
function serverName(ext: Cursor): string | HelloResult {
  const list = ext.take(ext.u16());
  if (ext.left !== 0) return invalid('bytes after the server name list');
  let host: string | null = null;
  while (list.left > 0) {
    const type = list.u8();
    const name = list.bytes(list.u16());
    if (type !== HOST_NAME) continue;
    // "The ServerNameList MUST NOT contain more than one name of the same name_type."
    if (host !== null) return invalid('two host names');
    host = name.toString('latin1').toLowerCase();
    if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(host) || host.length > 253) return invalid('a server name that is not a host name');
  }
  if (host === null) return invalid('an empty server name list');
  return host;
}
