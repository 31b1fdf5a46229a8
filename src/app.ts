import { createAssistant } from './assistant';
import { AuthService } from './auth/auth-service';
import { SessionService } from './auth/sessions';
import { TokenService } from './auth/tokens';
import { ActivityRouter } from './chat/activity-router';
import { DirectoryService } from './chat/directory-service';
import { MembershipService } from './chat/membership-service';
import { MessageService } from './chat/message-service';
import { MessageStore } from './chat/message-store';
import { HubRegistry } from './chat/room-hub';
import { RoomService } from './chat/room-service';
import { RoomStore } from './chat/room-store';
import { SubscriptionService } from './chat/subscription-service';
import type { Config } from './config';
import { DatabaseClock } from './db/clock';
import { openDatabase, type Database } from './db/data-source';
import { DataDirLockedError } from './db/embedded';
import { createContextFactory, type Services } from './graphql/context';
import { createBudgets } from './graphql/budgets';
import { createOperationRules } from './graphql/limits';
import { createSchema } from './graphql/schema';
import { createClientAddress } from './http/client-address';
import { createHttpServer } from './http/server';
import { shutdownPlan } from './http/transport';
import { createLogger, type Logger } from './logger';
import { createPubSub, type PubSub } from './pubsub';
import { Metrics } from './metrics';
import { RateLimits } from './rate-limit';
import { createEphemeral } from './presence';

/** A running instance: its address once listening, its parts (for tests), and how to stop it. */
export interface App {
  config: Config;
  log: Logger;
  db: Database;
  pubsub: PubSub;
  services: Services;
  /** Every write to messages (for tests that stage what a crashed instance leaves). */
  messageStore: MessageStore;
  hubs: HubRegistry;
  /** Listens on `config.port` (0 picks a free one); resolves to the port. */
  listen(): Promise<number>;
  /** Graceful stop: stop accepting, close WebSockets with 1001, finish requests, release resources. */
  stop(): Promise<void>;
}

/**
 * The composition root: opens the database (running migrations), pub/sub, the services and
 * the HTTP/WebSocket server. Nothing here reads the environment; `config` says everything.
 */
export async function createApp(config: Config, log: Logger = createLogger(config.logLevel)): Promise<App> {
  const db = await openDatabase(config, log).catch((err: unknown) => {
    if (err instanceof DataDirLockedError) throw err;
    // The setting behind what failed, never its value (a URL may hold a password).
    throw new Error(`cannot open ${config.databaseUrl ? 'the database (DATABASE_URL)' : 'the embedded database (DATA_DIR)'}: ${(err as Error).message}`);
  });
  const pubsub = createPubSub(config, log);
  if (!(await pubsub.ready(5000))) log.warn('pub/sub is not reachable yet; starting anyway (delivery heals when it connects)');
  const tokens = new TokenService(config.jwtSecret, config.jwtTtlSeconds);
  const sessions = new SessionService(db.dataSource, tokens, pubsub, log, config.refreshTokenTtlSeconds);
  sessions.start();
  const metrics = new Metrics();
  const limits = new RateLimits(config.redisUrl, (budget) => metrics.rateLimited.inc({ budget }));
  // A send's statement begun past the moment the server answers it SERVICE_UNAVAILABLE inserts
  // nothing. (The embedded database runs in this process: nothing there gives up on a statement.)
  const clock = new DatabaseClock(db.dataSource, log);
  if (config.databaseUrl) clock.start();
  const messageStore = new MessageStore(
    db.dataSource,
    pubsub,
    log,
    () => metrics.rateLimited.inc({ budget: 'send-room' }),
    () => clock.deadline(config.databaseTimeoutMs),
    () => void clock.sample(),
  );
  const messages: MessageService = new MessageService(
    db.dataSource,
    messageStore,
    log,
    async (m) => {
      metrics.messagesSent.inc();
      await assistant.service.replyToMention(m);
    },
    { points: config.sendsPerRoomPer10s, windowS: 10 },
  );
  const store = new RoomStore(db.dataSource);
  const members = new MembershipService(db.dataSource, pubsub, log, (roomId, userId) => ephemeral.typing.end(roomId, userId));
  const settleRevocations = () => sessions.settleRevocations();
  const activity = new ActivityRouter(store, pubsub, log, config.healIntervalMs, settleRevocations);
  activity.start();
  metrics.gauge('chat_my_events_feeds', 'myEvents subscriptions on this instance', () => activity.size);
  const hubs = new HubRegistry(store, pubsub, log, config.healIntervalMs, (n) => metrics.gapFills.inc(n), settleRevocations);
  metrics.gauge('chat_room_hubs', 'Rooms with live subscribers on this instance', () => hubs.size);
  const assistant = await createAssistant(config, db.dataSource, messageStore, pubsub, limits, metrics, log);
  metrics.gauge('chat_assistant_streaming', 'Assistant replies streaming on this instance', () => assistant.service.streaming);
  const budgets = createBudgets(config, limits);
  const ephemeral = createEphemeral(config, db.dataSource, pubsub, log, budgets.typingPerUser);
  const services: Services = {
    sessions,
    auth: new AuthService(
      db.dataSource,
      sessions,
      limits.create('login-user', config.logInAttemptsPerUsernamePer15Min, 15 * 60, 'Too many log-in attempts for this username; retry later'),
    ),
    rooms: new RoomService(db.dataSource, store, members, pubsub, budgets.roomsPerAddress),
    members,
    directory: new DirectoryService(db.dataSource),
    activity,
    messages,
    subscriptions: new SubscriptionService(db.dataSource, hubs, store, log),
    assistant: assistant.service,
    typing: ephemeral.typing,
    presence: ephemeral.presence,
  };
  const schema = createSchema(budgets);
  const server = await createHttpServer({
    schema,
    rules: createOperationRules({ ...config.operationLimits, introspection: config.introspection }, schema),
    tokens,
    sessions,
    sessionSweepMs: config.sessionSweepMs,
    log,
    introspection: config.introspection,
    corsOrigins: config.corsOrigins,
    clientAddress: createClientAddress(config.trustProxy),
    webSockets: {
      perUser: config.wsPerUser,
      operationsPerSocketPerSecond: config.wsOperationsPerSocketPerSecond,
      perAddress: config.wsPerAddress,
      maxBufferedBytes: config.wsMaxBufferedBytes,
      stallTimeoutMs: config.wsStallTimeoutMs,
    },
    httpKeepAliveMs: config.httpKeepAliveMs,
    shutdown: shutdownPlan(config.shutdownTimeoutMs),
    probes: { database: () => db.ping(), pubsub: () => pubsub.ping() },
    readyWithoutPubsub: config.readyWithoutPubsub,
    context: createContextFactory(db.dataSource, services),
    metrics,
    presence: ephemeral.presence,
  });

  let stopping: Promise<void> | undefined;
  return {
    config,
    log,
    db,
    pubsub,
    services,
    messageStore,
    hubs,
    listen: () => server.listen(config.port, config.host),
    stop() {
      stopping ??= (async () => {
        await server.stop();
        await ephemeral.close();
        await assistant.stop();
        await limits.close();
        await hubs.close();
        activity.stop();
        sessions.close();
        clock.stop();
        await pubsub.close();
        await db.close();
      })();
      return stopping;
    },
  };
}
