/**
 * The one error type. `code` is stable (logs, metrics, tests match on it), `status` is what a
 * client sees, `cause` keeps the original error. Never re-wrap an OutpostError: rethrow it.
 */
export class OutpostError extends Error {
  readonly code: string;
  readonly status: number;
  /** Response fields the error reply carries (Cache-Status on a failed forward, Retry-After). */
  headers: Record<string, string> | undefined;
  /** What happened, for the log only (which upstream, which error): clients get the message. */
  detail: string | undefined;

  constructor(code: string, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OutpostError';
    this.code = code;
    this.status = status;
    this.headers = undefined;
    this.detail = undefined;
  }
}

/** The error with a log-only detail attached. */
export function withDetail<E extends OutpostError>(error: E, detail: string): E {
  error.detail = detail;
  return error;
}

export const isOutpostError = (err: unknown): err is OutpostError => err instanceof OutpostError;

/** Errors a client can cause, each with its precise status. */
export const clientError = {
  badRequest: (message: string) => new OutpostError('BAD_REQUEST', 400, message),
  forbidden: (message = 'Forbidden') => new OutpostError('FORBIDDEN', 403, message),
  notFound: (message = 'Not Found') => new OutpostError('NOT_FOUND', 404, message),
  /** `allow`: the methods that are (RFC 9110 §15.5.6: a 405 MUST carry an Allow field). */
  methodNotAllowed: (allow: string, message = 'Method Not Allowed') => {
    const error = new OutpostError('METHOD_NOT_ALLOWED', 405, message);
    error.headers = { allow };
    return error;
  },
  timeout: (message = 'Request Timeout') => new OutpostError('REQUEST_TIMEOUT', 408, message),
  tooLarge: (message = 'Content Too Large') => new OutpostError('PAYLOAD_TOO_LARGE', 413, message),
  headersTooLarge: (message = 'Request Header Fields Too Large') => new OutpostError('HEADERS_TOO_LARGE', 431, message),
  uriTooLong: (message = 'URI Too Long') => new OutpostError('URI_TOO_LONG', 414, message),
  notImplemented: (message = 'Not Implemented') => new OutpostError('NOT_IMPLEMENTED', 501, message),
  expectationFailed: (message = 'Expectation Failed: only 100-continue is understood') => new OutpostError('EXPECTATION_FAILED', 417, message),
  versionNotSupported: (message = 'HTTP Version Not Supported') => new OutpostError('VERSION_NOT_SUPPORTED', 505, message),
  rangeNotSatisfiable: (message = 'Range Not Satisfiable') => new OutpostError('RANGE_NOT_SATISFIABLE', 416, message),
  /** The client went away or broke its own request (a reset stream, a malformed body): nobody reads the answer (nginx's 499). */
  closed: (cause?: unknown) => new OutpostError('CLIENT_CLOSED', 499, 'client closed the request', { cause }),
  tooManyConnections: (message = 'Too Many Requests: this client has limits.connectionsPerClient connections open') => new OutpostError('TOO_MANY_CONNECTIONS', 429, message),
} as const;

/**
 * Errors the origin side causes. Their messages are what clients read, so they say what happened
 * in general terms; which upstream and which error goes to `detail` (the log).
 */
export const originError = {
  badGateway: (message: string, cause?: unknown) => new OutpostError('BAD_GATEWAY', 502, message, { cause }),
  gatewayTimeout: (message: string, cause?: unknown) => new OutpostError('GATEWAY_TIMEOUT', 504, message, { cause }),
  unavailable: (message: string, cause?: unknown) => new OutpostError('SERVICE_UNAVAILABLE', 503, message, { cause }),
} as const;

/** Invalid configuration: every problem at once, each naming its key. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
