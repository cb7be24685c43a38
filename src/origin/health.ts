import type { HealthCheckConfig } from '../config/schema.ts';
import type { Timers } from '../timers.ts';

/**
 * Active health checks. Each upstream is probed on its own timer, jittered so upstreams (and a
 * fleet of edges) do not probe in step, with at most one probe in flight: the next is scheduled
 * when the last one ends. `fails` failed probes in a row take an upstream out, `passes` good ones
 * in a row bring it back (HAProxy's fall and rise).
 */

export interface Probed {
  readonly name: string;
  /** False once `fails` probes in a row failed, until `passes` in a row succeed. Starts true. */
  checkedUp: boolean;
  /** Failed probes in a row (0 after a good one). */
  consecutiveFails: number;
  consecutivePasses: number;
  /** The last probe's outcome: `200`, `status 500`, `timed out after 2000 ms`, an error code. */
  lastCheck: string | null;
}

export interface HealthChecker {
  /** Resolves when no probe is in flight (tests wait on it after moving the clock). */
  settled(): Promise<void>;
  /** Stops the timers and aborts probes in flight. */
  close(): void;
}

export interface HealthCheckerOptions<T extends Probed> {
  readonly targets: readonly T[];
  readonly config: HealthCheckConfig;
  /** One probe: resolves with the response status; must give up when `signal` aborts. */
  readonly probe: (target: T, signal: AbortSignal) => Promise<number>;
  readonly timers: Timers;
  /** In [0, 1): the jitter. */
  readonly random?: () => number;
  /** An upstream went out of rotation (`up` false) or came back. */
  readonly onChange?: (target: T, up: boolean, why: string) => void;
}

/** ±10 % around the interval. */
const JITTER = 0.2;

export function statusExpected(expect: HealthCheckConfig['expect'], status: number): boolean {
  for (const [low, high] of expect) if (status >= low && status <= high) return true;
  return false;
}

export function createHealthChecker<T extends Probed>(options: HealthCheckerOptions<T>): HealthChecker {
  const { config, timers } = options;
  const random = options.random ?? Math.random;
  const inFlight = new Map<T, { promise: Promise<void>; abort: AbortController }>();
  const cancels = new Map<T, () => void>();
  let closed = false;

  function schedule(target: T, delay: number): void {
    if (closed) return;
    cancels.set(target, timers.setTimeout(() => {
      cancels.delete(target);
      run(target);
    }, delay));
  }

  function record(target: T, ok: boolean, outcome: string): void {
    target.lastCheck = outcome;
    if (ok) {
      target.consecutiveFails = 0;
      target.consecutivePasses++;
      if (!target.checkedUp && target.consecutivePasses >= config.passes) {
        target.checkedUp = true;
        options.onChange?.(target, true, `${target.consecutivePasses} good health checks in a row (${outcome})`);
      }
    } else {
      target.consecutivePasses = 0;
      target.consecutiveFails++;
      if (target.checkedUp && target.consecutiveFails >= config.fails) {
        target.checkedUp = false;
        options.onChange?.(target, false, `${target.consecutiveFails} failed health checks in a row (${outcome})`);
      }
    }
  }

  function run(target: T): void {
    if (closed || inFlight.has(target)) return;
    const abort = new AbortController();
    let timedOut = false;
    const cancelTimeout = timers.setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, config.timeout);
    const promise = (async () => {
      let ok: boolean;
      let outcome: string;
      try {
        const status = await options.probe(target, abort.signal);
        ok = !timedOut && statusExpected(config.expect, status);
        outcome = timedOut ? `timed out after ${config.timeout} ms` : `status ${status}`;
      } catch (err) {
        ok = false;
        outcome = timedOut ? `timed out after ${config.timeout} ms` : errorText(err);
      }
      cancelTimeout();
      inFlight.delete(target);
      if (closed) return;
      record(target, ok, outcome);
      schedule(target, config.interval * (1 - JITTER / 2 + JITTER * random()));
    })();
    inFlight.set(target, { promise, abort });
  }

  // The first probes are spread over the first interval.
  for (const target of options.targets) schedule(target, config.interval * random());

  return {
    async settled() {
      while (inFlight.size > 0) await Promise.all([...inFlight.values()].map((p) => p.promise));
    },
    close() {
      closed = true;
      for (const cancel of cancels.values()) cancel();
      cancels.clear();
      for (const { abort } of inFlight.values()) abort.abort();
    },
  };
}

function errorText(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  return e?.code ?? e?.cause?.code ?? e?.message ?? String(err);
}
