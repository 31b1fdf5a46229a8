import 'reflect-metadata';
import { Client } from 'pg';
import { DataSource, type DataSourceOptions } from 'typeorm';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { within } from '../within';
import { openEmbedded } from './embedded';
import { entities } from './entities';
import { migrations } from './migrations';
import { PipelinedStatements } from './pipelined';
import { usePipelined } from './prepared';

/** The database the services use, and how to check and release it. */
export interface Database {
  dataSource: DataSource;
  /** True when the database answers within the timeout, and takes writes. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * A connection of the pool that gives itself up when a statement goes unanswered past its
 * `query_timeout` (a frozen database, or one cut off without a reset): the pool replaces it, and
 * the statement's transaction fails at once instead of waiting as long again for its ROLLBACK on
 * the same silent connection. (A statement that ran too long is cancelled by PostgreSQL before
 * this: `statement_timeout`.)
 */
class GivingUpClient extends Client {
  // @ts-expect-error: node-postgres's overloads, passed through as they are (only a promise is watched)
  override query(...args: Parameters<Client['query']>) {
    const result = (Client.prototype.query as (...a: unknown[]) => unknown).apply(this, args);
    if (!(result instanceof Promise)) return result;
    return result.catch((err: Error) => {
      if (err?.message === 'Query read timeout') (this as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      throw err;
    });
  }
}

/**
 * The timeouts of every serving connection, the pool's and the pipelined ones: no statement waits
 * for ever. PostgreSQL cancels one that runs longer than `DATABASE_TIMEOUT_MS` (a lock held
 * elsewhere), and the client gives up 2 s later on a database that does not answer at all.
 */
const timeouts = (ms: number) => ({ statement_timeout: ms, query_timeout: ms + 2000 });

/** Any number in this project's key space; serializes migrations across instances starting at once. */
const MIGRATION_LOCK_KEY = 7_246_311;

const common = {
  type: 'postgres',
  entities,
  migrations,
  migrationsTransactionMode: 'each',
  uuidExtension: 'pgcrypto',
  installExtensions: false,
  synchronize: false,
  logging: false,
} as const;

/**
 * Opens PostgreSQL (`DATABASE_URL`) or the embedded PGlite database in `DATA_DIR`, and runs the
 * pending migrations (on PostgreSQL: `migrate`). On PostgreSQL the prepared statements that run on
 * their own (session checks, sends) use a few pipelined connections besides TypeORM's pool
 * (`pipelined.ts`), and no statement on either runs or waits longer than `DATABASE_TIMEOUT_MS` (`timeouts`).
 */
export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  if (!config.databaseUrl) {
    const embedded = await openEmbedded(config.dataDir, log);
    const dataSource = new DataSource({ ...common, extra: embedded.poolConfig } as DataSourceOptions);
    await dataSource.initialize();
    await dataSource.runMigrations();
    return wrap(dataSource, async () => {
      await dataSource.destroy();
      await embedded.close();
    });
  }
  await migrate(config.databaseUrl);
  const dataSource = new DataSource({
    ...common,
    url: config.databaseUrl,
    extra: {
      max: 20,
      connectionTimeoutMillis: 3000,
      keepAlive: true,
      ...timeouts(config.databaseTimeoutMs),
      Client: GivingUpClient,
    },
  } as DataSourceOptions);
  await dataSource.initialize();
  const pipelined = new PipelinedStatements(
    { connectionString: config.databaseUrl, connectionTimeoutMillis: 3000, keepAlive: true, ...timeouts(config.databaseTimeoutMs) },
    log,
  );
  usePipelined(dataSource, pipelined);
  return wrap(dataSource, async () => {
    await pipelined.close();
    await dataSource.destroy();
  });
}

/**
 * Runs the pending migrations on connections of their own, without the serving pool's timeouts (a
 * migration may take long on a large table, and waits for another instance's), under an advisory
 * lock, so instances starting together on an empty database migrate it once.
 */
async function migrate(url: string): Promise<void> {
  const dataSource = new DataSource({ ...common, url, extra: { max: 2, connectionTimeoutMillis: 3000, keepAlive: true } } as DataSourceOptions);
  await dataSource.initialize();
  const runner = dataSource.createQueryRunner();
  try {
    await runner.connect();
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await dataSource.runMigrations();
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await runner.release();
    await dataSource.destroy();
  }
}

function wrap(dataSource: DataSource, close: () => Promise<void>): Database {
  return {
    dataSource,
    close,
    // Up means it takes writes too: a database that has turned read-only (a standby, a primary
    // being failed over) would refuse every send, so the instance is not ready on it.
    ping: (timeoutMs = 2000) =>
      within(
        dataSource.query(`SELECT current_setting('transaction_read_only') = 'off' AS writable`).then(([row]: Array<{ writable: boolean }>) => row.writable, () => false),
        timeoutMs,
        false,
      ),
  };
}
