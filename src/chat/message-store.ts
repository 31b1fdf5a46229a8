import type { DataSource, EntityManager } from 'typeorm';
import { MessageEntity, type MembershipEntity } from '../db/entities';
import { prepare, runPrepared } from '../db/prepared';
import { REPEATED_WARNING_MS, warnAtMostEvery, type Logger } from '../logger';
import { activityTopic, roomTopic, toWire, userTopic, type MessageModel, type PubSub } from '../pubsub';
import type { SessionToCheck } from '../auth/sessions';
import { isUnanswered, isUniqueViolation } from '../db/errors';
import { AppError, ErrorCode, badUserInput, conflict, rateLimited, unauthenticated } from '../errors';
import { lockedMembership, notMember, unreadableMessage } from './access';

/** What a new message is made of. */
export type NewMessage = Pick<MessageEntity, 'roomId' | 'authorId' | 'body' | 'parentId' | 'clientId'> &
  Partial<Pick<MessageEntity, 'status' | 'askedMessageId' | 'askedBy' | 'streamOwner'>>;

/** Runs one UPDATE of a message row with the room's next change number as its last parameter. */
export type ApplyChange = (sql: string, params: unknown[]) => Promise<MessageEntity | null>;

/**
 * `@username` as people write it: not part of a word or an e-mail address, nor with a mark drawn
 * over its last letter (`@adȧ` is not `@ada`).
 */
const MENTION = /(?<![\w@.])@([A-Za-z0-9_]{3,32})(?![\w@\p{M}])/gu;

/** The usernames a body mentions, lower-cased, each once. */
export function mentionedNames(body: string): string[] {
  return [...new Set([...body.matchAll(MENTION)].map((m) => m[1].toLowerCase()))];
}

/** SQL for the members of room `room` named in `names` (lower-cased usernames), not counting `author`. */
const MENTIONED = (room: string, author: string, names: string) => `ARRAY(
  SELECT u.id FROM users u JOIN memberships mb ON mb.user_id = u.id AND mb.room_id = ${room}
  WHERE lower(u.username) = ANY(${names}::text[]) AND u.id <> ${author} ORDER BY u.id)`;

/**
 * The columns of a message row that `fromRow` reads (not the generated `search` vector, which
 * nothing reads back), in the table's order.
 */
const MESSAGE_COLUMNS =
  'id, room_id, seq, author_id, body, parent_id, client_id, status, created_at, updated_at, asked_message_id, asked_by, status_reason, ' +
  'delta_count, stream_owner, created_change, change_seq, edited_at, deleted_at, reactions, reply_count, last_reply_at, mentions';

/** SQL: the room's send budget window (`$13` seconds long) is still running. */
const WINDOW_OPEN = 'send_window_started_at > now() - make_interval(secs => $13::integer)';

/** SQL: session `session` of user `user` stands (what `SessionService.isLive` reads). */
const SESSION_STANDS = (session: string, user: string) => `EXISTS (SELECT 1 FROM sessions WHERE id = ${session} AND user_id = ${user} AND revoked_at IS NULL)`;

/** A room's send budget: at most `points` sends per `windowS` seconds, from all members together. */
export interface RoomSendLimit {
  points: number;
  windowS: number;
}

/**
 * The send (see `MessageStore.insert`), prepared: its text crosses the wire once per connection
 * and PostgreSQL plans it once, not on every send. A reply's also updates its thread root; a
 * top-level message's has no such part, which PostgreSQL would set up on every run all the same
 * (an UPDATE of the messages table, its indexes opened) only to find no row to change.
 */
