/**
 * Field syntax (RFC 9110 §5): what a field name and a field value may hold.
 */

/** A field name as Outpost keeps them: a token (§5.1, §5.6.2), lower-case. */
export const FIELD_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

/** A field value (§5.5: field-vchar, SP, HTAB, obs-text): what Node's own check lets through; never CR, LF or NUL. */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
