import type Redis from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { rateLimited } from './errors';
import { AnsweringRedis } from './redis-client';

/** A budget of `points` per `durationS` seconds per key, answered RATE_LIMITED when spent. */
export class RateLimit {
  constructor(
    private readonly limiter: RateLimiterAbstract,
    private readonly message: string,
    /** Told of each refusal (metrics). */
    private readonly onRefused: () => void = () => undefined,
  ) {}

  /** Takes one point from the key's budget, or throws RATE_LIMITED with `retryAfterMs`. */
  async consume(key: string): Promise<void> {
    try {
      await this.limiter.consume(key);
    } catch (res) {
      if (res instanceof RateLimiterRes) throw this.refuse(res.msBeforeNext);
      throw res;
    }
  }

  /** Gives one point back to the key (e.g. an attempt that turned out well). */
  async reward(key: string): Promise<void> {
    await this.limiter.reward(key).catch(() => undefined);
  }

  /** Gives the key its whole budget back. */
  async reset(key: string): Promise<void> {
    await this.limiter.delete(key).catch(() => undefined);
  }

  private refuse(retryAfterMs: number) {
    this.onRefused();
    return rateLimited(retryAfterMs, this.message);
  }
}

/**
 * Makes rate limits shared by all instances through Redis when there is one (each falling back
 * to a per-instance limit while Redis is unreachable or not answering), in memory otherwise.
 */
export class RateLimits {
  private readonly redis?: Redis;

  /** @param onRefused told of each refusal with the budget's name (metrics). */
  constructor(redisUrl?: string, private readonly onRefused: (name: string) => void = () => undefined) {
    if (redisUrl) {
      // Auto-pipelining: the commands of every request in flight that are issued in one turn of the
      // event loop leave in one write (a send spends several budgets; each write is a system call).
      // A Redis that stops answering: the connection waits short of ready until it answers again,
      // and the budgets count in memory at once meanwhile (`rejectIfRedisNotReady`), not after a
      // timeout each, and not again when Redis wakes and runs what was queued.
      this.redis = new AnsweringRedis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000, enableAutoPipelining: true });
      this.redis.on('error', () => undefined); // the pub/sub connection reports Redis trouble already
    }
  }

  create(name: string, points: number, durationS: number, message: string): RateLimit {
    const opts = { points, duration: durationS, keyPrefix: `limit:${name}` };
    const limiter = this.redis
      ? new RateLimiterRedis({ ...opts, storeClient: this.redis, rejectIfRedisNotReady: true, insuranceLimiter: new RateLimiterMemory(opts) })
      : new RateLimiterMemory(opts);
    return new RateLimit(limiter, message, () => this.onRefused(name));
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
  }
}