const sendStatement = (reply: boolean) =>
  prepare(
    reply ? 'message_insert_reply' : 'message_insert',
    `WITH next AS (
       UPDATE rooms SET last_seq = last_seq + 1, last_change = last_change + ${reply ? 2 : 1},
         send_window_started_at = CASE WHEN $12::integer IS NULL OR ${WINDOW_OPEN} THEN send_window_started_at ELSE now() END,
         send_window_count = CASE WHEN $12::integer IS NULL THEN send_window_count WHEN ${WINDOW_OPEN} THEN send_window_count + 1 ELSE 1 END
       WHERE id = $1 AND (NOT $9::boolean OR EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2 FOR KEY SHARE))
         AND ($12::integer IS NULL OR NOT ${WINDOW_OPEN} OR send_window_count < $12::integer)
         AND ($14::uuid IS NULL OR ${SESSION_STANDS('$14', '$2')})
         AND ($15::timestamptz IS NULL OR clock_timestamp() < $15::timestamptz)
       RETURNING last_seq, last_change - ${reply ? 1 : 0} AS change),
     added AS (
       INSERT INTO messages (room_id, seq, created_change, change_seq, author_id, body, parent_id, client_id, status, asked_message_id, asked_by, stream_owner, mentions)
       SELECT $1, next.last_seq, next.change, next.change, $2, $3, $4::uuid, $5, $6, $7, $8, $10,
         CASE WHEN cardinality($11::text[]) = 0 THEN '{}'::uuid[] ELSE ${MENTIONED('$1', '$2', '$11')} END FROM next
       RETURNING ${MESSAGE_COLUMNS}),${
         reply
           ? `
     root AS (
       UPDATE messages r SET reply_count = r.reply_count + 1, last_reply_at = GREATEST(r.last_reply_at, added.created_at),
         change_seq = added.change_seq + 1, updated_at = now()
       FROM added WHERE r.id = $4::uuid
       RETURNING ${MESSAGE_COLUMNS.replace(/\w+/g, 'r.$&')}),`
           : ''
       }
     read AS (
       UPDATE memberships SET last_read_seq = next.last_seq FROM next
       WHERE $9::boolean AND room_id = $1 AND user_id = $2 AND last_read_seq < next.last_seq)
     SELECT to_json(m) AS message FROM (SELECT * FROM added${reply ? ' UNION ALL SELECT * FROM root' : ''}) m`,
    { locks: true }, // the room row's
  );
const SEND = sendStatement(false);
const SEND_REPLY = sendStatement(true);

/** A member changing a message, and what their membership must allow (checked again under its lock: `MessageStore.inRoom`). */
export interface ChangeBy {
  userId: string;
  /** Throws when the membership, as it is when the change is made, does not allow it. */
  allowed(membership: Pick<MembershipEntity, 'userId' | 'role'>): void;
}

/** Most different emoji one message may carry. */
export const MAX_REACTION_KINDS = 50;

/** The reactions of the message `messageId` (SQL) grouped by emoji, oldest emoji first, each with its users in the order they reacted. */
export const reactionSummary = (messageId: string) => `COALESCE((
  SELECT jsonb_agg(jsonb_build_object('emoji', g.emoji, 'userIds', g.users) ORDER BY g.first, g.emoji)
  FROM (SELECT emoji, jsonb_agg(user_id ORDER BY created_at, user_id) AS users, min(created_at) AS first
        FROM reactions WHERE message_id = ${messageId} GROUP BY emoji) g), '[]'::jsonb)`;
const REACTION_SUMMARY = reactionSummary('$1');

/**
 * Every write to a room's messages, and its one publish; owns docs/guarantees.md guarantees 3, 4,
 * 8 and 10 (and numbers the seqs of guarantee 1). Each change — an insert, an edit, a deletion, a reaction change, an assistant reply's
 * end — takes the room's next change number under the room row's lock in the statement or
 * transaction that makes it, so commit order is change order; a message row records the number of
 * its latest change. Changes are published after commit and never awaited by the writer: a lost
 * signal is healed from the database by the hubs.
 */
export class MessageStore {
  /** The entity's columns, and which hold a timestamp. */
  private readonly columns: Array<{ databaseName: string; propertyName: string; time: boolean }>;

  constructor(
    private readonly db: DataSource,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    /** Told of each send a room's budget refused (metrics). */
    private readonly onRoomLimited: () => void = () => undefined,
    /**
     * When a send's statement must have begun by, on the database's clock (`DatabaseClock`), or
     * null for no bound: past it, the server has answered the send SERVICE_UNAVAILABLE already.
     */
    private readonly sendDeadline: () => string | null = () => null,
    /** Told when a send's statement began past its deadline (the clock may have been stepped: read it again). */
    private readonly onLateSend: () => void = () => undefined,
  ) {
    this.columns = db.getMetadata(MessageEntity).columns.map((c) => ({ databaseName: c.databaseName, propertyName: c.propertyName, time: c.type === 'timestamptz' }));
    const returned = new Set(MESSAGE_COLUMNS.split(', '));
    const missing = this.columns.filter((c) => !returned.has(c.databaseName));
    if (missing.length) throw new Error(`MESSAGE_COLUMNS lacks ${missing.map((c) => c.databaseName).join(', ')}`);
    this.publishFailed = warnAtMostEvery(log, REPEATED_WARNING_MS, 'publish failed');
  }

  private readonly publishFailed: (fields: Record<string, unknown>) => void;

