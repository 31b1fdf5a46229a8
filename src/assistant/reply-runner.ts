import type { DataSource } from 'typeorm';
import { MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import type { MessageStatus } from '../db/entities/message';
import type { Logger } from '../logger';
import { assistantControlTopic, roomTopic, type PubSub } from '../pubsub';
import type { MessageService } from '../chat/message-service';
import { buildTurns } from './context';
import type { ChatModel } from './model';
import { ReplyText } from './reply-text';

export interface RunnerOptions {
  stallTimeoutMs: number;
  contextChars: number;
  /** This instance's identity, stable across its restarts (host and port), recorded on its replies. */
  instanceId: string;
  /** Told each reply's final status (for metrics). */
  onEnd?: (status: MessageStatus) => void;
}

type StopReason = 'cancelled' | 'stalled' | 'shutdown';

const MAX_THREAD = 200;
/** How often a streaming reply proves it is alive (also while the model is silent). */
const HEARTBEAT_MS = 5000;

/**
 * Streams assistant replies on this instance (API.md guarantee 7). For each reply it builds the
 * thread's context, streams the model's answer, publishes every piece as an `AssistantDelta` in
 * order, saves the growing text, and ends the reply COMPLETE, FAILED (upstream error, stall,
 * shutdown: with a readable reason) or CANCELLED, publishing `MessageUpdated`. A reply whose
 * process died is found by its stale heartbeat and marked FAILED by `sweep`.
 */
export class ReplyRunner {
  private readonly active = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private offControl?: Promise<() => Promise<void>>;

  constructor(
    private readonly db: DataSource,
    private readonly messages: MessageService,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly options: RunnerOptions,
  ) {}

  /** Listens for cancellations from every instance. */
  listen(): void {
    this.offControl = this.pubsub.subscribe(assistantControlTopic, (signal) => {
      if (signal.kind === 'cancel') this.abort(signal.messageId, 'cancelled');
    });
    this.offControl.catch((err) => this.log.warn({ err: (err as Error).message }, 'assistant control subscription failed'));
  }

  /** Starts streaming `reply` in the background. */
  start(model: ChatModel, reply: MessageEntity): void {
    const controller = new AbortController();
    const done = this.run(model, reply, controller)
      .catch((err) => this.log.error({ err, messageId: reply.id }, 'assistant reply crashed'))
      .finally(() => this.active.delete(reply.id));
    this.active.set(reply.id, { controller, done });
  }

  /** Stops a reply streaming here; false when it is not streaming on this instance. */
  abort(messageId: string, reason: StopReason): boolean {
    const entry = this.active.get(messageId);
    entry?.controller.abort(reason);
    return Boolean(entry);
  }

  get size(): number {
    return this.active.size;
  }

  isActive(messageId: string): boolean {
    return this.active.has(messageId);
  }

  /** Recorded on the replies this instance streams (see `sweep`). */
  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Shutdown: every reply streaming here ends FAILED with a reason; resolves when all are written. */
  async stopAll(): Promise<void> {
    const entries = [...this.active.entries()];
    for (const [id] of entries) this.abort(id, 'shutdown');
    await Promise.all(entries.map(([, e]) => e.done));
    await (await this.offControl?.catch(() => undefined))?.().catch(() => undefined);
  }

  /**
   * Marks FAILED the replies left STREAMING by a process that is gone: all of them when this is
   * the only instance (`'all'`); otherwise those of this instance's own identity that it is not
   * streaming (a previous run of it, which crashed), and those whose heartbeat is older than `staleMs`.
   */
  async sweep(staleMs: number | 'all'): Promise<number> {
    const [rows]: [MessageEntity[]] = await this.db.query(
      `UPDATE messages SET status = 'FAILED', status_reason = $1,
         body = CASE WHEN body = '' THEN $2 ELSE body || E'\\n\\n' || $2 END, updated_at = now()
       WHERE status = 'STREAMING' AND NOT (id = ANY($3::uuid[]))
         AND ($4::int IS NULL OR stream_owner = $5 OR updated_at < now() - make_interval(secs => $4::int / 1000.0))
       RETURNING id`,
      [
        'The server stopped while the assistant was replying',
        '[The assistant stopped: its server went away]',
        [...this.active.keys()],
        staleMs === 'all' ? null : staleMs,
        this.options.instanceId,
      ],
    );
    for (const { id } of rows) await this.publishUpdated(id);
    if (rows.length) this.log.warn({ count: rows.length }, 'marked orphaned assistant replies FAILED');
    return rows.length;
  }

  private async run(model: ChatModel, reply: MessageEntity, controller: AbortController): Promise<void> {
    const { signal } = controller;
    const cancel = () => controller.abort('cancelled' satisfies StopReason);
    const streamed = new ReplyText(
      (body, count) => this.savePartial(reply.id, body, count),
      (index, text) =>
        this.pubsub
          .publish(roomTopic(reply.roomId), { kind: 'delta', messageId: reply.id, index, text })
          .catch(() => undefined), // subscribers also get the saved text and the final body
      cancel,
      signal,
    );
    let stall: NodeJS.Timeout | undefined;
    const resetStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort('stalled' satisfies StopReason), this.options.stallTimeoutMs);
    };
    const heartbeat = setInterval(() => void streamed.touch().catch(() => undefined), HEARTBEAT_MS);
    resetStall();
    let failure: unknown;
    try {
      const turns = await this.context(reply);
      for await (const piece of model.stream(turns, signal)) {
        if (signal.aborted) break;
        resetStall();
        streamed.push(piece);
      }
    } catch (err) {
      failure = err;
    } finally {
      clearTimeout(stall);
      clearInterval(heartbeat);
    }
    await streamed.settle();
    if (signal.aborted && signal.reason === 'cancelled') {
      // The canceller published the reply with the text saved so far; that is the final text.
      return this.finish(reply.id, 'CANCELLED', streamed.savedText, streamed.savedCount, 'Cancelled');
    }
    if (signal.aborted) return this.finishAborted(reply, streamed.text, streamed.count, signal.reason as 'stalled' | 'shutdown');
    if (failure === undefined) return this.finish(reply.id, 'COMPLETE', streamed.text, streamed.count, null);
    this.log.warn({ err: (failure as Error).message, messageId: reply.id }, 'assistant reply failed');
    return this.finish(reply.id, 'FAILED', streamed.text, streamed.count, model.describeFailure(failure));
  }

  private finishAborted(reply: MessageEntity, text: string, count: number, reason: Exclude<StopReason, 'cancelled'>) {
    const why =
      reason === 'stalled'
        ? `The model sent nothing for ${formatDuration(this.options.stallTimeoutMs)}`
        : 'The server shut down while the assistant was replying';
    return this.finish(reply.id, 'FAILED', text, count, why);
  }

  /** Saves the text so far; false when the reply is no longer STREAMING (cancelled elsewhere). */
  private async savePartial(id: string, body: string, deltaCount: number): Promise<boolean> {
    const [rows] = await this.db.query(
      `UPDATE messages SET body = $2, delta_count = $3, updated_at = now() WHERE id = $1 AND status = 'STREAMING' RETURNING id`,
      [id, body, deltaCount],
    );
    return rows.length > 0;
  }

  /**
   * Writes the final state (retrying while the database is unreachable) and publishes it.
   * A cancelled reply keeps its partial text; a failed one also carries the reason in its body.
   */
  private async finish(id: string, status: MessageStatus, text: string, deltaCount: number, reason: string | null) {
    this.options.onEnd?.(status);
    const body = status === 'FAILED' ? (text ? `${text}\n\n[${reason}]` : `[${reason}]`) : text;
    let changed = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const [rows] = await this.db.query(
          `UPDATE messages SET status = $2, body = $3, delta_count = $4, status_reason = $5, updated_at = now()
           WHERE id = $1 AND status = 'STREAMING' RETURNING id`,
          [id, status, body, deltaCount, reason],
        );
        changed = rows.length > 0;
        // Cancelled meanwhile (maybe from another instance, which told subscribers): keep that,
        // adding only text that was streamed but not yet saved.
        if (!changed) {
          const [more] = await this.db.query(
            `UPDATE messages SET body = $2, delta_count = $3, updated_at = now()
             WHERE id = $1 AND status = 'CANCELLED' AND (body <> $2 OR delta_count <> $3) RETURNING id`,
            [id, text, deltaCount],
          );
          changed = more.length > 0;
        }
        break;
      } catch (err) {
        if (attempt >= 10) {
          this.log.error({ err: (err as Error).message, messageId: id }, 'could not save the assistant reply; the sweep will fail it');
          return;
        }
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
    if (!changed) return; // whoever cancelled it published its final state
    await this.publishUpdated(id);
  }

  private async publishUpdated(id: string): Promise<void> {
    const message = await this.db.getRepository(MessageEntity).findOneBy({ id });
    if (message) await this.messages.publishUpdated(message);
  }

  /** The room's instructions and the thread up to the reply, authors named, oldest first. */
  private async context(reply: MessageEntity) {
    const room = await this.db.getRepository(RoomEntity).findOneByOrFail({ id: reply.roomId });
    const rows = await this.db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .innerJoin(UserEntity, 'u', 'u.id = m.author_id')
      .select(['m.body AS body', 'u.username AS username', 'u.display_name AS display_name', 'u.is_assistant AS is_assistant'])
      .where('m.room_id = :roomId AND (m.id = :root OR m.parent_id = :root) AND m.seq < :seq', {
        roomId: reply.roomId,
        root: reply.parentId,
        seq: reply.seq,
      })
      .andWhere(`m.status = 'COMPLETE'`)
      .orderBy('m.seq', 'DESC')
      .limit(MAX_THREAD)
      .getRawMany();
    const thread = rows.reverse().map((r) => ({
      username: r.username,
      displayName: r.display_name,
      isAssistant: r.is_assistant,
      body: r.body,
    }));
    return buildTurns(room.assistantInstructions, thread, this.options.contextChars);
  }
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}
