import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './ports.ts';
import { once } from 'node:events';

/**
 * A private redis-server on a free loopback port, started by the test and stopped by PID: never
 * someone else's instance. Where redis-server is not installed the tests skip and say so, unless
 * OUTPOST_REQUIRE_REDIS=1 (set by .ci/run), which makes that a failure.
 */
export function redisSkipReason(): string | false {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (found.status === 0) return false;
  if (process.env.OUTPOST_REQUIRE_REDIS === '1') throw new Error('redis-server is required (OUTPOST_REQUIRE_REDIS=1) but not installed');
  return 'redis-server is not installed (apt-get install redis-server)';
}

export interface TestRedis {
  url: string;
  port: number;
  /** Kill it (SIGKILL) to simulate an outage. */
  kill(): Promise<void>;
  /** Start it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const launch = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        const socket = connect(port, '127.0.0.1');
        await once(socket, 'connect');
        socket.destroy();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server did not start on ${port}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  };
  const kill = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGKILL');
    await exited;
  };
  await launch();
  return { url: `redis://127.0.0.1:${port}`, port, kill, restart: launch, stop: kill };
}
