/**
 * What a client may not tell the origin through a caching edge. Common frameworks read these
 * request fields as overrides of the URL, host, scheme, port or method (Symfony, Laravel,
 * Express's method-override, Rails, Spring, IIS URL Rewrite, ...). None is part of the cache key,
 * so an origin that reflects one (an absolute link built from X-Forwarded-Host, a redirect to
 * X-Original-URL) would have its poisoned answer stored under the clean URL and served to
 * everyone: web cache poisoning through unkeyed inputs. On routes that cache they are removed,
 * except those the operator keeps (`proxy.requestHeaders.keep`, for an origin that needs one and
 * varies on it).
 */
export const OVERRIDE_FIELDS: readonly string[] = [
  'x-host', 'x-original-host', 'x-forwarded-server', 'x-host-override', // host
  'x-forwarded-scheme', 'x-forwarded-ssl', 'front-end-https', 'x-url-scheme', // scheme
  'x-forwarded-port', // port
  'x-forwarded-prefix', 'x-forwarded-path', 'x-forwarded-uri', // path prefix
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-override-url', // whole URL (IIS, Symfony)
  'x-http-method-override', 'x-http-method', 'x-method-override', // method
];

/**
 * Fields that name the client's address, set by proxies and CDNs (nginx's common X-Real-IP,
 * Akamai's True-Client-IP, Cloudflare's CF-Connecting-IP, Fastly's Fastly-Client-IP, ...) and read
 * by origins as the truth. Sent by a client that is not a trusted proxy, each is a lie about who
 * asked (rate limits, allow lists, logs at the origin): removed, as X-Forwarded-For and Forwarded
 * are replaced (forwarded.ts); a trusted proxy's pass on. `proxy.requestHeaders.keep` keeps one.
 */
export const CLIENT_ADDRESS_FIELDS: readonly string[] = [
  'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-client-ip', 'client-ip',
  'x-cluster-client-ip', 'x-originating-ip',
];

export interface RequestHeaderRules {
  /** Fields set (or replaced) on every request to the origin; names lower-case. */
  readonly set: Readonly<Record<string, string>>;
  /** Fields removed from every request to the origin. */
  readonly remove: readonly string[];
  /** Override fields let through on caching routes. */
  readonly keep: readonly string[];
}

/** The fields to drop from a forwarded request: the operator's, plus the overrides where the route caches. */
export function droppedFields(rules: RequestHeaderRules, caching: boolean): Set<string> {
  const keep = new Set(rules.keep);
  const drop = new Set(rules.remove);
  if (caching) for (const field of OVERRIDE_FIELDS) if (!keep.has(field)) drop.add(field);
  return drop;
}

/** `drop` plus the client-address fields the rules do not keep: for requests from peers that are not trusted proxies. */
export function droppedFromClients(drop: ReadonlySet<string>, rules: RequestHeaderRules): Set<string> {
  const keep = new Set(rules.keep);
  return new Set([...drop, ...CLIENT_ADDRESS_FIELDS.filter((field) => !keep.has(field))]);
}

/**
 * Whether a request's content goes to the origin. A GET or HEAD body has no defined meaning
 * (RFC 9110 §9.3.1, §9.3.2) and the cache key does not see it: it is not forwarded.
 */
export const forwardsBody = (ctx: { readonly hasBody: boolean; readonly method: string }): boolean =>
  ctx.hasBody && ctx.method !== 'GET' && ctx.method !== 'HEAD';
