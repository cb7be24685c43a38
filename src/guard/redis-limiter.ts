import { localFallback, type RateDecision, type RateSpec, type SharedLimiter } from './rate-limit.ts';

/**
 * A rate limiter shared by every node through Redis: one key per client holding its GCRA
 * theoretical arrival time, read and moved by one Lua script (one atomic round trip per request),
 * with Redis's own clock so nodes with skewed clocks agree. Redis down or slow: this node falls
 * back to its own local limiter (each node then allows the rate on its own), counts it and reports
 * at most once a second; the shared limit resumes when Redis answers again.
 */

const SCRIPT = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowAt = tat - (burst - 1) * interval
if now < allowAt then
  return {0, 0, math.ceil(tat - now), math.ceil(allowAt - now)}
end
local nextTat = tat + interval
redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.ceil(nextTat - now) + 1000)
return {1, math.max(0, math.floor((now + burst * interval - nextTat) / interval)), math.ceil(nextTat - now), 0}
`;

export interface RedisLimiterOptions {
  readonly url: string;
  /** Key prefix: one namespace per limit (site, route). */
  readonly prefix: string;
  /** A command slower than this counts as a failure (the request goes on with the local limiter). */
  readonly timeoutMs?: number;
  readonly onError?: (error: unknown) => void;
  readonly now?: () => number;
}

export function createRedisLimiter(spec: RateSpec, options: RedisLimiterOptions): SharedLimiter {
  const timeoutMs = options.timeoutMs ?? 250;
  const fallback = localFallback(spec, options);
  const { local } = fallback;
  const failed = (error: unknown) => fallback.failed(error);
  // The Redis client is loaded when a limiter needs it, not by every process (about 25 MB of heap
  // and code); until it has connected, requests wait on it (or time out) as they did on connect().
  const connecting = import('@keyv/redis').then(({ createClient }) => {
    const client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 2000, reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000) },
    });
    client.on('error', failed);
    return client.connect().then(() => client, (error: unknown) => { failed(error); return client; });
  }, (error: unknown) => { failed(error); return undefined; });
  let sha: string | undefined;
  const interval = String(1000 / spec.rate);
  const burst = String(spec.burst);

  async function remote(key: string): Promise<RateDecision> {
    const client = await connecting;
    if (client === undefined || !client.isReady) throw new Error('redis not connected');
    const args = { keys: [options.prefix + key], arguments: [interval, burst] };
    let reply: unknown;
    try {
      sha ??= await client.scriptLoad(SCRIPT);
      reply = await client.evalSha(sha, args);
    } catch (error) {
      if (!String((error as Error)?.message).includes('NOSCRIPT')) throw error;
      sha = undefined;
      reply = await client.eval(SCRIPT, args);
    }
    const [allowed, remaining, resetMs, retryAfterMs] = (reply as number[]).map(Number);
    return { allowed: allowed === 1, remaining, resetMs, retryAfterMs };
  }

  return {
    spec,
    get fallbacks() { return fallback.fallbacks; },
    async take(key) {
      let timer: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          remote(key),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('redis rate limit timed out')), timeoutMs); }),
        ]);
      } catch (error) {
        failed(error);
        return local.take(key);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      const client = await connecting;
      if (client === undefined) return local.close();
      if (client.isOpen) await client.close().catch(() => client.destroy());
      else client.destroy();
      await local.close();
    },
  };
}
