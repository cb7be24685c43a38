import { BlockList, isIP } from 'node:net';

/**
 * Address lists from config (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`) as a node:net BlockList,
 * for every part that trusts or refuses addresses: the guard, trusted proxies, connection limits.
 * IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) are normalised to IPv4 by the request adapter, so an
 * IPv4 rule matches them too. Entries are validated by the config schema (`cidrProblem`).
 */

export interface AddressList {
  has(address: string): boolean;
  readonly size: number;
}

/** The family of an address already known to be a valid IP (a socket's, a validated entry): a colon means IPv6. */
export const addressType = (address: string): 'ipv4' | 'ipv6' => (address.includes(':') ? 'ipv6' : 'ipv4');

/** Whether `list` holds `address`, a valid IP (IPv4-mapped ones already plain, request.ts). */
export const listed = (list: BlockList, address: string): boolean => list.check(address, addressType(address));

/** Why an entry is not an address or CIDR range, or null when it is one. */
export function cidrProblem(entry: string): string | null {
  const [address, bits, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return `expected an IP address or CIDR range, got ${JSON.stringify(entry)}`;
  if (bits === undefined) return null;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `expected a prefix length from 0 to ${max}, got ${JSON.stringify(entry)}`;
  return null;
}

/** The entries (validated addresses and CIDR ranges) as a node:net BlockList. */
export function blockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/');
    const type = addressType(address);
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

export function addressList(entries: readonly string[]): AddressList {
  const list = blockList(entries);
  return {
    // Any string may come here (a forwarded chain's hop): only a valid IP is looked up.
    has: (address) => isIP(address) !== 0 && listed(list, address),
    size: entries.length,
  };
}
