import Redis from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { rateLimited } from '../errors';

/**
 * The per-user ask rate, shared by all instances through Redis when there is one (falling back
 * to a per-instance limit while Redis is unreachable), in memory otherwise.
 */
export class AskRateLimit {
  private readonly limiter: RateLimiterAbstract;
  private readonly redis?: Redis;

  constructor(asksPerMinute: number, redisUrl?: string) {
    const opts = { points: asksPerMinute, duration: 60, keyPrefix: 'assistant-asks' };
    if (redisUrl) {
      this.redis = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000 });
      this.redis.on('error', () => undefined); // the pub/sub connection reports Redis trouble already
      this.limiter = new RateLimiterRedis({ ...opts, storeClient: this.redis, insuranceLimiter: new RateLimiterMemory(opts) });
    } else {
      this.limiter = new RateLimiterMemory(opts);
    }
  }

  /** Takes one ask from the user's allowance, or throws RATE_LIMITED with `retryAfterMs`. */
  async consume(userId: string): Promise<void> {
    try {
      await this.limiter.consume(userId);
    } catch (res) {
      if (res instanceof RateLimiterRes) throw rateLimited(res.msBeforeNext, 'Too many assistant requests; retry later');
      throw res;
    }
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
  }
}
