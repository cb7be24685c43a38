import { isIPv4, isIPv6 } from 'node:net';

/**
 * The PROXY protocol (HAProxy, versions 1 and 2: www.haproxy.org/download/2.9/doc/proxy-protocol.txt):
 * an L4 balancer puts the client's address in a header before the client's first byte. Read from
 * trusted balancers only, and required from them (§1: a receiver "MUST NOT try to guess whether
 * the protocol header is present or not", or a client could claim any address); written to
 * passthrough backends that want to know the client.
 */

export interface Endpoint { readonly address: string; readonly port: number }
export interface ProxyAddresses { readonly source: Endpoint; readonly destination: Endpoint }

export type ProxyHeaderResult =
  | { readonly kind: 'more' }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** `addresses` null: LOCAL (the balancer's own health check) or UNKNOWN: the connection's own endpoints stand. */
  | { readonly kind: 'header'; readonly length: number; readonly addresses: ProxyAddresses | null };

const V1_PREFIX = Buffer.from('PROXY ');
/** §2.1: "a 108-byte buffer is always enough to store all the line and a trailing zero". */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Addresses plus TLVs (AWS, GCP and Azure add a few dozen bytes): 2 KB is plenty. */
export const V2_MAX = 16 + 2048;

const MORE: ProxyHeaderResult = { kind: 'more' };
const invalid = (reason: string): ProxyHeaderResult => ({ kind: 'invalid', reason });

/** True while `data` could still become `prefix`. */
const startsLike = (data: Buffer, prefix: Buffer) => data.subarray(0, prefix.length).equals(prefix.subarray(0, Math.min(prefix.length, data.length)));

export function readProxyHeader(data: Buffer): ProxyHeaderResult {
  if (startsLike(data, V2_SIGNATURE)) return data.length < 16 ? MORE : readV2(data);
  if (startsLike(data, V1_PREFIX)) return data.length < V1_PREFIX.length ? MORE : readV1(data);
  return invalid('no PROXY protocol header');
}

const PORT = /^(0|[1-9]\d{0,4})$/;

/** §2.1: "PROXY" SP ("TCP4" | "TCP6" | "UNKNOWN") [SP src SP dst SP sport SP dport] CRLF */
function readV1(data: Buffer): ProxyHeaderResult {
  const end = data.subarray(0, V1_MAX).indexOf('\r\n');
  if (end === -1) return data.length >= V1_MAX ? invalid('PROXY v1 line over 107 bytes') : MORE;
  const line = data.toString('latin1', 0, end);
  const length = end + 2;
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'header', length, addresses: null };
  if (parts.length !== 6) return invalid('PROXY v1 line malformed');
  const [, family, src, dst, sport, dport] = parts;
  const isIP = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : undefined;
  if (isIP === undefined) return invalid(`PROXY v1 protocol ${JSON.stringify(family.slice(0, 10))}`);
  if (!isIP(src) || !isIP(dst)) return invalid(`PROXY v1 address not ${family}`);
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return invalid('PROXY v1 port out of range');
  return { kind: 'header', length, addresses: { source: { address: src, port: Number(sport) }, destination: { address: dst, port: Number(dport) } } };
}

/** §2.2: signature, version+command, family+transport, length, addresses, TLVs (ignored). */
function readV2(data: Buffer): ProxyHeaderResult {
  const versionCommand = data[12];
  if (versionCommand >> 4 !== 2) return invalid('PROXY v2 version not 2');
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid('PROXY v2 command neither LOCAL nor PROXY');
  const length = 16 + data.readUInt16BE(14);
  if (length > V2_MAX) return invalid(`PROXY v2 header over ${V2_MAX} bytes`);
  if (data.length < length) return MORE;
  // LOCAL: "the receiver must accept this connection as valid and must use the real connection endpoints".
  if (command === 0) return { kind: 'header', length, addresses: null };
  const family = data[13] >> 4;
  const transport = data[13] & 0x0f;
  if (transport !== 1 || (family !== 1 && family !== 2)) return { kind: 'header', length, addresses: null }; // UNSPEC, UNIX, datagrams
  const size = family === 1 ? 4 : 16;
  if (length - 16 < 2 * size + 4) return invalid('PROXY v2 addresses truncated');
  const ip = (at: number) => (family === 1 ? Array.from(data.subarray(at, at + 4)).join('.') : ipv6(data.subarray(at, at + 16)));
  const src = ip(16);
  const dst = ip(16 + size);
  return {
    kind: 'header',
    length,
    addresses: { source: { address: src, port: data.readUInt16BE(16 + 2 * size) }, destination: { address: dst, port: data.readUInt16BE(18 + 2 * size) } },
  };
}

/** Sixteen bytes as an IPv6 address, compressed (RFC 5952), IPv4-mapped ones in their dotted form. */
function ipv6(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return Array.from(bytes.subarray(12)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  // The longest run of two or more zero groups becomes '::'.
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) { best = i; bestLength = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best === -1) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
}

/** IPv4-mapped IPv6 (::ffff:1.2.3.4) as IPv4; the other address mapped when the families differ. */
function sameFamily({ source, destination }: ProxyAddresses): ProxyAddresses & { v4: boolean } {
  const plain = (a: string) => (a.startsWith('::ffff:') && isIPv4(a.slice(7)) ? a.slice(7) : a);
  let src = plain(source.address);
  let dst = plain(destination.address);
  const v4 = isIPv4(src) && isIPv4(dst);
  if (!v4) {
    if (isIPv4(src)) src = `::ffff:${src}`;
    if (isIPv4(dst)) dst = `::ffff:${dst}`;
  }
  return { source: { address: src, port: source.port }, destination: { address: dst, port: destination.port }, v4 };
}

function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1].split('.').map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const front = head === '' ? [] : head.split(':');
  const back = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...front, ...Array(8 - front.length - back.length).fill('0'), ...back];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The header a passthrough backend gets first: version 1 (text) or 2 (binary), PROXY over TCP. */
export function encodeProxyHeader(version: 1 | 2, addresses: ProxyAddresses): Buffer {
  const { source, destination, v4 } = sameFamily(addresses);
  if (version === 1) {
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`, 'latin1');
  }
  const ip = (a: string) => (v4 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a));
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(source.port, 0);
  ports.writeUInt16BE(destination.port, 2);
  const body = Buffer.concat([ip(source.address), ip(destination.address), ports]);
  const head = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}
