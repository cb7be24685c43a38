import { applyOverrides, readConfigFile, type Overrides } from '../config/load.ts';
import { checkConfigData, type CheckReport } from '../config/check.ts';
import type { Config } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';

/** Where the config comes from, read again on every reload: the same file and overrides as at start. */
export type ConfigSource = (options?: { ports?: boolean }) => Promise<CheckReport & { config: Config | null }>;

export function configSource(file: string | undefined, overrides: Overrides): ConfigSource {
  return async (options = {}) => {
    let raw: unknown;
    try {
      raw = applyOverrides(readConfigFile(file), overrides);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return { config: null, errors: [...err.problems], warnings: [] };
    }
    return checkConfigData(raw, options);
  };
}
