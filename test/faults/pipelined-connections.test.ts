// The pipelined connections that run the hot prepared statements (src/db/pipelined.ts), against a
// private PostgreSQL whose backends are terminated and which is stopped here: every statement gets
// its own result or error; one that would wait for a row lock goes elsewhere (the pool) instead of
// holding up the statements behind it, and so does one PostgreSQL cancelled; a connection that does not answer is passed over and given
// up, while one whose statement PostgreSQL cancelled (statement_timeout) is kept; a failed or
// unreachable connection fails its statements with a connection error (answered
// SERVICE_UNAVAILABLE) and is replaced by the next statement.
import { Socket } from 'node:net';
import { Client, Pool } from 'pg';
import { isConnectionError, isUniqueViolation } from '../../src/db/errors';
import { LOCK_WAIT_MS, MAX_WAITING_ELSEWHERE, PipelinedStatements } from '../../src/db/pipelined';
import { prepare } from '../../src/db/prepared';
import { createLogger } from '../../src/logger';
import { sql, startPostgres, type PrivatePostgres } from './support/backing';

const READ = prepare('test_pipelined_read', 'SELECT $1::integer AS n, pg_backend_pid() AS pid');
const INSERT = prepare('test_pipelined_insert', 'INSERT INTO pipelined_items (id) VALUES ($1) RETURNING id', { locks: true });
const LOCKING = prepare('test_pipelined_lock', 'UPDATE pipelined_items SET id = id WHERE id = $1 RETURNING id', { locks: true });
/** Inserts after sleeping $2 seconds: a statement on the connections for those that take locks, running long enough to be cancelled. */
const SLOW_INSERT = prepare('test_pipelined_slow_insert', 'INSERT INTO pipelined_items (id) SELECT $1 FROM pg_sleep($2) RETURNING id', { locks: true });
/** Takes no row lock, but stalls while another transaction holds `pipelined_stall` (a stand-in for a backend that stops answering). */
const STALLING = prepare('test_pipelined_stall', 'SELECT count(*)::integer AS n FROM pipelined_stall WHERE $1::integer IS NOT NULL');

/** The client's `query_timeout` here: how long a statement may go unanswered before its connection is given up. */
const UNANSWERED_MS = 5000;

let pg: PrivatePostgres;
let pipelined: PipelinedStatements;

