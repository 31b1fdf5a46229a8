import type { DataSource, SelectQueryBuilder } from 'typeorm';
import type { SessionToCheck } from '../auth/sessions';
import type { Viewer } from '../auth/tokens';
import { MessageEntity } from '../db/entities';
import { isUniqueViolation } from '../db/errors';
import { badUserInput, conflict, ErrorCode, hasCode } from '../errors';
import type { Logger } from '../logger';
import { editMessageInput, isUuid, pageSize, parseInput, reactionInput, searchText, sendMessageInput } from '../validation';
import { notMember, requireDeletable, requireEditable, requireMember, requireReadableMessage, requireViewer } from './access';
import { decodeAnyMessageCursor, decodeMessageCursor, encodeMessageCursor, noCursor } from './cursors';
import type { MessageModel } from './models';
import type { MessageStore, RoomSendLimit } from './message-store';
import { connection, type Connection } from './pages';

export interface PageArgs {
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
  threadId?: string | null;
}

const DEFAULT_PAGE = 50;
const MAX_PAGE = 200;
const DEFAULT_SEARCH_PAGE = 20;
const MAX_SEARCH_PAGE = 50;
/** How long a retried send refused by a budget waits for a racing attempt with its clientId to reach the database (`MessageService.sent`). */
const RACING_SEND_GRACE_MS = 250;

/**
 * Sending, changing and reading messages: validate, authorize (`access.ts`), write through the
 * `MessageStore` (which numbers and publishes every change), present.
 */
export class MessageService {
  /**
   * @param afterSend called with each newly committed message (e.g. the assistant's mention
   *   trigger); it runs in the background and never fails the send.
   */
  constructor(
    private readonly db: DataSource,
    private readonly store: MessageStore,
    private readonly log: Logger,
    private readonly afterSend: (message: MessageEntity) => Promise<void> = async () => undefined,
    /** The room's send budget (`SENDS_PER_ROOM_PER_10S`), taken in the send's own statement. */
    private readonly roomLimit?: RoomSendLimit,
  ) {}

  /**
   * Sends a message (docs/guarantees.md, guarantees 1, 3, 4, 9): numbered, committed and then
   * published by the store; a repeated `clientId` is settled by the unique index and answers the
   * first message; the sender's read position moves to it. The room's send budget is taken in
   * the same statement (RATE_LIMITED when spent; a stranger is FORBIDDEN whatever it holds).
   * With `session` (an HTTP request whose session is not checked yet), the statement checks it
   * too, and settles it (UNAUTHENTICATED, nothing sent, when it ended).
   */
  async send(viewer: Viewer | null, raw: unknown, session?: SessionToCheck): Promise<MessageEntity> {
    const { id: authorId } = requireViewer(viewer); // signed out: UNAUTHENTICATED whatever the input
    const input = parseInput(sendMessageInput, raw);
    if (!isUuid(input.roomId)) throw notMember();
    let parentId: string | null = null;
    if (input.parentId != null) {
      await requireMember(this.db.manager, viewer, input.roomId); // a non-member learns nothing about messages
      parentId = await this.threadRootOf(input.roomId, input.parentId, 'parentId');
    }
    const clientId = input.clientId ?? null;
    let changes: MessageEntity[];
    try {
      const fields = { roomId: input.roomId, authorId, body: input.body, parentId, clientId };
      changes = await this.store.insert(this.db.manager, fields, { asMember: true, limit: this.roomLimit, session });
    } catch (err) {
      // A repeated clientId answers the first message: when the unique index refuses the insert,
      // and also when a full room's budget refuses the send before the index is reached.
      const retried = clientId && (isUniqueViolation(err, 'messages_client_id_key') || hasCode(err, ErrorCode.RateLimited));
      const first = retried ? await this.firstSent(input.roomId, authorId, clientId) : undefined;
      if (first) return first;
      throw err;
    }
    this.store.publish(changes);
    const [message] = changes;
    this.afterSend(message).catch((err) => this.log.warn({ err: (err as Error).message, messageId: message.id }, 'after-send hook failed'));
    return message;
  }

