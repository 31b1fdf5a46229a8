import { AppError, ErrorCode } from '../errors';
import { REPEATED_WARNING_MS, warnAtMostEvery, type Logger } from '../logger';
import { roomTopic, type PubSub, type RoomSignal } from '../pubsub';

/**
 * Publishes ephemeral signals on their rooms' topics; a failure is logged (once a second at most,
 * with how many were left out: a user with many rooms publishes to each at once), not thrown: a
 * signal is best effort (what it says is in the store, and it expires by itself).
 */
export function quietPublisher(pubsub: PubSub, log: Logger): (roomId: string, signal: RoomSignal) => Promise<void> {
  const warn = warnAtMostEvery(log, REPEATED_WARNING_MS, 'could not publish an ephemeral signal');
  return async (roomId, signal) => {
    try {
      await pubsub.publish(roomTopic(roomId), signal);
    } catch (err) {
      warn({ err: (err as Error).message, roomId, kind: signal.kind });
    }
  };
}

/** Rethrows a store failure as SERVICE_UNAVAILABLE (retryable), keeping the client's own errors. */
export function unavailable(err: unknown): never {
  if (err instanceof AppError) throw err;
  throw new AppError(ErrorCode.ServiceUnavailable, 'Typing and presence are unreachable right now; retry shortly');
}
