// Private PostgreSQL and Redis for the fault tests that stop or kill them (the other test files
// share the global ones, which must not be disturbed), and a plain SQL client to check the truth.
import { Client } from 'pg';

/** A throwaway PostgreSQL: `stop()` keeps the data, `start()` brings it back on the same port. */
export interface PrivatePostgres {
  url: string;
  port: number;
  start(): void;
  stop(mode?: 'smart' | 'fast' | 'immediate'): void;
  destroy(): void;
}

/** A throwaway redis-server: `stop()` kills it (SIGKILL), `start()` brings it back on the same port. */
export interface PrivateRedis {
  url: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

interface ServersModule {
  freePort(): Promise<number>;
  startPostgres(): Promise<PrivatePostgres>;
  startRedis(): Promise<PrivateRedis>;
}

// The tests' helper is plain CommonJS without type declarations.
const servers = require('../../support/servers.js') as ServersModule;

export const freePort = (): Promise<number> => servers.freePort();
export const startPostgres = (): Promise<PrivatePostgres> => servers.startPostgres();
export const startRedis = (): Promise<PrivateRedis> => servers.startRedis();

/** The shared PostgreSQL and Redis of the jest global setup (never stopped by these tests). */
export function sharedUrls(): { databaseUrl: string; redisUrl: string } {
  const databaseUrl = process.env.TEST_DATABASE_URL;
  const redisUrl = process.env.TEST_REDIS_URL;
  if (!databaseUrl || !redisUrl) throw new Error('TEST_DATABASE_URL / TEST_REDIS_URL are not set: the jest global setup starts the servers');
  return { databaseUrl, redisUrl };
}

/** Runs one SQL statement on its own connection. */
export async function sql<T = Record<string, unknown>>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The room's messages as the database has them, in seq order: the truth the tallies are checked against. */
export async function roomTruth(
  url: string,
  roomId: string,
): Promise<{ lastSeq: number; lastChange: number; messages: Array<{ id: string; seq: number; clientId: string | null }> }> {
  const [room] = await sql<{ last_seq: number; last_change: number }>(url, 'SELECT last_seq, last_change FROM rooms WHERE id = $1', [roomId]);
  const messages = await sql<{ id: string; seq: number; client_id: string | null }>(
    url,
    'SELECT id, seq, client_id FROM messages WHERE room_id = $1 ORDER BY seq',
    [roomId],
  );
  return { lastSeq: Number(room?.last_seq ?? 0), lastChange: Number(room?.last_change ?? 0), messages: messages.map((m) => ({ id: m.id, seq: Number(m.seq), clientId: m.client_id })) };
}
