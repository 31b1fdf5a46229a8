import Redis from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { rateLimited } from './errors';

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

  /**
   * Throws RATE_LIMITED when the key's budget is spent, without taking from it: with `count`
   * after success, only what was accepted is counted (so strangers cannot spend it).
   */
  async check(key: string): Promise<void> {
    const res = await this.limiter.get(key).catch(() => null); // an unreachable store never refuses
    if (res && res.remainingPoints <= 0 && res.msBeforeNext > 0) throw this.refuse(res.msBeforeNext);
  }

  /** Takes one point from the key's budget without refusing (the pair of `check`). */
  async count(key: string): Promise<void> {
    await this.limiter.penalty(key).catch(() => undefined);
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
 * to a per-instance limit while Redis is unreachable), in memory otherwise.
 */
export class RateLimits {
  private readonly redis?: Redis;

  /** @param onRefused told of each refusal with the budget's name (metrics). */
  constructor(redisUrl?: string, private readonly onRefused: (name: string) => void = () => undefined) {
    if (redisUrl) {
      // Auto-pipelining: the commands of every request in flight that are issued in one turn of the
      // event loop leave in one write (a send spends several budgets; each write is a system call).
      this.redis = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000, enableAutoPipelining: true });
      this.redis.on('error', () => undefined); // the pub/sub connection reports Redis trouble already
    }
  }

  create(name: string, points: number, durationS: number, message: string): RateLimit {
    const opts = { points, duration: durationS, keyPrefix: `limit:${name}` };
    const limiter = this.redis
      ? new PipelinedRateLimiterRedis({ ...opts, storeClient: this.redis, insuranceLimiter: new RateLimiterMemory(opts) })
      : new RateLimiterMemory(opts);
    return new RateLimit(limiter, message, () => this.onRefused(name));
  }

  async close(): Promise<void> {
    this.redis?.disconnect();
  }
}

/**
 * `RateLimiterRedis` whose read of a budget (`get`, behind `RateLimit.check`) is a GET and a PTTL
 * sent with the connection's other commands (auto-pipelining: with a send's other budgets, one
 * write), instead of a MULTI/EXEC transaction, which ioredis always sends as a write of its own
 * (a tenth of the server's CPU per send went to it). The two replies may straddle another client's
 * command: a read that only decides whether to refuse tolerates that. `_get` is the method
 * rate-limiter-flexible's stores implement to read a key; the result has the shape its ioredis
 * `_get` returns (`[[error, points], [error, ttl]]`, or null for no key).
 */
class PipelinedRateLimiterRedis extends RateLimiterRedis {
  private readonly redis: Redis;

  constructor(opts: ConstructorParameters<typeof RateLimiterRedis>[0] & { storeClient: Redis }) {
    super(opts);
    this.redis = opts.storeClient;
  }

  async _get(rlKey: string): Promise<Array<[null, string | number]> | null> {
    const [points, ttl] = await Promise.all([this.redis.get(rlKey), this.redis.pttl(rlKey)]);
    return points === null ? null : [[null, points], [null, ttl]];
  }
}
