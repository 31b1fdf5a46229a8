import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { requireCancellable, requireReadableMessage, requireViewer } from '../chat/access';
import type { ChangeBy } from '../chat/message-store';
import { MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import { AppError, badUserInput, conflict, ErrorCode } from '../errors';
import type { Logger } from '../logger';
import { assistantControlTopic, type MessageModel, type PubSub } from '../pubsub';
import type { RateLimit } from '../rate-limit';
import type { ChatModel } from './model';
import type { ReplyRunner } from './reply-runner';
import type { ReplyStore } from './reply-store';

export interface AssistantLimits {
  rate: RateLimit;
  maxStreamingPerUser: number;
}

const MENTION = /(^|[^\w@])@assistant\b/i;

/** True when a message body mentions `@assistant`. */
export const mentionsAssistant = (body: string) => MENTION.test(body);

/**
 * Assistant replies (docs/guarantees.md, guarantee 7): one reply per asked message, committed at once as
 * STREAMING in the asked message's thread, then streamed by the `ReplyRunner`. Asks are rate
 * limited per user and capped in how many may stream at once. Without a model configured every
 * ask answers ASSISTANT_UNAVAILABLE and nothing changes.
 */
export class AssistantService {
  private assistantId?: Promise<string>;

  constructor(
    private readonly db: DataSource,
    private readonly store: ReplyStore,
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
    const { message: asked } = await requireReadableMessage(this.db.manager, viewer, messageId);
    if (asked.deletedAt) throw conflict('This message was deleted', 'messageId');
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
   * Stops a streaming reply, from any instance: the asker, a room OWNER or an ADMIN may. The text
   * saved so far is kept and the status becomes CANCELLED. A reply that already ended is returned as it is.
   */
  async cancel(viewer: Viewer | null, messageId: string): Promise<MessageModel> {
    const { message: reply, membership } = await requireReadableMessage(this.db.manager, viewer, messageId);
    if (!reply.askedMessageId) throw badUserInput('This message is not an assistant reply', 'messageId');
    requireCancellable(reply, membership);
    if (reply.status !== 'STREAMING') return reply;
    const user = await this.db.getRepository(UserEntity).findOneByOrFail({ id: membership.userId });
    const by: ChangeBy = { userId: membership.userId, allowed: (now) => requireCancellable(reply, now) };
    const ended = await this.store.end(reply, { status: 'CANCELLED', reason: `Cancelled by @${user.username}` }, by);
    if (ended && !this.runner.abort(reply.id, 'cancelled')) {
      await this.pubsub.publish(assistantControlTopic, { kind: 'cancel', messageId: reply.id }).catch(() => undefined);
    }
    return ended ?? this.db.getRepository(MessageEntity).findOneByOrFail({ id: reply.id });
  }

  private async replyTo(asked: MessageEntity, askerId: string, model: ChatModel): Promise<MessageEntity> {
    const existing = await this.existingReply(asked.id);
    if (existing) return existing;
    await this.limits.rate.consume(askerId);
    let reply: MessageEntity;
    try {
      reply = await this.store.insert(asked, askerId, await this.userId(), this.limits.maxStreamingPerUser);
    } catch (err) {
      const raced = await this.existingReply(asked.id); // a racing ask committed first
      if (raced) return raced;
      throw err;
    }
    this.runner.start(model, reply);
    return reply;
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
