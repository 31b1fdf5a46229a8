import type { DataSource } from 'typeorm';
import type { MessageStore } from '../chat/message-store';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { PubSub } from '../pubsub';
import type { Metrics } from '../metrics';
import type { RateLimits } from '../rate-limit';
import { AssistantService } from './assistant-service';
import { OpenAIChatModel } from './openai-model';
import { ReplyRunner } from './reply-runner';
import { ReplyStore } from './reply-store';

/** A streaming reply's heartbeat (every 5 s) older than this means its process is gone. */
const ORPHAN_AFTER_MS = 30_000;

export interface Assistant {
  service: AssistantService;
  /** Stops background work: streaming replies end FAILED with a reason, the sweeper stops. */
  stop(): Promise<void>;
}

/**
 * The assistant's parts, started: the model adapter (when `OPENAI_API_KEY` is set), the reply
 * runner listening for cancellations, the ask limits, and the sweeper that fails replies left
 * STREAMING by a process that is gone — at start all of them when this is the only instance (no
 * Redis), else those of this instance's own earlier run; and, every 10 s, any whose heartbeat is
 * older than 30 s.
 */
export async function createAssistant(
  config: Config,
  db: DataSource,
  messages: MessageStore,
  pubsub: PubSub,
  limits: RateLimits,
  metrics: Metrics,
  log: Logger,
): Promise<Assistant> {
  const store = new ReplyStore(db, messages, pubsub, log, config.instanceId);
  const runner = new ReplyRunner(db, store, pubsub, log, {
    stallTimeoutMs: config.assistantStallTimeoutMs,
    startTimeoutMs: config.openaiTimeoutMs,
    contextChars: config.assistantContextChars,
    onEnd: (status) => metrics.assistantReplies.inc({ status }),
  });
  const model = config.openaiApiKey
    ? new OpenAIChatModel({
        apiKey: config.openaiApiKey,
        baseURL: config.openaiBaseUrl,
        model: config.openaiModel,
        maxRetries: config.openaiMaxRetries,
        timeoutMs: config.openaiTimeoutMs,
      })
    : null;
  const rate = limits.create('assistant-asks', config.assistantAsksPerMinute, 60, 'Too many assistant requests; retry later');
  const service = new AssistantService(db, store, runner, model, { rate, maxStreamingPerUser: config.assistantMaxStreamingPerUser }, pubsub, log);

  runner.listen();
  // Without Redis this is the only instance (by contract), so every STREAMING reply is orphaned.
  await store.sweep(runner.activeIds(), config.redisUrl ? ORPHAN_AFTER_MS : 'all', { previousRun: true });
  const sweeper = setInterval(() => void store.sweep(runner.activeIds(), ORPHAN_AFTER_MS).catch(() => undefined), ORPHAN_AFTER_MS / 3);
  sweeper.unref();

  return {
    service,
    async stop() {
      clearInterval(sweeper);
      await runner.stopAll();
    },
  };
}
