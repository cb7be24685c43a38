// The part of autocannon's programmatic API the runner uses (the package ships no types).
declare module 'autocannon' {
  interface Request { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer }
  interface Options {
    url: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    connections?: number;
    duration?: number;
    amount?: number;
    timeout?: number;
    servername?: string;
    tlsOptions?: Record<string, unknown>;
    requests?: Array<Request & { setupRequest?: (req: Request, context: object) => Request }>;
  }
  interface Histogram { p50: number; p99: number; total: number; mean: number; max: number }
  interface Result {
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    latency: Histogram;
    requests: Histogram & { sent: number };
  }
  interface Instance extends PromiseLike<Result> {
    on(event: 'response', listener: (client: object, statusCode: number, bytes: number, responseTimeMs: number) => void): this;
    /** Ends the run early (the promise then resolves with what was done). */
    stop(): void;
  }
  function autocannon(opts: Options): Instance;
  export default autocannon;
}