  /**
   * Takes the room's next seq and change number and inserts the message, in one statement: the
   * room row stays locked only while it runs. A reply also bumps its thread root's `replyCount`
   * and `lastReplyAt` as the next change. A unique violation (a used clientId, an already answered
   * message) fails the whole statement, so nothing is consumed. With `asMember` the author's
   * membership is checked in the same statement (FORBIDDEN without it) under its lock
   * (`lockedMembership`), so no send of a member commits after their removal was answered, and the
   * author's read position moves to the new message. With
   * `limit`, the send also takes a place in the room's send budget, in the same statement, under
   * the room row's lock: only a member's send takes one, and none is left, RATE_LIMITED (a
   * stranger is answered FORBIDDEN whatever the budget).
   * Returns the message and, for a reply, its root's new state; publishes neither (see `publish`).
   */
  async insert(
    manager: EntityManager,
    fields: NewMessage,
    { asMember = false, limit, session }: { asMember?: boolean; limit?: RoomSendLimit; session?: SessionToCheck } = {},
  ): Promise<MessageEntity[]> {
    for (let attempt = 0; ; attempt++) {
      // A statement that reaches PostgreSQL only after the server gave up on it (a frozen or
      // stalled database thawing) inserts nothing: its send was answered SERVICE_UNAVAILABLE, and
      // "a send that fails publishes nothing" (docs/guarantees.md, guarantee 3). The deadline is
      // read by the clock when the room's row qualifies, after any wait for its lock (PostgreSQL
      // checks the row again once the lock is granted, its holder having changed it, as every
      // writer to a room does), so a statement begun in time that waited through a freeze
      // inserts nothing either; what remains is a freeze between that check and the commit.
      const deadline = this.sendDeadline();
      const rows = await runPrepared<Array<Record<string, unknown>>>(manager, fields.parentId ? SEND_REPLY : SEND, [
        fields.roomId,
        fields.authorId,
        fields.body,
        fields.parentId,
        fields.clientId,
        fields.status ?? 'COMPLETE',
        fields.askedMessageId ?? null,
        fields.askedBy ?? null,
        asMember,
        fields.streamOwner ?? null,
        mentionedNames(fields.body),
        limit?.points ?? null,
        limit?.windowS ?? null,
        session?.viewer.sessionId ?? null,
        deadline,
      ]).catch((err: unknown) => {
        // The index refused the row: the statement had got as far as inserting it, the session standing.
        if (isUniqueViolation(err)) session?.settle(true);
        // Sent and never answered: had the database checked its deadline before it stopped
        // answering, the send commits when it answers again; only its clientId can tell.
        if (isUnanswered(err)) throw new AppError(ErrorCode.ServiceUnavailable, 'The database stopped answering during this send, which may yet be stored: send it again with the same clientId to know');
        throw err;
      });
      if (rows.length > 0) {
        session?.settle(true);
        return rows.map((row) => this.fromRow(row.message as Record<string, unknown>)).sort((a, b) => a.changeSeq - b.changeSeq);
      }
      if (!limit && !session && !deadline) throw notMember();
      // The session ended, not a member, no place left in the budget's window, or begun too late:
      // tell which (a stranger learns nothing). One row also for a room that does not exist, so
      // the session is told.
      const [state]: Array<{ session: boolean; room: boolean; member: boolean; retry_after_ms: number | null; late: boolean }> = await manager.query(
        `SELECT $5::uuid IS NULL OR ${SESSION_STANDS('$5', '$2')} AS session, rooms.id IS NOT NULL AS room,
           EXISTS (SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2) AS member,
           CASE WHEN send_window_count >= $3 THEN ceil(extract(epoch FROM send_window_started_at + make_interval(secs => $4::integer) - clock_timestamp()) * 1000)::integer END AS retry_after_ms,
           $6::timestamptz IS NOT NULL AND clock_timestamp() >= $6::timestamptz AS late
         FROM (SELECT) one LEFT JOIN rooms ON rooms.id = $1`,
        [fields.roomId, fields.authorId, limit?.points ?? null, limit?.windowS ?? null, session?.viewer.sessionId ?? null, deadline],
      );
      session?.settle(state.session);
      if (!state.session) throw unauthenticated();
      if (!state.room || (asMember && !state.member)) throw notMember();
      if (state.retry_after_ms !== null && state.retry_after_ms > 0) throw this.roomLimited(state.retry_after_ms);
      if (state.late) {
        this.onLateSend();
        throw new AppError(ErrorCode.ServiceUnavailable, 'The database answered too late; send it again with the same clientId');
      }
      if (attempt > 0) throw notMember(); // neither, twice: the member was removed meanwhile
      // The window ended between the two statements: send again.
    }
  }

