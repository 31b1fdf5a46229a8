import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { requireMember, requireViewer } from '../chat/access';
import type { MessageService } from '../chat/message-service';
import { MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import { AppError, badUserInput, ErrorCode, forbidden, rateLimited } from '../errors';
import type { Logger } from '../logger';
import { assistantControlTopic, type PubSub } from '../pubsub';
import { isUuid } from '../validation';
import type { RateLimit } from '../rate-limit';
import type { ChatModel } from './model';
import type { ReplyRunner } from './reply-runner';

export interface AssistantLimits {
  rate: RateLimit;
  maxStreamingPerUser: number;
}

const MENTION = /(^|[^\w@])@assistant\b/i;

/** True when a message body mentions `@assistant`. */
export const mentionsAssistant = (body: string) => MENTION.test(body);

/**
 * Assistant replies (API.md guarantee 7): one reply per asked message, committed at once as
 * STREAMING in the asked message's thread, then streamed by the `ReplyRunner`. Asks are rate
 * limited per user and capped in how many may stream at once. Without a model configured every
 * ask answers ASSISTANT_UNAVAILABLE and nothing changes.
 */
export class AssistantService {
  private assistantId?: Promise<string>;

  constructor(
    private readonly db: DataSource,
    private readonly messages: MessageService,
    private readonly runner: ReplyRunner,
    private readonly model: ChatModel | null,
    private readonly limits: AssistantLimits,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
  ) {}

  /** How many replies stream on this instance now. */
  get streaming(): number {
    return this.runner.size;
  }

  /** Whether this reply is streaming on this instance now. */
  isStreaming(messageId: string): boolean {
    return this.runner.isActive(messageId);
  }

  /**
   * The assistant's reply to a message the viewer can read, in that message's thread: the
   * existing one when it was asked before (also when asks race), else a new STREAMING one.
   */
  async ask(viewer: Viewer | null, messageId: string): Promise<MessageEntity> {
    const { id: userId } = requireViewer(viewer);
    const { message: asked } = await this.readable(viewer, messageId, 'messageId');
    if (!this.model) {
      throw new AppError(ErrorCode.AssistantUnavailable, 'The assistant is not configured on this server (OPENAI_API_KEY is unset)');
    }
    return this.replyTo(asked, userId, this.model);
  }

  /**
   * Replies to a message that mentions `@assistant` in a room with the assistant enabled, as
   * if its author had asked. Limits and failures are logged, never thrown (the send succeeded).
   */
  async replyToMention(message: MessageEntity): Promise<void> {
    if (!this.model || !mentionsAssistant(message.body) || message.authorId === (await this.userId())) return;
    const room = await this.db.getRepository(RoomEntity).findOneBy({ id: message.roomId });
    if (!room?.assistantEnabled) return;
    await this.replyTo(message, message.authorId, this.model).catch((err) =>
      this.log.info({ err: (err as Error).message, messageId: message.id }, 'no assistant reply to mention'),
    );
  }

  /**
   * Stops a streaming reply, from any instance: the asker or a room OWNER may. The partial text
   * is kept and the status becomes CANCELLED. A reply that already ended is returned as it is.
   */
  async cancel(viewer: Viewer | null, messageId: string): Promise<MessageEntity> {
    const { message: reply, membership } = await this.readable(viewer, messageId, 'messageId');
    if (!reply.askedMessageId) throw badUserInput('This message is not an assistant reply', 'messageId');
    if (reply.askedBy !== membership.userId && membership.role !== 'OWNER') {
      throw forbidden('Only the asker or the room owner can cancel this reply');
    }
    if (reply.status !== 'STREAMING') return reply;
    const user = await this.db.getRepository(UserEntity).findOneByOrFail({ id: membership.userId });
    const [rows] = await this.db.query(
      `UPDATE messages SET status = 'CANCELLED', status_reason = $2, updated_at = now() WHERE id = $1 AND status = 'STREAMING' RETURNING id`,
      [reply.id, `Cancelled by @${user.username}`],
    );
    if (rows.length > 0 && !this.runner.abort(reply.id, 'cancelled')) {
      await this.pubsub.publish(assistantControlTopic, { kind: 'cancel', messageId: reply.id }).catch(() => undefined);
    }
    const current = await this.db.getRepository(MessageEntity).findOneByOrFail({ id: reply.id });
    if (rows.length > 0) {
      await this.messages.publishUpdated(current);
    }
    return current;
  }

  private async replyTo(asked: MessageEntity, askerId: string, model: ChatModel): Promise<MessageEntity> {
    const existing = await this.existingReply(asked.id);
    if (existing) return existing;
    await this.limits.rate.consume(askerId);
    const authorId = await this.userId();
    let reply: MessageEntity;
    try {
      reply = await this.db.transaction(async (tx) => {
        // One asker's concurrent asks queue here, so the cap below is exact across instances.
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`assistant:${askerId}`]);
        const [{ count }] = await tx.query(`SELECT count(*)::int AS count FROM messages WHERE asked_by = $1 AND status = 'STREAMING'`, [askerId]);
        if (count >= this.limits.maxStreamingPerUser) {
          throw rateLimited(2000, `At most ${this.limits.maxStreamingPerUser} assistant replies may stream at once`);
        }
        return this.messages.insertNext(tx, {
          roomId: asked.roomId,
          authorId,
          body: '',
          parentId: asked.parentId ?? asked.id,
          clientId: null,
          status: 'STREAMING',
          askedMessageId: asked.id,
          askedBy: askerId,
          streamOwner: this.runner.instanceId,
        });
      });
    } catch (err) {
      const raced = await this.existingReply(asked.id); // a racing ask committed first
      if (raced) return raced;
      throw err;
    }
    await this.messages.publishAdded(reply);
    this.runner.start(model, reply);
    return reply;
  }

  /** A message the viewer may read and the viewer's membership of its room, or FORBIDDEN (missing, foreign and malformed alike). */
  private async readable(viewer: Viewer | null, messageId: string, field: string) {
    requireViewer(viewer);
    const unreadable = () => forbidden(`${field} does not name a message you can read`); // one answer: ids can't be probed
    const message = isUuid(messageId) ? await this.db.getRepository(MessageEntity).findOneBy({ id: messageId }) : null;
    if (!message) throw unreadable();
    const membership = await requireMember(this.db.manager, viewer, message.roomId).catch((err) => {
      throw err instanceof AppError && err.code === ErrorCode.Forbidden ? unreadable() : err;
    });
    return { message, membership };
  }

  private existingReply(askedMessageId: string) {
    return this.db.getRepository(MessageEntity).findOneBy({ askedMessageId });
  }

  private userId(): Promise<string> {
    this.assistantId ??= this.db
      .getRepository(UserEntity)
      .findOneByOrFail({ isAssistant: true })
      .then((u) => u.id);
    return this.assistantId;
  }
}
