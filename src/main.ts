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
  // Asked to stop while starting (waiting for Redis, migrating): stop, rather than be killed later.
  // (As a container's first process, Node ignores a signal it has no handler for.)
  const stopWhileStarting = (signal: string) => {
    log.warn({ signal }, 'stopped while starting');
    process.exit(0);
  };
  process.once('SIGTERM', stopWhileStarting);
  process.once('SIGINT', stopWhileStarting);
  let app;
  try {
    app = await createApp(config, log);
  } catch (err) {
    if (err instanceof DataDirLockedError) {
      log.fatal(err.message);
      process.exit(1);
    }
    log.fatal(`Failed to start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  const port = await app.listen().catch((err: Error) => {
    log.fatal(`Failed to start: ${err.message}`);
    return process.exit(1);
  });
  process.off('SIGTERM', stopWhileStarting);
  process.off('SIGINT', stopWhileStarting);
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
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  createLogger('info').fatal(`Failed to start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