  /**
   * Runs `work` in a transaction holding the room row's lock; each row it changes through `apply`
   * takes the next change number, and the room's `last_change` is advanced once at the end. The
   * changed rows are published after commit, in change order. An UPDATE that matches nothing
   * takes no number, so a repeated change is no change. A change `by` a member is made only if
   * their membership, read under its lock before the room's (`lockedMembership`), still allows it:
   * removed meanwhile, FORBIDDEN as for a message they cannot read.
   */
  async inRoom(roomId: string, work: (tx: EntityManager, apply: ApplyChange) => Promise<void>, by?: ChangeBy): Promise<MessageEntity[]> {
    const changed: MessageEntity[] = [];
    await this.db.transaction(async (tx) => {
      if (by) by.allowed(await lockedMembership(tx, roomId, by.userId, unreadableMessage));
      const [room]: Array<{ last_change: number }> = await tx.query('SELECT last_change FROM rooms WHERE id = $1 FOR UPDATE', [roomId]);
      if (!room) return;
      let last = room.last_change;
      const apply: ApplyChange = async (sql, params) => {
        const [rows]: [Array<Record<string, unknown>>] = await tx.query(sql, [...params, last + 1]);
        if (rows.length === 0) return null;
        last += 1;
        const message = this.fromRow(rows[0]);
        changed.push(message);
        return message;
      };
      await work(tx, apply);
      if (changed.length > 0) await tx.query('UPDATE rooms SET last_change = $2 WHERE id = $1', [roomId, last]);
    });
    this.publish(changed);
    return changed;
  }

  /** A new body for a message that is not deleted; a body equal to the current one is no change. */
  async edit(message: MessageModel, body: string, by: ChangeBy): Promise<MessageModel> {
    let mentioned: string[] = [];
    const [edited] = await this.inRoom(
      message.roomId,
      async (tx, apply) => {
        mentioned = await this.mentionsOf(tx, message.id);
        await apply(
          `UPDATE messages SET body = $2, edited_at = now(), change_seq = $4, updated_at = now(), mentions = ${MENTIONED('messages.room_id', 'messages.author_id', '$3')}
           WHERE id = $1 AND deleted_at IS NULL AND body <> $2 RETURNING *`,
          [message.id, body, mentionedNames(body)],
        );
      },
      by,
    );
    if (edited) this.tellMentions(edited, mentioned);
    return edited ?? this.current(message.id);
  }

  /**
   * Leaves a tombstone: `deletedAt` set, the body and reactions erased (a streaming reply ends
   * CANCELLED). `seq` and the thread's replies stay; the root of a deleted reply is recounted as
   * the next change. Deleting a tombstone again is no change.
   */
  async delete(message: MessageModel, reason: string, by: ChangeBy): Promise<MessageModel> {
    let mentioned: string[] = [];
    const [deleted] = await this.inRoom(message.roomId, async (tx, apply) => {
      mentioned = await this.mentionsOf(tx, message.id);
      const row = await apply(
        `UPDATE messages SET body = '', reactions = '[]', mentions = '{}', deleted_at = now(), updated_at = now(), change_seq = $3,
           status = CASE WHEN status = 'STREAMING' THEN 'CANCELLED' ELSE status END,
           status_reason = CASE WHEN status = 'STREAMING' THEN $2 ELSE status_reason END
         WHERE id = $1 AND deleted_at IS NULL RETURNING *`,
        [message.id, reason],
      );
      if (!row) return;
      await tx.query('DELETE FROM reactions WHERE message_id = $1', [message.id]);
      if (row.parentId) {
        await apply(
          `UPDATE messages r SET updated_at = now(), change_seq = $2,
             reply_count = (SELECT count(*) FROM messages c WHERE c.parent_id = r.id AND c.deleted_at IS NULL),
             last_reply_at = (SELECT max(c.created_at) FROM messages c WHERE c.parent_id = r.id AND c.deleted_at IS NULL)
           WHERE id = $1 RETURNING *`,
          [row.parentId],
        );
      }
    }, by);
    if (deleted) this.tellMentions(deleted, mentioned);
    return deleted ?? this.current(message.id);
  }

  /** Whom message `id` mentions now (read in the change's transaction, under the room's lock, before the change). */
  private async mentionsOf(tx: EntityManager, id: string): Promise<string[]> {
    const [row]: Array<{ mentions: string[] }> = await tx.query('SELECT mentions FROM messages WHERE id = $1', [id]);
    return row?.mentions ?? [];
  }