  /**
   * The message the viewer already sent with this input's `clientId` into its room (guarantee 4:
   * a retry answers the first message), if the viewer is still a member of the room; nothing for
   * input without one or that is invalid. Reads only the viewer's own message in one of their
   * rooms, so it tells a stranger (or a former member) nothing (guarantee 6).
   */
  async sent(viewer: Viewer | null, raw: unknown): Promise<MessageEntity | undefined> {
    const parsed = sendMessageInput.safeParse(raw);
    if (!viewer || !parsed.success || !parsed.data.clientId || !isUuid(parsed.data.roomId)) return undefined;
    const { roomId, clientId } = parsed.data;
    // A racing attempt with this clientId may be the one that took the budget's last place, its
    // statement not yet committed, or not yet at the database: the sends under way in the room
    // (each holds the room's row until it commits, `MessageStore.insert`) are waited for, and once
    // more after RACING_SEND_GRACE_MS, each time before it is read again. (A refusal with a new
    // clientId is answered that much later: its sender is over their budget anyway.)
    const read = () => this.firstSent(roomId, viewer.id, clientId);
    const sendsUnderWay = () => this.db.query('SELECT 1 FROM rooms WHERE id = $1 FOR SHARE', [roomId]);
    const found = await read();
    if (found) return found;
    await sendsUnderWay();
    const committed = await read();
    if (committed) return committed;
    await new Promise((resolve) => setTimeout(resolve, RACING_SEND_GRACE_MS));
    await sendsUnderWay();
    return read();
  }

  /** `authorId`'s message with `clientId` in the room, while they are still a member of it. */
  private async firstSent(roomId: string, authorId: string, clientId: string): Promise<MessageEntity | undefined> {
    const found = await this.db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .where('m.room_id = :roomId AND m.author_id = :authorId AND m.client_id = :clientId', { roomId, authorId, clientId })
      .andWhere('EXISTS (SELECT 1 FROM memberships mb WHERE mb.room_id = m.room_id AND mb.user_id = m.author_id)')
      .getOne();
    return found ?? undefined;
  }

  /** The author edits a message's body (same rules as a send); the same body again is no change. */
  async edit(viewer: Viewer | null, raw: unknown): Promise<MessageModel> {
    const input = parseInput(editMessageInput, raw);
    const { message, membership } = await requireReadableMessage(this.db.manager, viewer, input.messageId);
    requireEditable(message, membership);
    const edited = await this.store.edit(message, input.body, { userId: membership.userId, allowed: (now) => requireEditable(message, now) });
    if (edited.deletedAt) throw conflict('This message was deleted', 'messageId'); // deleted while the edit waited
    return edited;
  }

  /** The author, an OWNER or an ADMIN deletes a message, leaving a tombstone; again is no change. */
  async delete(viewer: Viewer | null, messageId: string): Promise<MessageModel> {
    const { message, membership } = await requireReadableMessage(this.db.manager, viewer, messageId);
    requireDeletable(message, membership);
    return this.store.delete(message, 'Deleted', { userId: membership.userId, allowed: (now) => requireDeletable(message, now) });
  }

  /** A member adds (`on`) or removes the viewer's reaction; a repeat is no change. */
  async react(viewer: Viewer | null, raw: unknown, on: boolean): Promise<MessageModel> {
    const input = parseInput(reactionInput, raw);
    const { message, membership } = await requireReadableMessage(this.db.manager, viewer, input.messageId);
    if (on && message.deletedAt) throw conflict('This message was deleted', 'messageId');
    return this.store.react(message, membership.userId, input.emoji, on);
  }

  /**
   * A page of a room's history in increasing seq: `first`/`after` forwards, `last`/`before`
   * backwards, the newest 50 by default; optionally one thread (its root and replies), named by
   * any of its messages, as a reply to any of them goes to it (BAD_USER_INPUT for a message of
   * another room, as for `parentId`).
   */
  async page(viewer: Viewer | null, roomId: string, args: PageArgs): Promise<Connection<MessageModel>> {
    await requireMember(this.db.manager, viewer, roomId);
    if (args.first != null && args.last != null) throw badUserInput('Pass first or last, not both', 'last');
    const after = noCursor(args.after) ? undefined : decodeMessageCursor(args.after, roomId, 'after');
    const before = noCursor(args.before) ? undefined : decodeMessageCursor(args.before, roomId, 'before');
    if (args.threadId != null && !isUuid(args.threadId)) throw badUserInput('threadId is not a message id', 'threadId');
    const threadId = args.threadId == null ? null : await this.threadRootOf(roomId, args.threadId, 'threadId');
    const forward = args.first != null || (args.last == null && after !== undefined);
    const limit = parseInput(pageSize(MAX_PAGE), (forward ? args.first : args.last) ?? DEFAULT_PAGE, forward ? 'first' : 'last');

    const scoped = () => {
      const q = this.db.getRepository(MessageEntity).createQueryBuilder('m').where('m.room_id = :roomId', { roomId });
      if (threadId) q.andWhere('(m.id = :t OR m.parent_id = :t)', { t: threadId });
      return q;
    };
    const rows = await this.window(scoped(), after, before)
      .orderBy('m.seq', forward ? 'ASC' : 'DESC')
      .limit(limit + 1)
      .getMany();
    const items = rows.map((node) => ({ node, cursor: encodeMessageCursor(roomId, node.seq) }));
    if (forward) {
      const hasPreviousPage = after !== undefined && (await scoped().andWhere('m.seq <= :after', { after }).getExists());
      return connection(items, limit, { hasPreviousPage });
    }
    const hasNextPage = before !== undefined && (await scoped().andWhere('m.seq >= :before', { before }).getExists());
    const page = connection(items, limit, { hasNextPage });
    const edges = page.edges.reverse();
    return {
      edges,
      pageInfo: {
        ...page.pageInfo,
        hasPreviousPage: items.length > limit,
        startCursor: edges[0]?.cursor ?? null,
        endCursor: edges[edges.length - 1]?.cursor ?? null,
      },
    };
  }

