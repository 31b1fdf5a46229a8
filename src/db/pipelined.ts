import { Client, type ClientConfig } from 'pg';
import type { Logger } from '../logger';
import { isConnectionError } from './errors';
import type { PreparedStatement } from './prepared';

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
 * A statement that may wait for a row lock (`PreparedStatement.locks`, the send) holds up the
 * statements queued behind it on its connection, so those go to connections of their own, each
 * to the one with the fewest statements in flight (one held up by a lock fills and is passed
 * over); the others (session checks) have a connection of their own that never waits for a lock.
 * A connection that fails fails its statements (the callers see a connection error, answered
 * SERVICE_UNAVAILABLE) and is replaced on the next statement.
 */
export class PipelinedStatements {
  private readonly reads: Lane;
  private readonly writes: Lane;

  constructor(config: ClientConfig, log: Logger, writeConnections = 2) {
    const open = (): Client => {
      const client = new Client({ ...config, pipeline: true });
      // After a connection is up, its failure is an event: its statements have failed already.
      client.on('error', (err) => log.warn({ err: err.message }, 'a pipelined database connection failed; the next statement opens another'));
      return client;
    };
    this.reads = new Lane(1, open);
    this.writes = new Lane(writeConnections, open);
  }

  /** Runs `statement` with `values`; resolves to its rows. */
  run<T = unknown>(statement: PreparedStatement, values: unknown[]): Promise<T> {
    return (statement.locks ? this.writes : this.reads).run(statement, values) as Promise<T>;
  }

  async close(): Promise<void> {
    await Promise.all([this.reads.close(), this.writes.close()]);
  }
}

interface Slot {
  client: Client;
  /** Statements handed to it and not yet answered. */
  inFlight: number;
  /** Takes it out of use (once it failed); the next statement opens another connection. */
  drop(): void;
}

/** Connections that share a kind of statement, each statement going to the least busy one. */
class Lane {
  private readonly slots: Array<Slot | undefined>;
  private closed = false;

  constructor(
    size: number,
    private readonly open: () => Client,
  ) {
    this.slots = new Array<Slot | undefined>(size).fill(undefined);
  }

  async run(statement: PreparedStatement, values: unknown[]): Promise<unknown> {
    if (this.closed) throw new Error('Connection terminated: the database is closed');
    const slot = this.pick();
    slot.inFlight++;
    try {
      return (await slot.client.query({ name: statement.name, text: statement.text, values })).rows;
    } catch (err) {
      // The connection is gone (or going: terminated, reset) before it says so itself.
      if (isConnectionError(err)) slot.drop();
      throw err;
    } finally {
      slot.inFlight--;
    }
  }

  /** The slot with the fewest statements in flight, opening a connection where one is missing or has ended. */
  private pick(): Slot {
    let best: Slot | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i] ?? this.connect(i);
      if (!best || slot.inFlight < best.inFlight) best = slot;
    }
    return best!;
  }

  private connect(i: number): Slot {
    const client = this.open();
    const slot: Slot = {
      client,
      inFlight: 0,
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
