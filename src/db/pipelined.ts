import pLimit from 'p-limit';
import type { Writable } from 'node:stream';
import { Client, type ClientConfig } from 'pg';
import type { Logger } from '../logger';
import { isConnectionLost, isLockNotAvailable, isStatementCancelled, NotAnsweringError } from './errors';
import type { PreparedStatement } from './prepared';

/**
 * How long a pipelined statement may wait for a row lock (PostgreSQL's `lock_timeout` on the
 * connections of statements that take locks): long enough for the sends into one room to take
 * turns, short enough that one waiting for a room changed in a transaction holds up the
 * statements queued behind it only briefly.
 */
export const LOCK_WAIT_MS = 10;

/**
 * Most statements that gave up waiting here may wait for their lock elsewhere (on the pool's
 * connections) at once; the others queue in the process. So sends into a room locked for long
 * cannot take every pooled connection from the instance's other work.
 */
export const MAX_WAITING_ELSEWHERE = 8;

/**
 * The pipelined connections' setting: each prepared statement runs on the plan PostgreSQL made for
 * it once per connection, never planned again for its values. Left to choose, PostgreSQL may go on
 * planning the send on every run (its plan for given values, where the parameters that switch a
 * part off fold away, can be costed below the plan for any values, depending on the tables'
 * statistics): on one database that was 40 % of its CPU per send (BENCHMARKS.md, "The send
 * planned once"). The statements that run here are written for one
 * plan: each of their optional parts is behind a condition on a parameter, checked once per run.
 */
const GENERIC_PLANS = '-c plan_cache_mode=force_generic_plan';

/**
 * A few long-lived PostgreSQL connections in node-postgres's pipeline mode, for the prepared
 * statements of the hot paths that run on their own (each its own implicit transaction): a
 * request's session check and a send. Statements handed to one connection go to the server
 * without waiting for the ones before them; the server runs them in order, and each still gets
 * its own result or error. Against a pool, where each statement takes a connection, waits for its
 * answer and hands it back, the server's backends run statement after statement without going to
 * sleep between them, and many statements share a read and a write on each side: at 50 sends in
 * flight this halved PostgreSQL's CPU per send (BENCHMARKS.md, "Pipelined statements").
 *
 * A statement holds up the statements queued behind it on its connection. So those that may wait
 * for a row lock (`PreparedStatement.locks`, the send) have connections of their own, where they
 * wait at most `LOCK_WAIT_MS` before going to the pool instead, and the others (session checks)
 * theirs, which never wait for a lock; and each statement goes to the connection of its kind with
 * the fewest statements in flight, passing over one that has answered nothing for a while (a lock
 * wait, a stalled backend). The connections take their timeouts from `config`, as the pool's do
 * (`DATABASE_TIMEOUT_MS`): a statement PostgreSQL cancels for running too long fails alone, and one
 * unanswered past `query_timeout` ends its connection (node-postgres destroys a pipelined
 * connection whose statement times out). A connection that fails fails the statements it has in flight (the
 * callers see a connection error, answered SERVICE_UNAVAILABLE and retryable: a send's `clientId`
 * settles it) and is replaced on the next statement.
 */
export class PipelinedStatements {
  private readonly reads: Lane;
  private readonly writes: Lane;
  private readonly waitingElsewhere = pLimit(MAX_WAITING_ELSEWHERE);

  constructor(config: ClientConfig, log: Logger, connectionsPerKind = 2) {
    const open = (extra: ClientConfig) => (): Client => {
      const client = new Client({ ...config, ...extra, options: GENERIC_PLANS, pipeline: true });
      // After a connection is up, its failure is an event: its statements have failed already.
      client.on('error', (err) => log.warn({ err: err.message }, 'a pipelined database connection failed; the next statement opens another'));
      return client;
    };
    // A connection is given up `query_timeout` after the oldest statement it left unanswered was
    // sent, and every statement behind it fails then. A send's statement inserts nothing once begun
    // `statement_timeout` after it was sent (`MessageStore.insert`): so no statement is handed to a
    // connection whose oldest unanswered one is older than the difference, or it could be answered
    // (failed) before its own deadline and still commit when the database runs it later.
    const acceptWithinMs = config.query_timeout && config.statement_timeout ? config.query_timeout - config.statement_timeout : Infinity;
    this.reads = new Lane(connectionsPerKind, open({}), acceptWithinMs);
    this.writes = new Lane(connectionsPerKind, open({ lock_timeout: LOCK_WAIT_MS }), acceptWithinMs);
  }

