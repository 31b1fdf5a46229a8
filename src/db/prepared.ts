import { DataSource, type EntityManager } from 'typeorm';
import type { PipelinedStatements } from './pipelined';

/**
 * A statement that PostgreSQL parses and plans once per connection rather than on every run
 * (a node-postgres named statement): after the first run on a connection only its name and its
 * values cross the wire, and the server skips parsing and, once it settles on a generic plan,
 * planning. For the statements of the hot paths (a send, a request's session check).
 */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
  /** It may wait for a row lock (see `PipelinedStatements`). */
  readonly locks: boolean;
}

const names = new Set<string>();

/** Declares a prepared statement; `name` must be unique in the process (node-postgres keys its per-connection cache by it). */
export function prepare(name: string, text: string, { locks = false }: { locks?: boolean } = {}): PreparedStatement {
  if (names.has(name)) throw new Error(`prepared statement ${name} is declared twice`);
  names.add(name);
  return Object.freeze({ name, text, locks });
}

/** The pipelined connections of each PostgreSQL data source that has them (`openDatabase`). */
const pipelines = new WeakMap<DataSource, PipelinedStatements>();

/** Runs the prepared statements of `dataSource` that are not part of a transaction on `pipelined`. */
export function usePipelined(dataSource: DataSource, pipelined: PipelinedStatements): void {
  pipelines.set(dataSource, pipelined);
}

/**
 * Runs a prepared statement and resolves to its rows. In a transaction (a manager with a query
 * runner), or where the data source has no pipelined connections (the embedded database), it
 * goes through TypeORM: its PostgreSQL query runner hands the query to node-postgres's
 * `client.query(query, values)` unchanged, and node-postgres takes a `{ name, text }` query
 * config there. Otherwise it runs on the data source's pipelined connections (and through TypeORM
 * when it would wait there for a row lock). Errors carry PostgreSQL's `code` and `constraint`
 * either way (TypeORM's on its `driverError` too).
 */
export function runPrepared<T = unknown>(on: DataSource | EntityManager, statement: PreparedStatement, values: unknown[]): Promise<T> {
  const manager = on instanceof DataSource ? on.manager : on;
  const pipelined = manager.queryRunner ? undefined : pipelines.get(manager.dataSource);
  const throughTypeorm = () => on.query(statement as unknown as string, values) as Promise<T>;
  return pipelined ? pipelined.run<T>(statement, values, throughTypeorm) : throughTypeorm();
}
