import type { DataSource, EntityManager } from 'typeorm';

/**
 * A statement that PostgreSQL parses and plans once per connection rather than on every run
 * (a node-postgres named statement): after the first run on a connection only its name and its
 * values cross the wire, and the server skips parsing and, once it settles on a generic plan,
 * planning. For the statements of the hot paths (a send, a request's session check).
 */
export interface PreparedStatement {
  readonly name: string;
  readonly text: string;
}

const names = new Set<string>();

/** Declares a prepared statement; `name` must be unique in the process (node-postgres keys its per-connection cache by it). */
export function prepare(name: string, text: string): PreparedStatement {
  if (names.has(name)) throw new Error(`prepared statement ${name} is declared twice`);
  names.add(name);
  return Object.freeze({ name, text });
}

/**
 * Runs a prepared statement through TypeORM, in the manager's transaction when it has one, and
 * resolves to what `manager.query` resolves to for the same text. TypeORM's PostgreSQL query
 * runner hands its query to node-postgres's `client.query(query, values)` unchanged, and
 * node-postgres takes a `{ name, text }` query config there: that is how the name reaches it.
 * Errors are TypeORM's `QueryFailedError`, as for any query.
 */
export function runPrepared<T = unknown>(on: DataSource | EntityManager, statement: PreparedStatement, values: unknown[]): Promise<T> {
  return on.query(statement as unknown as string, values);
}
