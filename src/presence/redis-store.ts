import type { Logger } from '../logger';
import { AnsweringRedis } from '../redis-client';
import type { EphemeralStore } from './store';

/** Key names, in one place (after an optional prefix). Each sorted set's scores are deadlines in ms of Redis's clock. */
const keyNames = (prefix: string) => ({
  /** `roomId:userId` → typing deadline. */
  typing: `${prefix}typing:deadlines`,
  /** Users announced online → the latest deadline of their holders. */
  online: `${prefix}presence:online`,
  /** Prefix of a user's holders: instanceId → deadline. */
  holders: `${prefix}presence:holders:`,
});

// Every script reads the time from Redis, so instances whose clocks drift still agree.
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n`;

/** Scripts: each runs atomically, so a flip is reported to exactly one caller. */
const SCRIPTS = {
  // KEYS[1] typing; ARGV member, ttl → 1 when the member was not typing
  typingStart: `${NOW}
    local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
    if had then return 0 end
    return 1`,
  // KEYS[1] typing; ARGV member → -1 expired (claimed here), 0 gone, else ms left
  typingExpire: `${NOW}
    local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
    if not deadline then return 0 end
    local left = tonumber(deadline) - now
    if left > 0 then return left end
    redis.call('ZREM', KEYS[1], ARGV[1])
    return -1`,
  // KEYS[1] typing; ARGV limit → the members whose deadline passed, removed
  typingSweep: `${NOW}
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
    if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
    return due`,
  // KEYS[1] online; ARGV instance, ttl, prefix, users… → the users that were not online
  presenceHold: `${NOW}
    local ttl = tonumber(ARGV[2])
    local deadline = now + ttl
    local flipped = {}
    for i = 4, #ARGV do
      local user = ARGV[i]
      local key = ARGV[3] .. user
      redis.call('ZADD', key, deadline, ARGV[1])
      if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
      local latest = redis.call('ZSCORE', KEYS[1], user)
      if not latest then flipped[#flipped + 1] = user end
      if not latest or tonumber(latest) < deadline then redis.call('ZADD', KEYS[1], deadline, user) end
    end
    return flipped`,
  // KEYS[1] online; ARGV instance, user, prefix → 1 when no live holder is left (claimed here)
  presenceRelease: `${NOW}
    local key = ARGV[3] .. ARGV[2]
    redis.call('ZREM', key, ARGV[1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) > 0 then return 0 end
    redis.call('DEL', key)
    return redis.call('ZREM', KEYS[1], ARGV[2])`,
  // KEYS[1] online; ARGV limit, prefix → the users whose every holder lapsed, taken offline
  presenceSweep: `${NOW}
    local gone = {}
    local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
    for _, user in ipairs(due) do
      local key = ARGV[2] .. user
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      if #top == 0 then
        redis.call('DEL', key)
        redis.call('ZREM', KEYS[1], user)
        gone[#gone + 1] = user
      else
        redis.call('ZADD', KEYS[1], top[2], user)
      end
    end
    return gone`,
  // KEYS[1] online; ARGV users → 1 or 0 for each
  presenceOnline: `
    local flags = {}
    for i = 1, #ARGV do flags[i] = redis.call('ZSCORE', KEYS[1], ARGV[i]) and 1 or 0 end
    return flags`,
} as const;

const FIRST_CONNECT_WAIT_MS = 5000;

type Scripted = AnsweringRedis & { [name in keyof typeof SCRIPTS]: (key: string, ...args: Array<string | number>) => Promise<unknown> };

/**
 * The `EphemeralStore` on Redis, shared by every instance: sorted sets of deadlines changed by Lua
 * scripts (one round trip each, atomic). The connection never queues behind a dead Redis
 * (commands fail at once): typing then answers SERVICE_UNAVAILABLE and presence heals by heartbeat.
 */
export class RedisEphemeralStore implements EphemeralStore {
  private readonly redis: Scripted;
  /** Settles once the first connection is up (or after a while): calls made at start wait for it, later ones never wait. */
  private readonly connected: Promise<void>;

  private readonly keys: ReturnType<typeof keyNames>;

  /** `prefix` sets these keys apart from others' on the same Redis (tests that must not share them). */
  constructor(url: string, log: Logger, prefix = '') {
    this.keys = keyNames(prefix);
    // A Redis that stops answering fails the calls at once (SERVICE_UNAVAILABLE) after the first times out, until it answers again.
    const redis = new AnsweringRedis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 2000 });
    redis.on('error', (err) => log.debug({ err: err.message }, 'presence redis connection error')); // pub/sub reports it already
    for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 1, lua });
    this.redis = redis as Scripted;
    this.connected = new Promise<void>((resolve) => {
      redis.once('ready', resolve);
      setTimeout(resolve, FIRST_CONNECT_WAIT_MS).unref();
    });
  }

  /** Runs a command once the first connection is up. */
  private async call<T>(command: (redis: Scripted) => Promise<unknown>): Promise<T> {
    await this.connected;
    return (await command(this.redis)) as T;
  }

  async startTyping(roomId: string, userId: string, ttlMs: number): Promise<boolean> {
    return (await this.call((r) => r.typingStart(this.keys.typing, `${roomId}:${userId}`, ttlMs))) === 1;
  }

  async stopTyping(roomId: string, userId: string): Promise<boolean> {
    return (await this.call((r) => r.zrem(this.keys.typing, `${roomId}:${userId}`))) === 1;
  }

  async expireTyping(roomId: string, userId: string): Promise<'expired' | 'gone' | number> {
    const left = await this.call<number>((r) => r.typingExpire(this.keys.typing, `${roomId}:${userId}`));
    return left === -1 ? 'expired' : left === 0 ? 'gone' : left;
  }

  async sweepTyping(limit: number): Promise<Array<{ roomId: string; userId: string }>> {
    const due = await this.call<string[]>((r) => r.typingSweep(this.keys.typing, limit));
    return due.map((member) => {
      const [roomId, userId] = member.split(':');
      return { roomId, userId };
    });
  }

  async holdPresence(instanceId: string, userIds: string[], ttlMs: number): Promise<string[]> {
    if (userIds.length === 0) return [];
    return this.call<string[]>((r) => r.presenceHold(this.keys.online, instanceId, ttlMs, this.keys.holders, ...userIds));
  }

  async releasePresence(instanceId: string, userId: string): Promise<boolean> {
    return (await this.call((r) => r.presenceRelease(this.keys.online, instanceId, userId, this.keys.holders))) === 1;
  }

  async sweepPresence(limit: number): Promise<string[]> {
    return this.call<string[]>((r) => r.presenceSweep(this.keys.online, limit, this.keys.holders));
  }

  async online(userIds: string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    const flags = await this.call<number[]>((r) => r.presenceOnline(this.keys.online, ...userIds));
    return new Set(userIds.filter((_, i) => flags[i] === 1));
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
