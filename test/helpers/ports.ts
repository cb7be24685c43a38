import { createServer } from 'node:net';

/** A loopback port nothing listens on now: taken from the OS, then let go (a refusing origin, a free port for a server to start on). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
