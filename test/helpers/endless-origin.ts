import { startOrigin, type TestOrigin } from './outpost.ts';

/**
 * An origin whose `/endless` sends 64 KiB chunks (up to 256 MiB) as fast as the proxy takes them,
 * so a client that stops reading paces it through Outpost; other paths answer `quick <path>`.
 */
export interface EndlessOrigin extends TestOrigin {
  /** Bytes `/endless` has written so far. */
  written(): number;
  /** Whether its response was let go (the proxy closed it). */
  closed(): boolean;
}

export async function startEndlessOrigin(): Promise<EndlessOrigin> {
  let closed = false;
  let written = 0;
  const origin = await startOrigin((req, res) => {
    if (req.url !== '/endless') return void res.end(`quick ${req.url}`);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store' });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const pump = () => {
      while (!closed && written < 256 * 1024 * 1024) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    res.once('close', () => { closed = true; });
    pump();
  });
  return Object.assign(origin, { written: () => written, closed: () => closed });
}
