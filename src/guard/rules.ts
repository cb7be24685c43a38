import type { Context } from '../pipeline/context.ts';

/**
 * A small ordered rule list, a WAF's first line: the first rule that matches decides. `deny`
 * answers 403; `allow` ends the list (later rules are not asked; address lists and rate limits
 * still apply). A path pattern is matched against the path as sent and as decoded, so `%2e` does
 * not slip past `\.` .
 */
export interface Rule {
  /** A regular expression on the path (without the query). */
  readonly path?: string;
  /** Methods, upper-case. */
  readonly method?: readonly string[];
  readonly action: 'deny' | 'allow';
}

export interface CompiledRule {
  matches(ctx: Pick<Context, 'method' | 'path'>): boolean;
  readonly action: Rule['action'];
}

export function compileRules(rules: readonly Rule[]): CompiledRule[] {
  return rules.map((rule) => {
    const path = rule.path === undefined ? undefined : new RegExp(rule.path);
    const methods = rule.method === undefined ? undefined : new Set(rule.method);
    return {
      action: rule.action,
      matches(ctx) {
        if (methods !== undefined && !methods.has(ctx.method)) return false;
        if (path === undefined) return true;
        if (path.test(ctx.path)) return true;
        const decoded = decodedPath(ctx.path);
        return decoded !== ctx.path && path.test(decoded);
      },
    };
  });
}

/** The path with percent-escapes decoded (a malformed escape leaves the path as it is). */
function decodedPath(path: string): string {
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
