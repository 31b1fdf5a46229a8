import 'reflect-metadata';
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
  /** True when a trivial query answers within the timeout. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

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
 * pending migrations — on PostgreSQL under an advisory lock, so instances starting together on an
 * empty database migrate it once. On PostgreSQL the prepared statements that run on their own
 * (session checks, sends) use a few pipelined connections besides TypeORM's pool (`pipelined.ts`).
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
  const dataSource = new DataSource({
    ...common,
    url: config.databaseUrl,
    extra: { max: 20, connectionTimeoutMillis: 3000, keepAlive: true },
  } as DataSourceOptions);
  await dataSource.initialize();
  await migrateUnderLock(dataSource);
  const pipelined = new PipelinedStatements({ connectionString: config.databaseUrl, connectionTimeoutMillis: 3000, keepAlive: true }, log);
  usePipelined(dataSource, pipelined);
  return wrap(dataSource, async () => {
    await pipelined.close();
    await dataSource.destroy();
  });
}

async function migrateUnderLock(dataSource: DataSource): Promise<void> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await dataSource.runMigrations();
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await runner.release();
  }
}

function wrap(dataSource: DataSource, close: () => Promise<void>): Database {
  return {
    dataSource,
    close,
    ping: (timeoutMs = 2000) =>
      within(
        dataSource.query('SELECT 1').then(() => true, () => false),
        timeoutMs,
        false,
      ),
  };
}