beforeAll(async () => {
  pg = await startPostgres();
  await sql(pg.url, 'CREATE TABLE pipelined_items (id integer PRIMARY KEY)');
  await sql(pg.url, 'CREATE TABLE pipelined_stall (id integer)');
  pipelined = new PipelinedStatements({ connectionString: pg.url, connectionTimeoutMillis: 3000, query_timeout: UNANSWERED_MS }, createLogger('silent'));
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

it('sends the statements handed to it in one tick in one write per connection', async () => {
  await Promise.all([pipelined.run(READ, [0]), pipelined.run(READ, [0])]); // both read connections are up
  const port = Number(new URL(pg.url).port);
  // Where a socket's buffered writes reach the system (its stream's own methods).
  const socketWrites = Socket.prototype as unknown as Record<'_write' | '_writev', (...args: unknown[]) => void>;
  const writes = jest.spyOn(socketWrites, '_writev');
  const write = jest.spyOn(socketWrites, '_write');
  try {
    const reads = Array.from({ length: 40 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i]));
    expect((await Promise.all(reads)).map((rows) => rows[0].n)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    const toDatabase = [...writes.mock.contexts, ...write.mock.contexts].filter((socket) => (socket as Socket).remotePort === port);
    expect(toDatabase.length).toBeGreaterThan(0);
    expect(toDatabase.length).toBeLessThanOrEqual(2); // without gathering: one per statement
  } finally {
    writes.mockRestore();
    write.mockRestore();
  }
});

it('plans a prepared statement once per connection, not again for each run\'s values', async () => {
  // A statement PostgreSQL would plan for every run's values when left to choose: that plan, with
  // the optional part folded away, is costed below the one for any values.
  const OPTIONAL = prepare('test_pipelined_optional', 'SELECT count(*)::integer AS n FROM pipelined_items WHERE $1::integer IS NULL OR id = $1');
  const PLANS = prepare('test_pipelined_plans', 'SELECT generic_plans::integer AS generic, custom_plans::integer AS custom FROM pg_prepared_statements WHERE name = $1');
  for (let i = 0; i < 12; i++) await pipelined.run(OPTIONAL, [i % 2 ? null : i]);
  // Asked on both connections at once (each takes the least busy): one of them ran the statement.
  const asked = await Promise.all([0, 1, 2, 3].map(() => pipelined.run<Array<{ generic: number; custom: number }>>(PLANS, [OPTIONAL.name])));
  const plans = asked.flat();
  expect(plans.length).toBeGreaterThan(0);
  expect(plans.reduce((sum, p) => sum + p.generic, 0)).toBeGreaterThanOrEqual(12);
  expect(plans.every((p) => p.custom === 0)).toBe(true); // left to choose: at least 5 custom plans, then more
});

it('sends a statement that would wait for a row lock elsewhere after LOCK_WAIT_MS, holding up none of the statements behind it', async () => {
  await pipelined.run(INSERT, [10]);
  const pool = new Pool({ connectionString: pg.url });
  let elsewhere = 0;
  const viaPool = (id: number) => async () => {
    elsewhere++;
    return (await pool.query({ name: LOCKING.name, text: LOCKING.text, values: [id] })).rows;
  };
  const holder = await startLockHolder(10);
  try {
    // Two of them: as many as there are connections for statements that take locks.
    const waiting = [1, 2].map(() => pipelined.run(LOCKING, [10], viaPool(10)));
    const started = Date.now();
    const others = await Promise.all(Array.from({ length: 50 }, (_, i) => pipelined.run<Array<{ id: number }>>(INSERT, [1000 + i])));
    const reads = await Promise.all(Array.from({ length: 20 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i])));
    expect(others.map((rows) => rows[0].id)).toEqual(Array.from({ length: 50 }, (_, i) => 1000 + i));
    expect(reads.map((rows) => rows[0].n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Date.now() - started).toBeLessThan(1000); // the lock is held for longer than all of this
    expect(elsewhere).toBe(2);
    await holder.release();
    expect(await Promise.all(waiting)).toEqual([[{ id: 10 }], [{ id: 10 }]]);
  } finally {
    await holder.release();
    await pool.end();
  }
});

it('lets at most MAX_WAITING_ELSEWHERE of the statements that gave up waiting for a lock wait elsewhere at once', async () => {
  await pipelined.run(INSERT, [30]);
  const pool = new Pool({ connectionString: pg.url, max: 40 });
  let waitingNow = 0;
  let mostAtOnce = 0;
  const viaPool = async () => {
    mostAtOnce = Math.max(mostAtOnce, ++waitingNow);
    try {
      return (await pool.query({ name: LOCKING.name, text: LOCKING.text, values: [30] })).rows;
    } finally {
      waitingNow--;
    }
  };
  const holder = await startLockHolder(30);
  try {
    const sends = Array.from({ length: 3 * MAX_WAITING_ELSEWHERE }, () => pipelined.run(LOCKING, [30], viaPool));
    await new Promise((resolve) => setTimeout(resolve, 300)); // every one has given up on its pipelined connection
    expect(waitingNow).toBe(MAX_WAITING_ELSEWHERE);
    await holder.release();
    expect((await Promise.all(sends)).flat()).toEqual(Array.from({ length: 3 * MAX_WAITING_ELSEWHERE }, () => ({ id: 30 })));
    expect(mostAtOnce).toBe(MAX_WAITING_ELSEWHERE);
  } finally {
    await holder.release();
    await pool.end();
  }
});

it('fails a statement that would wait for a row lock with lock_not_available when it has nowhere else to go', async () => {
  await pipelined.run(INSERT, [20]);
  const holder = await startLockHolder(20);
  try {
    const started = Date.now();
    const outcome = await pipelined.run(LOCKING, [20]).then(() => 'answered', (err: { code?: string }) => err.code);
    expect(outcome).toBe('55P03');
    expect(Date.now() - started).toBeGreaterThanOrEqual(LOCK_WAIT_MS - 1);
  } finally {
    await holder.release();
  }
});

it('sends a statement PostgreSQL cancelled elsewhere too, which finds nothing of its first run (a full run saw a lock wait cancelled "due to user request")', async () => {
  const pool = new Pool({ connectionString: pg.url });
  const viaPool = async () => (await pool.query({ name: SLOW_INSERT.name, text: SLOW_INSERT.text, values: [40, 0] })).rows;
  try {
    const cancelled = [pipelined.run(SLOW_INSERT, [40, 30], viaPool), pipelined.run(SLOW_INSERT, [41, 30]).then(() => 'answered', (err: { code?: string }) => err.code)];
    await cancelAll(SLOW_INSERT.text, 2);
    // Inserted on the pool, without a unique violation: the cancelled run inserted nothing.
    expect(await cancelled[0]).toEqual([{ id: 40 }]);
    expect(await cancelled[1]).toBe('57014'); // nowhere else to go
    expect(await sql(pg.url, 'SELECT id FROM pipelined_items WHERE id IN (40, 41)')).toEqual([{ id: 40 }]);
  } finally {
    await pool.end();
  }
});

/** Cancels (pg_cancel_backend) the `count` statements running `text` once they all run. */
async function cancelAll(text: string, count: number): Promise<void> {
  for (;;) {
    const running = await sql<{ pid: number }>(pg.url, `SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'active'`, [text]);
    if (running.length === count) {
      await sql(pg.url, 'SELECT pg_cancel_backend(pid) FROM unnest($1::integer[]) pid', [running.map((r) => r.pid)]);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

it('passes over a connection whose statement does not answer, and gives that connection up after its query_timeout', async () => {
  const holder = await startHolder('LOCK TABLE pipelined_stall IN ACCESS EXCLUSIVE MODE');
  try {
    const started = Date.now();
    const stalled = pipelined.run(STALLING, [1]).then(
      () => 'answered',
      (err: unknown) => (isConnectionError(err) ? `connection error after ${Date.now() - started >= UNANSWERED_MS - 50 ? 'the timeout' : 'less'}` : String(err)),
    );
    await new Promise((resolve) => setTimeout(resolve, 300)); // long enough for its connection to count as stalled
    const reads = await Promise.all(Array.from({ length: 20 }, (_, i) => pipelined.run<Array<{ n: number }>>(READ, [i])));
    expect(reads.map((rows) => rows[0].n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Date.now() - started).toBeLessThan(UNANSWERED_MS / 2);
    expect(await stalled).toBe('connection error after the timeout');
  } finally {
    await holder.release();
  }
  expect((await pipelined.run<Array<{ n: number }>>(STALLING, [1]))[0].n).toBe(0);
}, 20_000);

it('hands nothing to a connection whose oldest unanswered statement waits longer than query_timeout less statement_timeout: fails it at once, unsent, when every connection is so', async () => {
  // query_timeout 500 ms past statement_timeout: a statement handed to a connection stalled longer
  // would fail with it (its oldest statement given up) before its own deadline, yet could still run later.
  const guarded = new PipelinedStatements({ connectionString: pg.url, connectionTimeoutMillis: 3000, statement_timeout: 10_000, query_timeout: 10_500 }, createLogger('silent'));
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  try {
    await Promise.all([guarded.run(READ, [1]), guarded.run(READ, [2])]); // both connections up
    const holder = await startHolder('LOCK TABLE pipelined_stall IN ACCESS EXCLUSIVE MODE');
    let stalled: Array<Promise<unknown>> = [];
    let accepted: Promise<unknown> | undefined;
    let refused: unknown;
    let refusedAfterMs = Infinity;
    try {
      stalled = [guarded.run(STALLING, [1]), guarded.run(STALLING, [2])]; // one on each connection
      await sleep(250);
      accepted = guarded.run(READ, [3]); // within 500 ms of the oldest: handed over, answered after them
      await sleep(400);
      const started = Date.now();
      refused = await guarded.run(READ, [4]).then(() => undefined, (err: unknown) => err);
      refusedAfterMs = Date.now() - started;
    } finally {
      await holder.release();
    }
    expect((refused as Error | undefined)?.name).toBe('NotAnsweringError');
    expect(isConnectionError(refused)).toBe(true); // answered SERVICE_UNAVAILABLE
    expect(refusedAfterMs).toBeLessThan(200); // at once, not when a connection is given up
    expect((await Promise.all(stalled)).map((rows) => (rows as Array<{ n: number }>)[0].n)).toEqual([0, 0]);
    expect(((await accepted) as Array<{ n: number }>)[0].n).toBe(3);
    expect((await guarded.run<Array<{ n: number }>>(READ, [5]))[0].n).toBe(5); // answering again: taken again
  } finally {
    await guarded.close();
  }
}, 20_000);

it('fails alone a statement PostgreSQL cancels past its statement_timeout, and keeps its connection', async () => {
  const timed = new PipelinedStatements(
    { connectionString: pg.url, connectionTimeoutMillis: 3000, statement_timeout: 300, query_timeout: UNANSWERED_MS },
    createLogger('silent'),
    1,
  );
  try {
    const [{ pid }] = await timed.run<Array<{ pid: number }>>(READ, [0]);
    const holder = await startHolder('LOCK TABLE pipelined_stall IN ACCESS EXCLUSIVE MODE');
    let cancelled: unknown;
    try {
      const stalling = timed.run(STALLING, [1]).then(() => 'answered', (err: unknown) => err);
      const behind = timed.run<Array<{ n: number }>>(READ, [1]); // queued behind it on the one connection
      cancelled = await stalling;
      expect((await behind)[0].n).toBe(1);
    } finally {
      await holder.release();
    }
    expect(cancelled).toMatchObject({ code: '57014' });
    expect(isConnectionError(cancelled)).toBe(true); // answered SERVICE_UNAVAILABLE
    expect(await timed.run<Array<{ pid: number }>>(READ, [2])).toEqual([{ n: 2, pid }]); // the same connection
  } finally {
    await timed.close();
  }
});

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
