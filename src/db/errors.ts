/** The error's code: PostgreSQL's SQLSTATE or Node's, also under TypeORM's wrapping (`driverError`). */
function codeOf(err: unknown): string {
  const e = err as { code?: string; driverError?: { code?: string } };
  return e?.code ?? e?.driverError?.code ?? '';
}

/** True for PostgreSQL's unique_violation (23505), optionally on one named constraint. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { constraint?: string; driverError?: { constraint?: string } };
  return codeOf(err) === '23505' && (!constraint || (e?.constraint ?? e?.driverError?.constraint) === constraint);
}

/** True for PostgreSQL's lock_not_available (55P03): a `lock_timeout` ran out, and the statement changed nothing. */
export function isLockNotAvailable(err: unknown): boolean {
  return codeOf(err) === '55P03';
}

/** True for PostgreSQL's query_canceled (57014): a statement that ran past `statement_timeout`, or was cancelled otherwise; it changed nothing, and its connection is still good. */
export function isStatementCancelled(err: unknown): boolean {
  return codeOf(err) === '57014';
}

/**
 * PostgreSQL's answers that say it cannot serve for now, whatever the statement: out of resources
 * (class 53: too many connections, disk full, out of memory), read-only (25006: a standby, or a
 * primary being failed over), shutting down or starting (57P01–57P03), and a transaction it gave
 * up to let others through (40001 serialization failure, 40P01 deadlock). None changed anything.
 */
const NOT_NOW = /^(53|08)|^(25006|57P0[1-3]|40001|40P01)$/;

/**
 * True when the error means the database could not serve the statement for now: refused, reset,
 * timed out, not answering, a statement it cancelled for running too long (57014:
 * `DATABASE_TIMEOUT_MS`), or one of `NOT_NOW`. Answered SERVICE_UNAVAILABLE; trying again later may succeed.
 */
export function isConnectionError(err: unknown): boolean {
  return isConnectionLost(err) || isStatementCancelled(err) || NOT_NOW.test(codeOf(err));
}

/** True when a statement was sent and its answer never came within the client's `query_timeout` (a database that stopped answering). */
export function isUnanswered(err: unknown): boolean {
  return /Query read timeout/.test((err as { message?: string })?.message ?? '');
}

/**
 * A statement not handed to any connection: every one of its kind has left a statement unanswered
 * too long (`pipelined.ts`). Nothing was sent, so nothing can commit later.
 */
export class NotAnsweringError extends Error {
  override readonly name = 'NotAnsweringError';
}

/**
 * True when the statement's connection is gone or going: refused, reset, terminated, or silent past
 * its `query_timeout`. (After a cancelled statement, `isStatementCancelled`, the connection is still good.)
 */
export function isConnectionLost(err: unknown): boolean {
  const e = err as { name?: string; message?: string };
  return (
    ['QueryRunnerAlreadyReleasedError', 'QueryRunnerProviderAlreadyReleasedError', 'NotAnsweringError'].includes(e?.name ?? '') || // TypeORM's, after the connection dropped mid-query or mid-transaction; ours, a statement no connection would take
    // …, a host name that does not resolve (now), a password or login PostgreSQL refuses (rotated, NOLOGIN: an operator's to mend)
    ['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', '57P01', '57P03', '08006', '08001', '08003', '28P01', '28000'].includes(codeOf(err)) ||
    /timeout exceeded when trying to connect|Connection terminated|connect ECONNREFUSED/i.test(e?.message ?? '') ||
    isUnanswered(err) // a pipelined statement unanswered (`pipelined.ts`)
  );
}
