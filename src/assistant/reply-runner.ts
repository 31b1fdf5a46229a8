import type { DataSource } from 'typeorm';
import { MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import type { MessageStatus } from '../db/entities/message';
import type { Logger } from '../logger';
import { assistantControlTopic, unsubscribeWhenSettled, type PubSub } from '../pubsub';
import { buildTurns } from './context';
import type { ChatModel } from './model';
import type { ReplyEnd, ReplyStore } from './reply-store';
import { ReplyText } from './reply-text';

export interface RunnerOptions {
  /** The longest silence of a stream once it has started. */
  stallTimeoutMs: number;
  /** The longest wait for the answer to start, the provider's retries (and a 429's Retry-After) included. */
  startTimeoutMs: number;
  contextChars: number;
  /** Told each reply's final status (for metrics). */
  onEnd?: (status: MessageStatus) => void;
}

type StopReason = 'cancelled' | 'stalled' | 'late' | 'shutdown';

const MAX_THREAD = 200;
/** How often a streaming reply proves it is alive (also while the model is silent). */
const HEARTBEAT_MS = 5000;

/**
 * Streams assistant replies on this instance (docs/guarantees.md, guarantee 7). For each reply it builds the
 * thread's context, streams the model's answer, publishes every piece as an `AssistantDelta` in
 * order, saves the growing text, and ends the reply COMPLETE, FAILED (upstream error, stall,
 * shutdown: with a readable reason) through the `ReplyStore`. A cancelled reply was ended by
 * whoever cancelled it; the runner only stops.
 */
export class ReplyRunner {
  private readonly active = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private offControl?: Promise<() => Promise<void>>;

  constructor(
    private readonly db: DataSource,
    private readonly store: ReplyStore,
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


  /** Shutdown: every reply streaming here ends FAILED with a reason; resolves when all are written. */
  async stopAll(): Promise<void> {
    const entries = [...this.active.entries()];
    for (const [id] of entries) this.abort(id, 'shutdown');
    await Promise.all(entries.map(([, e]) => e.done));
    unsubscribeWhenSettled(this.offControl);
  }

  /** The replies streaming on this instance now. */
  activeIds(): string[] {
    return [...this.active.keys()];
  }

  private async run(model: ChatModel, reply: MessageEntity, controller: AbortController): Promise<void> {
    const { signal } = controller;
    const cancel = () => controller.abort('cancelled' satisfies StopReason);
    const streamed = new ReplyText(
      (body, count) => this.store.savePartial(reply.id, body, count),
      (index, text) => this.store.publishDelta(reply, index, text), // subscribers also get the final body
      cancel,
      signal,
    );
    // Until the answer starts, the wait for it is bounded as a whole; from then on, each silence.
    let stall = setTimeout(() => controller.abort('late' satisfies StopReason), this.options.startTimeoutMs);
    const resetStall = () => {
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort('stalled' satisfies StopReason), this.options.stallTimeoutMs);
    };
    const heartbeat = setInterval(() => void streamed.touch().catch(() => undefined), HEARTBEAT_MS);
    let failure: unknown;
    try {
      const turns = await this.context(reply);
      for await (const piece of model.stream(turns, signal, resetStall)) {
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
      this.options.onEnd?.('CANCELLED'); // whoever cancelled (or deleted) it wrote its end
      return;
    }
    const text = { text: streamed.text, deltaCount: streamed.count };
    if (signal.aborted && (signal.reason === 'stalled' || signal.reason === 'late')) {
      const why =
        signal.reason === 'stalled'
          ? `The model sent nothing for ${formatDuration(this.options.stallTimeoutMs)}`
          : `The model provider did not start answering within ${formatDuration(this.options.startTimeoutMs)}`;
      return this.end(reply, { status: 'FAILED', ...text, reason: why, note: why });
    }
    if (signal.aborted) {
      const why = 'The server shut down while the assistant was replying';
      return this.end(reply, { status: 'FAILED', ...text, reason: why, note: why });
    }
    if (failure === undefined) return this.end(reply, { status: 'COMPLETE', ...text, reason: null });
    this.log.warn({ err: (failure as Error).message, messageId: reply.id }, 'assistant reply failed');
    const why = model.describeFailure(failure);
    return this.end(reply, { status: 'FAILED', ...text, reason: why, note: why });
  }

  /** Ends the reply (retrying while the database is unreachable; the sweep fails it if that never ends). */
  private async end(reply: MessageEntity, end: ReplyEnd): Promise<void> {
    this.options.onEnd?.(end.status);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.store.end(reply, end);
        return;
      } catch (err) {
        if (attempt >= 10) {
          this.log.error({ err: (err as Error).message, messageId: reply.id }, 'could not save the assistant reply; the sweep will fail it');
          return;
        }
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
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
