import { existsSync } from 'node:fs';

/** Debian's chromium (`apt-get install chromium`), which playwright-core drives. */
export const CHROMIUM = '/usr/bin/chromium';

/** Debian's chromium, or a skip saying why (a failure where .ci/run asks for it). */
export function chromiumSkipReason(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.OUTPOST_REQUIRE_CHROMIUM === '1') throw new Error(`${CHROMIUM} is required (OUTPOST_REQUIRE_CHROMIUM=1) but not installed`);
  return 'chromium is not installed (apt-get install chromium)';
}
