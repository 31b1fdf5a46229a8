import { createApp } from './app';
import { ConfigError, generatedSecretFile, loadConfig } from './config';
import { DataDirLockedError } from './db/embedded';
import { createLogger } from './logger';

/** The process: read config, start the app, stop it gracefully on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      createLogger('info').fatal(`Configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // A promise rejected where nobody waits (a library's own: graphql-redis-subscriptions leaves one
  // when Redis refuses a SUBSCRIBE) is logged, not the end of the process and of its connections.
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'a promise failed where nothing waited for it; serving on'));
  if (!process.env.JWT_SECRET) {
    log.warn({ file: generatedSecretFile(config.dataDir) }, 'JWT_SECRET is not set: using a generated secret (set it in production)');
  }
  // One listener from the start, whose work changes once the app serves: asked to stop while
  // starting (waiting for Redis, migrating), it stops rather than be killed later (as a container's
  // first process, Node ignores a signal it has no handler for). A signal that arrives while the
  // start keeps the event loop busy is read once it is free; had the listener been swapped
  // meanwhile, Node, left with none for an instant, would drop it. The first signal is handled; a
  // second one ends the process at once.
  let onSignal: (signal: NodeJS.Signals) => void = (signal) => {
    log.warn({ signal }, 'stopped while starting');
    process.exit(0);
  };
  const signalled = (signal: NodeJS.Signals) => {
    process.off('SIGTERM', signalled);
    process.off('SIGINT', signalled);
    onSignal(signal);
  };
  process.on('SIGTERM', signalled);
  process.on('SIGINT', signalled);
  /** One fatal line (a locked data directory says all there is to say itself), exit 1. */
  const failed = (err: unknown): never => {
    log.fatal(err instanceof DataDirLockedError ? err.message : `Failed to start: ${err instanceof Error ? err.message : String(err)}`);
    return process.exit(1);
  };
  const app = await createApp(config, log).catch(failed);
  const port = await app.listen().catch(failed);
  const where = `http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port}/graphql`;
  log.info(
    { port, database: config.databaseUrl ? 'postgresql' : 'embedded', pubsub: config.redisUrl ? 'redis' : 'memory' },
    `chat API ready: GraphiQL and GraphQL at ${where}`,
  );

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    force.unref();
    app.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  onSignal = shutdown;
}

main().catch((err) => {
  createLogger('info').fatal(`Failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
