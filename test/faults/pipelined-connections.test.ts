// The pipelined connections that run the hot prepared statements (src/db/pipelined.ts), against a
// private PostgreSQL whose backends are terminated and which is stopped here: every statement gets
// its own result or error, a statement waiting for a row lock does not hold up the statements that
// take none, and a failed or unreachable connection fails its statements with a connection error
// (answered SERVICE_UNAVAILABLE) and is replaced by the next statement.
import { isConnectionError, isUniqueViolation } from '../../src/db/errors';
import { PipelinedStatements, STATEMENT_TIMEOUT_MS } from '../../src/db/pipelined';
import { prepare } from '../../src/db/prepared';
import { createLogger } from '../../src/logger';
import { sql, startPostgres, type PrivatePostgres } from './support/backing';

const READ = prepare('test_pipelined_read', 'SELECT $1::integer AS n, pg_backend_pid() AS pid');
const INSERT = prepare('test_pipelined_insert', 'INSERT INTO pipelined_items (id) VALUES ($1) RETURNING id', { locks: true });
const LOCKING = prepare('test_pipelined_lock', 'UPDATE pipelined_items SET id = id WHERE id = $1 RETURNING id', { locks: true });
/** Takes no row lock, but stalls while another transaction holds `pipelined_stall` (a stand-in for a backend that stops answering). */
const STALLING = prepare('test_pipelined_stall', 'SELECT count(*)::integer AS n FROM pipelined_stall WHERE $1::integer IS NOT NULL');

let pg: PrivatePostgres;
let pipelined: PipelinedStatements;

beforeAll(async () => {
  pg = await startPostgres();
  await sql(pg.url, 'CREATE TABLE pipelined_items (id integer PRIMARY KEY)');
  await sql(pg.url, 'CREATE TABLE pipelined_stall (id integer)');
  pipelined = new PipelinedStatements({ connectionString: pg.url, connectionTimeoutMillis: 3000 }, createLogger('silent'));
}, 60_000);

afterAll(async () => {
  await pipelined?.close();
  pg?.destroy();
}, 30_000);

it('answers each of many statements in flight at once with its own rows, one failing among them without harm to the others', async () => {
  await pipelined.run(INSERT, [1]);
  const reads = Array.from({ length: 300 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i]));
  const inserts = [2, 1, 3].map((id) => pipelined.run<Array<{ id: number }>>(INSERT, [id]).then((rows) => rows[0].id, (err: unknown) => err));
  expect((await Promise.all(reads)).map((rows) => rows[0].n)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  const [two, one, three] = await Promise.all(inserts);
  expect([two, three]).toEqual([2, 3]);
  expect(isUniqueViolation(one, 'pipelined_items_pkey')).toBe(true);
});

it('keeps answering statements that take no lock while one waits for a row lock', async () => {
  await pipelined.run(INSERT, [10]);
  const holder = await startLockHolder(10);
  try {
    let waited = false;
    const waiting = pipelined.run(LOCKING, [10]).then(() => (waited = true));
    const reads = await Promise.all(Array.from({ length: 20 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i])));
    expect(reads.map((rows) => rows[0].n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // Another locking statement goes to the other write connection, not behind the waiting one.
    expect(await pipelined.run<Array<{ id: number }>>(INSERT, [11])).toEqual([{ id: 11 }]);
    expect(waited).toBe(false);
    await holder.release();
    await waiting;
    expect(waited).toBe(true);
  } finally {
    await holder.release();
  }
});

it('passes over a connection whose statement does not answer, and gives that connection up after STATEMENT_TIMEOUT_MS', async () => {
  const holder = await startHolder('LOCK TABLE pipelined_stall IN ACCESS EXCLUSIVE MODE');
  try {
    const started = Date.now();
    const stalled = pipelined.run(STALLING, [1]).then(
      () => 'answered',
      (err: unknown) => (isConnectionError(err) ? `connection error after ${Date.now() - started >= STATEMENT_TIMEOUT_MS - 50 ? 'the timeout' : 'less'}` : String(err)),
    );
    await new Promise((resolve) => setTimeout(resolve, 300)); // long enough for its connection to count as stalled
    const reads = await Promise.all(Array.from({ length: 20 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i])));
    expect(reads.map((rows) => rows[0].n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Date.now() - started).toBeLessThan(STATEMENT_TIMEOUT_MS / 2);
    expect(await stalled).toBe('connection error after the timeout');
  } finally {
    await holder.release();
  }
  expect((await pipelined.run<Array<{ n: number }>>(STALLING, [1]))[0].n).toBe(0);
}, 20_000);

it('fails the statements of a terminated connection with a connection error, and the next statements run on a new one', async () => {
  const before = (await pipelined.run<Array<{ pid: number }>>(READ, [0]))[0].pid;
  await sql(pg.url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  const outcome = await pipelined.run(READ, [1]).then(
    () => 'answered',
    (err: unknown) => (isConnectionError(err) ? 'connection error' : String(err)),
  );
  // The termination may reach the client before or after the statement leaves: either it fails as
  // a connection error, or it already ran on a new connection.
  expect(['connection error', 'answered']).toContain(outcome);
  const after = (await pipelined.run<Array<{ pid: number }>>(READ, [2]))[0].pid;
  expect(after).not.toBe(before);
});

it('fails fast with a connection error while PostgreSQL is down, and works again once it is back', async () => {
  pg.stop('fast');
  try {
    const started = Date.now();
    const failures = await Promise.all(
      Array.from({ length: 10 }, (_, i) => pipelined.run(i % 2 ? INSERT : READ, [100 + i]).then(() => 'answered', (err: unknown) => (isConnectionError(err) ? 'connection error' : String(err)))),
    );
    expect(failures).toEqual(Array.from({ length: 10 }, () => 'connection error'));
    expect(Date.now() - started).toBeLessThan(5000);
  } finally {
    pg.start();
  }
  expect((await pipelined.run<Array<{ n: number }>>(READ, [7]))[0].n).toBe(7);
  expect(await pipelined.run<Array<{ id: number }>>(INSERT, [200])).toEqual([{ id: 200 }]);
});

/** A transaction on its own connection holding row `id`'s lock until `release()`. */
const startLockHolder = (id: number) => startHolder(`SELECT id FROM pipelined_items WHERE id = ${id} FOR UPDATE`);

/** A transaction on its own connection that has run `statement` (taking its locks) and holds them until `release()`. */
async function startHolder(statement: string): Promise<{ release(): Promise<void> }> {
  const { Client } = await import('pg');
  const client = new Client({ connectionString: pg.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(statement);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await client.query('COMMIT');
      await client.end();
    },
  };
}