  /**
   * Tells each user whom a committed edit or deletion of `message` mentions where it did not, or no
   * longer mentions, on their own topic: their unread mention count in the room may have changed
   * with no new message (their feeds tell it, `ActivityRouter`). Like every signal, never awaited.
   */
  private tellMentions(message: MessageModel, before: readonly string[]): void {
    const after = new Set(message.mentions);
    const was = new Set(before);
    const changed = [...before.filter((id) => !after.has(id)), ...message.mentions.filter((id) => !was.has(id))];
    for (const userId of changed) {
      this.pubsub.publish(userTopic(userId), { kind: 'read', roomId: message.roomId, lastReadSeq: 0, mentionsAt: message.seq }).catch((err: unknown) => this.publishFailed({ err: (err as Error).message, roomId: message.roomId }));
    }
  }

  /**
   * Adds (`on`) or removes one user's reaction. The reactions table's natural key (message, user,
   * emoji) decides, so a repeat or a racing twin changes nothing and takes no change number; a
   * deleted message takes no new reaction (CONFLICT, also when it was deleted after the caller
   * read it). At most MAX_REACTION_KINDS emoji per message. The user must be a member when it is made.
   */
  async react(message: MessageModel, userId: string, emoji: string, on: boolean): Promise<MessageModel> {
    const [changed] = await this.inRoom(message.roomId, async (tx, apply) => {
      const rows: unknown[] = on
        ? await tx.query(
            `INSERT INTO reactions (message_id, user_id, emoji)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND deleted_at IS NULL)
             ON CONFLICT DO NOTHING RETURNING emoji`,
            [message.id, userId, emoji],
          )
        : (await tx.query('DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3 RETURNING emoji', [message.id, userId, emoji]))[0];
      if (rows.length === 0) {
        // A repeat, or a message deleted since the caller read it (a deletion takes the room's lock, held here).
        const [now]: Array<{ deleted: boolean }> = on ? await tx.query('SELECT deleted_at IS NOT NULL AS deleted FROM messages WHERE id = $1', [message.id]) : [];
        if (now?.deleted) throw conflict('This message was deleted', 'messageId');
        return;
      }
      if (on) {
        const [{ kinds }] = await tx.query('SELECT count(DISTINCT emoji)::int AS kinds FROM reactions WHERE message_id = $1', [message.id]);
        if (kinds > MAX_REACTION_KINDS) throw badUserInput(`A message takes at most ${MAX_REACTION_KINDS} different reactions`, 'emoji');
      }
      await apply(`UPDATE messages SET reactions = ${REACTION_SUMMARY}, change_seq = $2, updated_at = now() WHERE id = $1 RETURNING *`, [message.id]);
    }, { userId, allowed: () => undefined });
    return changed ?? this.current(message.id);
  }

  /**
   * Publishes committed changes in change order, each once: a new message on the activity topic,
   * which every instance listens to, for its room's hub and the viewers' own feeds alike; a later
   * change on its room's topic. A failure is logged (once a second at most: while Redis is down every
   * send fails to publish), never thrown (the hubs heal the gap).
   */
  publish(changes: MessageModel[]): void {
    for (const change of changes) {
      const message = toWire(change);
      const warn = (err: unknown) => this.publishFailed({ err: (err as Error).message, roomId: message.roomId, change: message.changeSeq });
      const published =
        message.createdChange === message.changeSeq
          ? this.pubsub.publish(activityTopic, { message })
          : this.pubsub.publish(roomTopic(message.roomId), { kind: 'change', message });
      published.catch(warn);
    }
  }

  private roomLimited(retryAfterMs: number) {
    this.onRoomLimited();
    return rateLimited(retryAfterMs, 'This room is taking too many messages; retry shortly');
  }

  /** A message as it is now. */
  current(id: string): Promise<MessageEntity> {
    return this.db.getRepository(MessageEntity).findOneByOrFail({ id });
  }

  /**
   * A `messages` row (snake_case columns) as an entity: as node-postgres reads it, or as `to_json`
   * writes it (what the send returns: one column, so node-postgres does not build a parser for each
   * of 23 columns on every send), whose timestamps are ISO strings, read to the millisecond as
   * node-postgres reads them.
   */
  fromRow(row: Record<string, unknown>): MessageEntity {
    const entity = new MessageEntity() as unknown as Record<string, unknown>;
    for (const { databaseName, propertyName, time } of this.columns) {
      if (!(databaseName in row)) continue;
      const value = row[databaseName];
      entity[propertyName] = time && typeof value === 'string' ? new Date(value) : value;
    }
    return entity as unknown as MessageEntity;
  }
}
