import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import type { Logger } from '../logger';
import type { RoomSignal } from '../pubsub';
import { badUserInput } from '../errors';
import { requireMember } from './access';
import { decodeMessageCursor } from './cursors';
import { createMessageFeed, type FeedEvent } from './message-feed';
import { toWire } from './message-service';
import type { HubRegistry } from './room-hub';
import type { RoomStore } from './room-store';

/** Opens subscription streams: checks access, then resumes through the room's hub. */
export class SubscriptionService {
  constructor(
    private readonly db: DataSource,
    private readonly hubs: HubRegistry,
    private readonly store: RoomStore,
    private readonly log: Logger,
  ) {}

  /**
   * A room's events for a member, resuming after the `after` cursor when given: new messages only
   * (`messageAdded`), or also updates and assistant deltas (`roomEvents`, which on resume first
   * re-sends the current state of replies that changed since the cursor). FORBIDDEN for
   * non-members; the stream ends with a `revoked` event when the viewer leaves or is removed.
   */
  async open(
    viewer: Viewer | null,
    roomId: string,
    after: string | null | undefined,
    events: 'messages' | 'all',
  ): Promise<AsyncIterableIterator<FeedEvent>> {
    const { userId } = await requireMember(this.db.manager, viewer, roomId);
    const afterSeq = after == null ? undefined : decodeMessageCursor(after, roomId, 'after');
    // A cursor past the newest message (forged, or from a room that was reset) would wait silently.
    if (afterSeq !== undefined && afterSeq > (await this.store.lastSeq(roomId))) {
      throw badUserInput('after is beyond the newest message of this room', 'after');
    }
    // A resuming roomEvents client also gets the current state of replies that changed meanwhile.
    const changed = afterSeq && events === 'all' ? await this.store.repliesChangedSince(roomId, afterSeq) : [];
    const initial = changed.map((message) => ({ kind: 'updated' as const, message: toWire(message) }));
    const accept = events === 'all' ? (s: RoomSignal) => s.kind === 'updated' || s.kind === 'delta' : () => false;
    const { hub, release } = await this.hubs.acquire(roomId);
    return createMessageFeed({ hub, store: this.store, log: this.log, viewerId: userId, afterSeq, accept, initial, onClose: release });
  }
}
