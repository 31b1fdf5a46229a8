import type { DataSource } from 'typeorm';
import { lockedMembership, unreadableMessage } from '../chat/access';
import type { ChangeBy, MessageStore } from '../chat/message-store';
import { MessageEntity } from '../db/entities';
import type { MessageStatus } from '../db/entities/message';
import { rateLimited } from '../errors';
import type { Logger } from '../logger';
import { roomTopic, type MessageModel, type PubSub } from '../pubsub';

/** How an assistant reply ends, and what its body says about it. */
export interface ReplyEnd {
  status: Exclude<MessageStatus, 'STREAMING'>;
  /** The final text; undefined keeps the text saved so far. */
  text?: string;
  /** How many deltas `text` holds (with `text`). */
  deltaCount?: number;
  /** Why it ended (FAILED, CANCELLED), for `statusReason`. */
  reason: string | null;
  /** Appended to a FAILED reply's body in brackets, so a reader sees why. */
  note?: string;
}

/**
 * Every write of an assistant reply's state, each with its one publish; owns docs/guarantees.md
 * guarantee 7: the insert (STREAMING and empty, one per asked message, capped per asker), the
 * partial saves and their deltas, and the end — COMPLETE, FAILED or CANCELLED — as one change of
 * the room's log, whoever ends it first: the runner, a cancel from any instance, a shutdown, or
 * the sweep of replies whose process is gone. A reply ends once; later attempts change nothing.
 */
export class ReplyStore {
  constructor(
    private readonly db: DataSource,
    private readonly messages: MessageStore,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly instanceId: string,
  ) {}

  /**
   * Inserts the STREAMING reply to `asked` in its thread (a unique index keeps it one per asked
   * message: a racing twin fails) and publishes it. RATE_LIMITED when the asker already has
   * `maxStreaming` replies streaming (exact across instances: asks of one asker queue on a lock).
   * Only while the asker is a member (`lockedMembership`): removed meanwhile, FORBIDDEN.
   */
  async insert(asked: MessageEntity, askerId: string, assistantId: string, maxStreaming: number): Promise<MessageEntity> {
    const changes = await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`assistant:${askerId}`]);
      await lockedMembership(tx, asked.roomId, askerId, unreadableMessage);
      const [{ count }] = await tx.query(`SELECT count(*)::int AS count FROM messages WHERE asked_by = $1 AND status = 'STREAMING'`, [askerId]);
      if (count >= maxStreaming) throw rateLimited(2000, `At most ${maxStreaming} assistant replies may stream at once`);
      return this.messages.insert(tx, {
        roomId: asked.roomId,
        authorId: assistantId,
        body: '',
        parentId: asked.parentId ?? asked.id,
        clientId: null,
        status: 'STREAMING',
        askedMessageId: asked.id,
        askedBy: askerId,
        streamOwner: this.instanceId,
      });
    });
    this.messages.publish(changes);
    return changes[0];
  }

  /**
   * Saves the text so far (not a change of the log: deltas carry it live, and the end carries it
   * to everyone); false when the reply is no longer STREAMING (ended elsewhere). Also the heartbeat.
   */
  async savePartial(id: string, body: string, deltaCount: number): Promise<boolean> {
    const [rows] = await this.db.query(
      `UPDATE messages SET body = $2, delta_count = $3, updated_at = now() WHERE id = $1 AND status = 'STREAMING' RETURNING id`,
      [id, body, deltaCount],
    );
    return rows.length > 0;
  }

  /** Publishes a saved piece of text; ephemeral, so a failure is only logged. */
  async publishDelta(reply: Pick<MessageModel, 'id' | 'roomId'>, index: number, text: string): Promise<void> {
    await this.pubsub
      .publish(roomTopic(reply.roomId), { kind: 'delta', messageId: reply.id, index, text })
      .catch((err) => this.log.debug({ err: (err as Error).message, messageId: reply.id }, 'delta publish failed'));
  }

  /** Ends a STREAMING reply as one change of its room's log (`by` a member cancelling it: see `MessageStore.inRoom`); null when it had already ended. */
  async end(reply: Pick<MessageModel, 'id' | 'roomId'>, end: ReplyEnd, by?: ChangeBy): Promise<MessageEntity | null> {
    const [ended] = await this.messages.inRoom(reply.roomId, async (_tx, apply) => {
      await apply(
        `UPDATE messages SET status = $2, status_reason = $3, delta_count = COALESCE($5, delta_count), updated_at = now(), change_seq = $7,
           body = CASE WHEN $6::text IS NULL THEN COALESCE($4, body)
                       WHEN COALESCE($4, body) = '' THEN '[' || $6 || ']'
                       ELSE COALESCE($4, body) || E'\\n\\n[' || $6 || ']' END
         WHERE id = $1 AND status = 'STREAMING' RETURNING *`,
        [reply.id, end.status, end.reason, end.text ?? null, end.deltaCount ?? null, end.note ?? null],
      );
    }, by);
    return ended ?? null;
  }

  /**
   * Ends FAILED the replies left STREAMING by a process that is gone: all but `active` when this is
   * the only instance (`'all'`); otherwise those whose heartbeat is older than `staleMs` and, with
   * `previousRun` (at start, before this run has asked for any), those of this instance's own
   * identity (a previous run of it, which crashed). Not later: a reply of this run between its
   * insert and its runner's start is neither in `active` nor stale, and must not be taken for one
   * a crash left.
   */
  async sweep(active: string[], staleMs: number | 'all', { previousRun = false }: { previousRun?: boolean } = {}): Promise<number> {
    const orphans: Array<{ id: string; room_id: string }> = await this.db.query(
      `SELECT id, room_id FROM messages
       WHERE status = 'STREAMING' AND NOT (id = ANY($1::uuid[]))
         AND ($2::int IS NULL OR ($4::boolean AND stream_owner = $3) OR updated_at < now() - make_interval(secs => $2::int / 1000.0))`,
      [active, staleMs === 'all' ? null : staleMs, this.instanceId, previousRun],
    );
    let ended = 0;
    for (const { id, room_id: roomId } of orphans) {
      const why = 'The server stopped while the assistant was replying';
      const reply = await this.end({ id, roomId }, { status: 'FAILED', reason: why, note: why }); // the body says what statusReason says, as for every other end
      if (reply) ended++;
    }
    if (ended) this.log.warn({ count: ended }, 'marked orphaned assistant replies FAILED');
    return ended;
  }
}
