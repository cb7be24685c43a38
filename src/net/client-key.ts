/**
 * The key a client is limited by (rate limits, connections per client): its IPv4 address, or its
 * IPv6 /64 (one subscriber line gets a whole /64 and could otherwise rotate through it, as one
 * IPv4 address behind NAT stands for a whole household).
 */
export function clientKey(address: string): string {
  if (!address.includes(':')) return address;
  const halves = address.split('::');
  const head = halves[0] === '' ? [] : halves[0].split(':');
  const tail = halves.length > 1 && halves[1] !== '' ? halves[1].split(':') : [];
  const groups = halves.length > 1 ? [...head, ...Array(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail] : head;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
