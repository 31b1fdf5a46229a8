import { AppError, ErrorCode } from '../errors';
import type { Logger } from '../logger';
import { roomTopic, type PubSub, type RoomSignal } from '../pubsub';

/**
 * Publishes an ephemeral signal on the room's topic; a failure is logged, not thrown (the signal is
 * best effort: what it says is in the store, and it expires by itself).
 */
export async function publishQuietly(pubsub: PubSub, log: Logger, roomId: string, signal: RoomSignal): Promise<void> {
  try {
    await pubsub.publish(roomTopic(roomId), signal);
  } catch (err) {
    log.warn({ err: (err as Error).message, roomId, kind: signal.kind }, 'could not publish an ephemeral signal');
  }
}

/** Rethrows a store failure as SERVICE_UNAVAILABLE (retryable), keeping the client's own errors. */
export function unavailable(err: unknown): never {
  if (err instanceof AppError) throw err;
  throw new AppError(ErrorCode.ServiceUnavailable, 'Typing and presence are unreachable right now; retry shortly');
}
