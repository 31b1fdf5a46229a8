import type { DataSource, EntityManager, SelectQueryBuilder } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MessageEntity } from '../db/entities';
import { isUniqueViolation } from '../db/errors';
import { badUserInput } from '../errors';
import type { Logger } from '../logger';
import { roomTopic, type MessageWire, type PubSub } from '../pubsub';
import { isUuid, pageSize, parseInput, sendMessageInput } from '../validation';
import { notMember, requireMember, requireViewer } from './access';
import { decodeMessageCursor, encodeMessageCursor } from './cursors';
import type { MessageModel } from './models';
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

/** Sending and reading messages: the send path of DESIGN.md and history pages. */
export class MessageService {
  /**
   * @param afterSend called with each newly committed message (e.g. the assistant's mention
   *   trigger); it runs in the background and never fails the send.
   */
  constructor(
    private readonly db: DataSource,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly afterSend: (message: MessageEntity) => Promise<void> = async () => undefined,
  ) {}

  /**
   * Sends a message. API.md guarantees 1, 3, 4: the room's next seq is taken under the room row's
   * lock in the same statement as the insert (commit order = seq order, no gaps); a repeated
   * `clientId` is settled by the unique index and answers the first message; the message is
   * published only after commit, and a failed publish does not fail the send (hubs heal gaps).
   */
  async send(viewer: Viewer | null, raw: unknown): Promise<MessageEntity> {
    const input = parseInput(sendMessageInput, raw);
    const { id: authorId } = requireViewer(viewer);
    if (!isUuid(input.roomId)) throw notMember();
    let parentId: string | null = null;
    if (input.parentId != null) {
      await requireMember(this.db.manager, viewer, input.roomId); // a non-member learns nothing about messages
      parentId = await this.threadRootOf(input.roomId, input.parentId);
    }
    const clientId = input.clientId ?? null;
    let message: MessageEntity;
    try {
      const fields = { roomId: input.roomId, authorId, body: input.body, parentId, clientId };
      message = await this.insertNext(this.db.manager, fields, { asMember: true });
    } catch (err) {
      if (!clientId || !isUniqueViolation(err, 'messages_client_id_key')) throw err;
      return this.db.getRepository(MessageEntity).findOneByOrFail({ roomId: input.roomId, authorId, clientId });
    }
    void this.publishAdded(message); // never waits on pub/sub: a lost signal is healed from the database
    this.afterSend(message).catch((err) => this.log.warn({ err: (err as Error).message, messageId: message.id }, 'after-send hook failed'));
    return message;
  }

  /**
   * Takes the room's next seq and inserts the message with it, in one statement: the room row
   * stays locked only while that statement runs, not across round trips to this process. A unique
   * violation (a used clientId, an already answered message) fails the whole statement, so the
   * seq is not consumed. Outside a transaction the statement commits by itself. With `asMember`
   * the author's membership is checked in the same statement (FORBIDDEN without it), so a member
   * removed a moment earlier cannot send.
   */
  async insertNext(
    manager: EntityManager,
    fields: Pick<MessageEntity, 'roomId' | 'authorId' | 'body' | 'parentId' | 'clientId'> &
      Partial<Pick<MessageEntity, 'status' | 'askedMessageId' | 'askedBy' | 'streamOwner'>>,
    { asMember = false } = {},
  ): Promise<MessageEntity> {
    const status = fields.status ?? 'COMPLETE';
    const [row] = await manager.query(
      `WITH next AS (
         UPDATE rooms SET last_seq = last_seq + 1
         WHERE id = $1 AND (NOT $9::boolean OR EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2))
         RETURNING last_seq)
       INSERT INTO messages (room_id, seq, author_id, body, parent_id, client_id, status, asked_message_id, asked_by, stream_owner)
       SELECT $1, next.last_seq, $2, $3, $4, $5, $6, $7, $8, $10 FROM next
       RETURNING id, seq, created_at, updated_at`,
      [fields.roomId, fields.authorId, fields.body, fields.parentId, fields.clientId, status, fields.askedMessageId ?? null, fields.askedBy ?? null, asMember, fields.streamOwner ?? null],
    );
    if (!row) throw notMember();
    return manager.getRepository(MessageEntity).create({
      statusReason: null,
      deltaCount: 0,
      askedMessageId: null,
      askedBy: null,
      ...fields,
      status,
      id: row.id,
      seq: row.seq,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    });
  }

  /** Publishes a committed message; a failure is logged, never thrown (the hubs heal the gap). */
  publishAdded(message: MessageModel): Promise<void> {
    return this.publish('added', message);
  }

  /** Publishes a message's new state (an assistant reply's text or status); a failure is logged. */
  publishUpdated(message: MessageModel): Promise<void> {
    return this.publish('updated', message);
  }

  private async publish(kind: 'added' | 'updated', message: MessageModel): Promise<void> {
    await this.pubsub
      .publish(roomTopic(message.roomId), { kind, message: toWire(message) })
      .catch((err) => this.log.warn({ err: (err as Error).message, roomId: message.roomId, seq: message.seq, kind }, 'publish failed'));
  }

  /**
   * A page of a room's history in increasing seq: `first`/`after` forwards, `last`/`before`
   * backwards, the newest 50 by default; optionally one thread (its root and replies).
   */
  async page(viewer: Viewer | null, roomId: string, args: PageArgs): Promise<Connection<MessageModel>> {
    await requireMember(this.db.manager, viewer, roomId);
    if (args.first != null && args.last != null) throw badUserInput('Pass first or last, not both', 'last');
    const after = args.after == null ? undefined : decodeMessageCursor(args.after, roomId, 'after');
    const before = args.before == null ? undefined : decodeMessageCursor(args.before, roomId, 'before');
    if (args.threadId != null && !isUuid(args.threadId)) throw badUserInput('threadId is not a message id', 'threadId');
    const forward = args.first != null || (args.last == null && after !== undefined);
    const limit = parseInput(pageSize(MAX_PAGE), (forward ? args.first : args.last) ?? DEFAULT_PAGE, forward ? 'first' : 'last');

    const scoped = () => {
      const q = this.db.getRepository(MessageEntity).createQueryBuilder('m').where('m.room_id = :roomId', { roomId });
      if (args.threadId) q.andWhere('(m.id = :t OR m.parent_id = :t)', { t: args.threadId });
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

  /** The thread root a reply to `parentId` belongs to; BAD_USER_INPUT unless it is a message of the room. */
  private async threadRootOf(roomId: string, parentId: string): Promise<string> {
    const parent = isUuid(parentId)
      ? await this.db.getRepository(MessageEntity).findOne({ where: { id: parentId, roomId }, select: { id: true, parentId: true } })
      : null;
    if (!parent) throw badUserInput('parentId does not name a message of this room', 'parentId');
    return parent.parentId ?? parent.id;
  }

  private window(q: SelectQueryBuilder<MessageEntity>, after?: number, before?: number) {
    if (after !== undefined) q.andWhere('m.seq > :after', { after });
    if (before !== undefined) q.andWhere('m.seq < :before', { before });
    return q;
  }
}

/** A message in the form that crosses pub/sub. */
export function toWire(m: MessageModel): MessageWire {
  return {
    id: m.id,
    roomId: m.roomId,
    seq: m.seq,
    authorId: m.authorId,
    body: m.body,
    parentId: m.parentId,
    clientId: m.clientId,
    status: m.status,
    statusReason: m.statusReason,
    deltaCount: m.deltaCount,
    createdAt: m.createdAt instanceof Date ? m.createdAt.toISOString() : m.createdAt,
  };
}
