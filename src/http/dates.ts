/**
 * HTTP-date (RFC 9110 §5.6.7), pure. One parser for every field that carries a date: Date, Expires,
 * Last-Modified, If-Modified-Since, If-Unmodified-Since, If-Range, Retry-After.
 */

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/i;
// obsolete RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
const RFC850_DATE = /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i;
// obsolete asctime: Sun Nov  6 08:49:37 1994
const ASCTIME_DATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i;

/**
 * An HTTP-date in ms, or undefined. Recipients MUST accept all three formats (RFC 9110 §5.6.7);
 * Date.parse is not used because it accepts far more ("1" is the year 2001) and reads asctime as
 * local time.
 */
export function parseHttpDate(value: unknown, now = Date.now()): number | undefined {
  // Two field lines (two Expires, say) are no valid date either.
  if (typeof value !== 'string') return undefined;
  let m: RegExpExecArray | null;
  if ((m = IMF_FIXDATE.exec(value)) !== null) return utc(+m[3], m[2], +m[1], +m[4], +m[5], +m[6]);
  if ((m = ASCTIME_DATE.exec(value)) !== null) return utc(+m[6], m[1], +m[2], +m[3], +m[4], +m[5]);
  if ((m = RFC850_DATE.exec(value)) !== null) {
    // "MUST interpret a timestamp that appears to be more than 50 years in the future as
    // representing the most recent year in the past that had the same last two digits."
    const thisYear = new Date(now).getUTCFullYear();
    let year = Math.floor(thisYear / 100) * 100 + Number(m[3]);
    if (year > thisYear + 50) year -= 100;
    return utc(year, m[2], +m[1], +m[4], +m[5], +m[6]);
  }
  return undefined;
}

function utc(year: number, month: string, day: number, hour: number, minute: number, second: number): number | undefined {
  // Names compared case-insensitively (RFC 9111 §4.2: "a cache SHOULD ... match ... case-insensitively").
  const mon = MONTHS.indexOf(month.charAt(0).toUpperCase() + month.slice(1).toLowerCase());
  if (mon === -1 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
  const ms = Date.UTC(year, mon, day, hour, minute, Math.min(second, 59));
  // Reject days the month does not have (31 Feb would roll over into March).
  return new Date(ms).getUTCDate() === day ? ms : undefined;
}

/** An IMF-fixdate for a header (RFC 9110 §5.6.7). */
export const httpDate = (ms: number): string => new Date(ms).toUTCString();

/**
 * The Date field of a response sent now (RFC 9110 §6.6.1), as `{ date }`: the same object for the
 * whole of a second, so a header block kept ready is rebuilt once a second, not per response.
 */
export function dateFields(now: () => number): () => Readonly<{ date: string }> {
  let second = Number.NaN;
  let fields = { date: '' };
  return () => {
    const current = Math.floor(now() / 1000);
    if (current !== second) {
      second = current;
      fields = { date: httpDate(current * 1000) };
    }
    return fields;
  };
}
