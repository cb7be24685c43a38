import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';

/** Schema pieces shared by the config sections: values with units, ports, host patterns. */

/** A value with a unit ("16KB", "10s"), parsed to a number; the message says what was expected. */
const withUnit = (parse: (value: unknown) => number | undefined, expected: string) => (fallback: string) =>
  z.unknown().default(fallback).transform((value, ctx) => {
    const parsed = parse(value);
    if (parsed === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return parsed;
  });

export const size = withUnit(parseSize, 'a size such as 16KB or 1MB');
export const duration = withUnit(parseDuration, 'a duration such as 10s or 500ms');
/**
 * A deadline or an idle limit: 0 would not mean "none" here but "at once" (every connection closed
 * at the first look, every upload timed out), so it is refused with the key's name.
 */
export const timeout = (fallback: string) => duration(fallback).refine((ms) => ms > 0, { error: 'expected more than 0s' });
/** Bytes per second: "500B/s", "1KB/s" or a number. */
export const byteRate = withUnit((value) => parseSize(typeof value === 'string' ? value.replace(/\/s\s*$/i, '') : value), 'a data rate such as 500B/s or 1KB/s');

export const port = z.number({ error: (i) => `expected a port number, got ${JSON.stringify(i.input)}` })
  .int().min(0).max(65535);

// A host pattern: "*", "example.com", "*.example.com" (IDN hosts in their xn-- form).
export const hostPattern = z.string().trim().toLowerCase().regex(/^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])$/,
  { error: (i) => `expected a host name, "*.domain" or "*", got ${JSON.stringify(i.input)}` });

/** The message a nested schema's issue gets when it is re-reported from a transform. */
export function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  return issue.message;
}
