import type { Config } from '../config';
import type { Logger } from '../logger';
import { MemoryPubSub } from './memory';
import { RedisBus } from './redis';
import type { PubSub } from './types';

export type { Activity, AssistantControl, PubSub, RoomSignal, Topic, UserSignal } from './types';
export { toWire, type MessageModel, type MessageWire } from './wire';
export { activityTopic, assistantControlTopic, roomTopic, sessionRevokedTopic, unsubscribeWhenSettled, userTopic } from './types';

/** Redis pub/sub when `REDIS_URL` is set (instances act as one), in-memory otherwise. */
export function createPubSub(config: Config, log: Logger): PubSub {
  return config.redisUrl ? new RedisBus(config.redisUrl, log) : new MemoryPubSub();
}
