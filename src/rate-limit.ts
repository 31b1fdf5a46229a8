import Redis, { type Command } from 'ioredis';
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
 * The budgets' connection to Redis. A command Redis has not answered within the timeout makes it
 * reconnect. A Redis that stopped answering with its connections open (a stopped process, a stalled
 * host) then holds the new connection short of ready until it answers again, and meanwhile each
 * budget counts in the instance's memory at once (`rejectIfRedisNotReady`). Before, each spend
 * waited for its own timeout, was counted in memory, and stayed queued in Redis, to be counted again
 * when Redis woke: senders who had kept within their budget were refused for seconds after.
 */
class BudgetsRedis extends Redis {
  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    const sent = super.sendCommand(command, stream);
    command.promise.catch((err: Error) => {
      if (err.message === TIMED_OUT && this.status === 'ready') this.disconnect(true);
    });
    return sent;
  }
}

/** How ioredis rejects a command that `commandTimeout` ended. */
const TIMED_OUT = 'Command timed out';

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
      this.redis = new BudgetsRedis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000, enableAutoPipelining: true });
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

