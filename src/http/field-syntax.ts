/**
 * Field syntax (RFC 9110 §5): what a field name and a field value may hold.
 */

/** A field name as Outpost keeps them: a token (§5.1, §5.6.2), lower-case. */
export const FIELD_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** A field value (§5.5: field-vchar, SP, HTAB, obs-text): what Node's own check lets through; never CR, LF or NUL. */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Whether a comma-separated field value (§5.6.1; several lines joined) lists `token`, compared
 * ASCII case-insensitively: `Upgrade: websocket`, `Connection: upgrade`, `TE: trailers`. An item
 * with parameters or a version (`websocket/13`, `trailers;q=1`) is not the bare token.
 */
export function listsToken(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const item of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    if (item.trim().toLowerCase() === token) return true;
  }
  return false;
}
