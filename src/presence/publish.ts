import { AppError, ErrorCode } from '../errors';
import { warnAtMostEvery, type Logger } from '../logger';
import { roomTopic, type PubSub, type RoomSignal } from '../pubsub';

/** How often the failure is logged at most (per logger): a user with many rooms publishes to each at once. */
const REPEATED_WARNING_MS = 1000;
const warnings = new WeakMap<Logger, (fields: Record<string, unknown>) => void>();

/**
 * Publishes an ephemeral signal on the room's topic; a failure is logged (once a second at most,
 * with how many were left out), not thrown: the signal is best effort (what it says is in the
 * store, and it expires by itself).
 */
export async function publishQuietly(pubsub: PubSub, log: Logger, roomId: string, signal: RoomSignal): Promise<void> {
  try {
    await pubsub.publish(roomTopic(roomId), signal);
  } catch (err) {
    let warn = warnings.get(log);
    if (!warn) warnings.set(log, (warn = warnAtMostEvery(log, REPEATED_WARNING_MS, 'could not publish an ephemeral signal')));
    warn({ err: (err as Error).message, roomId, kind: signal.kind });
  }
}

/** Rethrows a store failure as SERVICE_UNAVAILABLE (retryable), keeping the client's own errors. */
export function unavailable(err: unknown): never {
  if (err instanceof AppError) throw err;
  throw new AppError(ErrorCode.ServiceUnavailable, 'Typing and presence are unreachable right now; retry shortly');
}