  /**
   * Full-text search over the messages of the viewer's rooms (or of one of them: FORBIDDEN unless
   * a member), best match first, then newest, then by id; never a deleted one:
   * `websearch_to_tsquery` over the generated, GIN-indexed `search` column, as a Relay page whose
   * cursors are the messages' own (`Message.cursor`, as for every `MessageConnection`). A page
   * `after` a result starts after the place that result has in the order now (its rank for the
   * query, read again from its text), however many matching messages were sent meanwhile: no
   * result twice, none skipped. A result deleted or edited out of the search since, or one the
   * viewer cannot read, has no place: BAD_USER_INPUT, search again.
   */
  async search(
    viewer: Viewer | null,
    args: { query: string; roomId?: string | null; first?: number | null; after?: string | null },
  ): Promise<Connection<MessageModel>> {
    const { id: userId } = requireViewer(viewer);
    const text = parseInput(searchText, args.query, 'query');
    const limit = parseInput(pageSize(MAX_SEARCH_PAGE), args.first ?? DEFAULT_SEARCH_PAGE, 'first');
    const after = noCursor(args.after) ? undefined : decodeAnyMessageCursor(args.after, 'after');
    if (args.roomId != null) await requireMember(this.db.manager, viewer, args.roomId);
    if (after && args.roomId != null && after.roomId !== args.roomId.toLowerCase()) throw badUserInput('after is a cursor of another room', 'after');
    // One row at least: whether the result `after` names has a place, then the page (none: nulls).
    const rows: Array<Record<string, unknown> & { anchors: number }> = await this.db.query(
      `WITH q AS (SELECT websearch_to_tsquery('english', $2) AS q),
       hits AS (
         SELECT m.*, ts_rank(m.search, q.q) AS search_rank FROM messages m
           JOIN memberships mb ON mb.room_id = m.room_id AND mb.user_id = $1, q
         WHERE m.search @@ q.q AND m.deleted_at IS NULL AND ($3::uuid IS NULL OR m.room_id = $3::uuid)),
       anchor AS (SELECT search_rank, created_at, id FROM hits WHERE room_id = $5::uuid AND seq = $6::integer)
       SELECT (SELECT count(*) FROM anchor)::integer AS anchors, page.* FROM (SELECT) one LEFT JOIN LATERAL (
         SELECT hits.* FROM hits
         WHERE $5::uuid IS NULL OR EXISTS (SELECT FROM anchor a WHERE hits.search_rank < a.search_rank
           OR (hits.search_rank = a.search_rank AND (hits.created_at < a.created_at OR (hits.created_at = a.created_at AND hits.id > a.id))))
         ORDER BY hits.search_rank DESC, hits.created_at DESC, hits.id
         LIMIT $4) page ON true`,
      [userId, text, args.roomId ?? null, limit + 1, after?.roomId ?? null, after?.seq ?? null],
    );
    if (after && rows[0].anchors === 0) throw badUserInput('after is not a result of this search (deleted or edited since): search again', 'after');
    const items = rows.filter((row) => row.id !== null).map((row) => {
      const node = this.store.fromRow(row);
      return { node, cursor: encodeMessageCursor(node.roomId, node.seq) };
    });
    return connection(items, limit, { hasPreviousPage: after !== undefined });
  }

  /** The root of the thread message `id` belongs to; BAD_USER_INPUT on `field` unless it is a message of the room. */
  private async threadRootOf(roomId: string, id: string, field: 'parentId' | 'threadId'): Promise<string> {
    const message = isUuid(id) ? await this.db.getRepository(MessageEntity).findOne({ where: { id, roomId }, select: { id: true, parentId: true } }) : null;
    if (!message) throw badUserInput(`${field} does not name a message of this room`, field);
    return message.parentId ?? message.id;
  }

  private window(q: SelectQueryBuilder<MessageEntity>, after?: number, before?: number) {
    if (after !== undefined) q.andWhere('m.seq > :after', { after });
    if (before !== undefined) q.andWhere('m.seq < :before', { before });
    return q;
  }
}