  /**
   * Runs `statement` with `values`; resolves to its rows. One that would wait for a row lock longer
   * than `LOCK_WAIT_MS` (the room of a send being changed in a transaction) gives up its place
   * without having changed anything, and runs through `elsewhere` (the pool), where its wait holds
   * up nobody else (at most `MAX_WAITING_ELSEWHERE` at once). So does one PostgreSQL cancelled
   * (57014): a full run saw a send on these connections cancelled "due to user request" after
   * 59 ms, where nothing cancels statements but the `lock_timeout`: PostgreSQL reports a lock
   * wait's timeout so now and then (1 in 7,350 of 10 ms timeouts of plain UPDATEs, tried on
   * PostgreSQL 15); and one that ran past `statement_timeout` is a send begun past its deadline
   * by the time it runs again, which inserts nothing (`MessageStore.insert`). Either way the
   * statement's own transaction rolled back.
   */
  async run<T = unknown>(statement: PreparedStatement, values: unknown[], elsewhere?: () => Promise<T>): Promise<T> {
    if (!statement.locks) return (await this.reads.run(statement, values)) as T;
    try {
      return (await this.writes.run(statement, values)) as T;
    } catch (err) {
      if (elsewhere && (isLockNotAvailable(err) || isStatementCancelled(err))) return this.waitingElsewhere(elsewhere);
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.reads.close(), this.writes.close()]);
  }
}

/** How long a connection with statements in flight may answer nothing before new statements pass it over. */
const STALLED_MS = 100;

interface Slot {
  client: Client;
  /** When each statement handed to it and not yet answered was handed (`performance.now()`), oldest first: it answers them in order. */
  sent: number[];
  /** When it last answered a statement, or was handed one while idle (`performance.now()`). */
  answeredAt: number;
  /** Statements handed to it in this tick are held back to go out together when the tick ends. */
  gathering: boolean;
  /** Takes it out of use (once it failed); the next statement opens another connection. */
  drop(): void;
}

/**
 * Holds the connection's writes back until the current tick ends, so that the statements handed to
 * it meanwhile (the sends whose budgets one Redis reply settled, say) go to the server in one
 * write: node-postgres writes each statement on its own, one system call each (BENCHMARKS.md,
 * "Fewer writes, publishes and checks per send").
 */
function gather(slot: Slot): void {
  if (slot.gathering) return;
  const stream = (slot.client as unknown as { connection?: { stream?: Partial<Writable> } }).connection?.stream;
  if (typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') return;
  slot.gathering = true;
  stream.cork();
  process.nextTick(() => {
    slot.gathering = false;
    stream.uncork!();
  });
}

/** Connections that share a kind of statement, each statement going to the least busy one. */
class Lane {
  private readonly slots: Array<Slot | undefined>;
  private closed = false;

  constructor(
    size: number,
    private readonly open: () => Client,
    /** Longest a connection's oldest unanswered statement may have waited for it to take another (ms). */
    private readonly acceptWithinMs: number,
  ) {
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  async run(statement: PreparedStatement, values: unknown[]): Promise<unknown> {
    if (this.closed) throw new Error('Connection terminated: the database is closed');
    const slot = this.pick();
    const now = performance.now();
    if (slot.sent.push(now) === 1) slot.answeredAt = now;
    gather(slot);
    try {
      return (await slot.client.query({ name: statement.name, text: statement.text, values })).rows;
    } catch (err) {
      // The connection is gone (or going: terminated, reset, unanswered) before it says so itself.
      if (isConnectionLost(err)) slot.drop();
      throw err;
    } finally {
      slot.sent.shift();
      slot.answeredAt = performance.now();
    }
  }

  /**
   * The slot with the fewest statements in flight among those answering, opening a connection
   * where one is missing or has ended: one that has answered nothing for `STALLED_MS` while it had
   * statements in flight (held up by a lock, or its backend stalled) is taken only when all are,
   * and one whose oldest unanswered statement was handed to it over `acceptWithinMs` ago never
   * (NotAnsweringError when none is left: SERVICE_UNAVAILABLE, nothing sent).
   */
  private pick(): Slot {
    const now = performance.now();
    let best: Slot | undefined;
    let bestStalled = true;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i] ?? this.connect(i);
      if (slot.sent.length > 0 && now - slot.sent[0] > this.acceptWithinMs) continue;
      const stalled = slot.sent.length > 0 && now - slot.answeredAt > STALLED_MS;
      if (!best || (bestStalled && !stalled) || (stalled === bestStalled && slot.sent.length < best.sent.length)) {
        best = slot;
        bestStalled = stalled;
      }
    }
    if (!best) throw new NotAnsweringError('The database has left a statement unanswered too long on every connection');
    return best;
  }

  private connect(i: number): Slot {
    const client = this.open();
    const slot: Slot = {
      client,
      sent: [],
      answeredAt: 0,
      gathering: false,
      drop: () => {
        if (this.slots[i] !== slot) return;
        this.slots[i] = undefined;
        client.end().catch(() => undefined);
      },
    };
    client.on('end', slot.drop);
    client.on('error', slot.drop);
    // Statements queued meanwhile are sent once it is up, or failed by node-postgres if it fails.
    client.connect().catch(slot.drop);
    this.slots[i] = slot;
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    const open = this.slots.filter((slot): slot is Slot => slot !== undefined);
    this.slots.fill(undefined);
    await Promise.all(open.map((slot) => slot.client.end().catch(() => undefined)));
  }
}
