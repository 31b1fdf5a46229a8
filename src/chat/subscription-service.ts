import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import type { Logger } from '../logger';
import type { RoomSignal } from '../pubsub';
import { requireMember } from './access';
import { decodeMessageCursor } from './cursors';
import { createMessageFeed, type FeedEvent } from './message-feed';
import type { HubRegistry, MessageStore } from './room-hub';

/** Opens subscription streams: checks access, then resumes through the room's hub. */
export class SubscriptionService {
  constructor(
    private readonly db: DataSource,
    private readonly hubs: HubRegistry,
    private readonly store: MessageStore,
    private readonly log: Logger,
  ) {}

  /**
   * A room's events for a member, resuming after the `after` cursor when given.
   * `accept` picks which signals besides new messages pass. FORBIDDEN for non-members.
   */
  async open(
    viewer: Viewer | null,
    roomId: string,
    after: string | null | undefined,
    accept: (signal: RoomSignal) => boolean,
  ): Promise<AsyncIterableIterator<FeedEvent>> {
    await requireMember(this.db.manager, viewer, roomId);
    const afterSeq = after == null ? undefined : decodeMessageCursor(after, roomId, 'after');
    const { hub, release } = await this.hubs.acquire(roomId);
    return createMessageFeed({ hub, store: this.store, log: this.log, afterSeq, accept, onClose: release });
  }
}
