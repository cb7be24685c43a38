import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The kernel's range for ports it hands out by itself (listen on port 0, outgoing connections). */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535];
}

/**
 * A loopback port nothing listens on, so a connection to it is refused. Chosen below the
 * ephemeral range and checked free: a port bound with listen(0) and released could be handed to
 * another test's listener running at the same time (seen: a pool test's "dead" upstream answered).
 */
export async function refusedPort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 20_000;
  const span = Math.max(1, Math.min(low, 32_768) - floor);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = floor + Math.floor(Math.random() * span);
    const server = createServer();
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      return port;
    }
  }
  throw new Error('refusedPort: no free port found below the ephemeral range');
}
