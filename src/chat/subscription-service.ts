import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import type { Logger } from '../logger';
import { requireMember } from './access';
import { decodeResumeCursor, refuseBeyondHead } from './cursors';
import { MessageFeed, type FeedStart } from './message-feed';
import { AddedSet } from './added-set';
import type { HubRegistry } from './room-hub';
import type { RoomStore } from './room-store';

/** Opens subscription streams: checks access, places the resume point, then streams through the room's hub. */
export class SubscriptionService {
  constructor(
    private readonly db: DataSource,
    private readonly hubs: HubRegistry,
    private readonly store: RoomStore,
    private readonly log: Logger,
  ) {}

  /**
   * A room's stream for a member: new messages by seq (`messages`, for messageAdded), or every
   * change in change order with assistant deltas (`changes`, for roomEvents). `after` is a message
   * or event cursor of the room; the stream first replays what followed it. FORBIDDEN for
   * non-members; the stream ends with a `revoked` event when the viewer leaves or is removed.
   */
  async open(
    viewer: Viewer | null,
    roomId: string,
    after: string | null | undefined,
    order: FeedStart['order'],
  ): Promise<MessageFeed> {
    const { userId } = await requireMember(this.db.manager, viewer, roomId);
    const start = after == null ? { order } : await this.resumeAfter(roomId, after, order);
    return new MessageFeed({
      log: this.log,
      roomId,
      viewerId: userId,
      start: start as FeedStart,
      acquire: () => this.hubs.acquire(roomId),
      isMember: () => this.hubs.isMember(roomId, userId),
      streaming: () => this.hubs.streaming(roomId),
    });
  }

  /**
   * Where a cursor points in both orders: a message cursor is the moment that message was
   * inserted (the client has every message up to it); an event cursor, that change and the
   * messages the client had by then; the empty string, the room's start. A cursor past
   * the room's end (forged, or from a room that was reset) is refused: it would wait silently.
   * So is an event cursor whose messages go past the room's newest one.
   */
  private async resumeAfter(roomId: string, cursor: string, order: FeedStart['order']): Promise<FeedStart> {
    // "": Apollo Client's `relayStylePagination` names an empty page's end so; the room was empty
    // when read, so everything in it since is after it: the room's start (seq 0).
    const point = cursor === '' ? { seq: 0 } : decodeResumeCursor(cursor, roomId, 'after');
    refuseBeyondHead(point, await this.store.head(roomId), 'after');
    if (point.seq === undefined) {
      return order === 'messages' ? { order, after: { seq: point.added.upTo } } : { order, after: { change: point.change, added: point.added } };
    }
    if (order === 'messages') return { order, after: { seq: point.seq } };
    const change = point.seq === 0 ? 0 : ((await this.store.insertChange(roomId, point.seq)) ?? 0);
    return { order, after: { change, added: new AddedSet(point.seq) } };
  }
}
