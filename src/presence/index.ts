import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { PubSub } from '../pubsub';
import type { RateLimit } from '../rate-limit';
import { MemoryEphemeralStore } from './memory-store';
import { PresenceService } from './presence-service';
import { RedisEphemeralStore } from './redis-store';
import { TypingService } from './typing-service';

export { PresenceService } from './presence-service';
export { TypingService } from './typing-service';
export type { EphemeralStore } from './store';

/** Typing and presence of one instance, and how to stop them. */
export interface Ephemeral {
  typing: TypingService;
  presence: PresenceService;
  /** Stops timers and waits for announcements in flight (before pub/sub and the database close). */
  close(): Promise<void>;
}

/**
 * Typing and presence on Redis when `REDIS_URL` is set (shared by every instance), in memory
 * otherwise (the embedded mode: one instance). Owns docs/guarantees.md, guarantee 11.
 */
export function createEphemeral(config: Config, db: DataSource, pubsub: PubSub, log: Logger, typingBudget?: RateLimit): Ephemeral {
  const store = config.redisUrl ? new RedisEphemeralStore(config.redisUrl, log) : new MemoryEphemeralStore();
  const typing = new TypingService({ db, store, pubsub, log, ttlMs: config.typingTtlMs, budget: typingBudget });
  // Each process holds presence under its own name: a restart with the same INSTANCE_ID starts afresh.
  const presence = new PresenceService({ db, store, pubsub, log, instanceId: `${config.instanceId}/${randomUUID()}`, ttlMs: config.presenceTtlMs });
  return {
    typing,
    presence,
    async close() {
      typing.close();
      await presence.close();
      await store.close();
    },
  };
}
