import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { isConnectionError } from './db/errors';
import type { Logger } from './logger';

/** The error codes of API.md: every error a client can cause carries one in `extensions.code`. */
export enum ErrorCode {
  Unauthenticated = 'UNAUTHENTICATED',
  Forbidden = 'FORBIDDEN',
  NotFound = 'NOT_FOUND',
  BadUserInput = 'BAD_USER_INPUT',
  Conflict = 'CONFLICT',
  RateLimited = 'RATE_LIMITED',
  AssistantUnavailable = 'ASSISTANT_UNAVAILABLE',
  ServiceUnavailable = 'SERVICE_UNAVAILABLE',
  /** A request the server cannot take as sent (e.g. a subscription over HTTP). */
  BadRequest = 'BAD_REQUEST',
  InternalServerError = 'INTERNAL_SERVER_ERROR',
}

/** An error meant for the client: its message and extensions reach the response as they are. */
export class AppError extends GraphQLError {
  constructor(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}) {
    super(message, { extensions: { ...extensions, code } });
    this.name = 'AppError';
  }

  get code(): ErrorCode {
    return this.extensions.code as ErrorCode;
  }
}

// Small factories, one per code, so call sites read as what happened.
export const unauthenticated = (message = 'Sign in first: send a valid bearer token') =>
  new AppError(ErrorCode.Unauthenticated, message);
/** The one answer for a room that is missing or not the viewer's (docs/guarantees.md, guarantee 6). */
export const forbidden = (message = 'Not allowed') => new AppError(ErrorCode.Forbidden, message);
export const notFound = (message: string) => new AppError(ErrorCode.NotFound, message);
export const badUserInput = (message: string, field?: string) =>
  new AppError(ErrorCode.BadUserInput, message, field ? { field } : {});
export const conflict = (message: string, field?: string) =>
  new AppError(ErrorCode.Conflict, message, field ? { field } : {});
/** What an operation is answered when this instance stops before it could be (another instance takes it). */
export const shuttingDown = () => new AppError(ErrorCode.ServiceUnavailable, 'This server is shutting down; reconnect and send it again');
/**
 * What the transports answer an operation a stop cut short while it ran (waiting for a frozen
 * database, say): a change it was making may yet be committed, so a send is sent again with its clientId.
 */
export const cutShortAnswer = new AppError(
  ErrorCode.ServiceUnavailable,
  'This server shut down while this was under way, so it may yet be done: reconnect and send it again (a send with the same clientId answers its message)',
).toJSON();
export const rateLimited = (retryAfterMs: number, message = 'Too many requests; retry later') =>
  new AppError(ErrorCode.RateLimited, message, { retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) });

/** Codes that GraphQL itself or Apollo Server raise for a malformed request; they are safe to show. */
const REQUEST_ERROR_CODES = new Set([
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
]);

/** True when `error` is one of this API's errors with `code`. */
export const hasCode = (error: unknown, code: ErrorCode): boolean => error instanceof AppError && error.code === code;

/**
 * True when `error` (a resolver's, possibly wrapped by graphql-js) means the database could not
 * serve it for now: trying again later may succeed.
 */
export function isUnavailable(error: unknown): boolean {
  const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
  return hasCode(original, ErrorCode.ServiceUnavailable) || isConnectionError(original);
}

/**
 * The one place that decides what a client sees of an error, on HTTP and WebSocket alike.
 * `AppError`s and GraphQL's own request errors pass (without stack traces); an unreachable
 * database is `SERVICE_UNAVAILABLE` (retryable); anything else is logged with the request id and
 * answered as `INTERNAL_SERVER_ERROR` carrying only that id.
 */
export function maskError(error: unknown, requestId: string, log: Logger): GraphQLFormattedError {
  const graphqlError = error instanceof GraphQLError ? error : undefined;
  // graphql-js wraps a thrown non-Error (e.g. an error from another realm) as NonErrorThrown.
  const wrapped = graphqlError?.originalError as (Error & { thrownValue?: unknown }) | undefined;
  const original = wrapped?.name === 'NonErrorThrown' ? wrapped.thrownValue : (wrapped ?? error);
  if (original instanceof AppError) {
    const { http: _transport, ...extensions } = original.extensions; // a status for Apollo, not for clients
    return { message: original.message, locations: graphqlError?.locations, path: graphqlError?.path, extensions };
  }
  const inner = graphqlError?.originalError;
  if (graphqlError && (!inner || inner instanceof GraphQLError)) {
    // Without a path the error is about the request (parse, validation, variables), not execution.
    const code = graphqlError.extensions.code;
    if (REQUEST_ERROR_CODES.has(String(code)) || (code === undefined && !graphqlError.path)) {
      const { locations } = graphqlError;
      // Apollo's own wording tells how to configure Apollo; a client needs to know only this.
      const message = /introspection (is not allowed|has been disabled)/i.test(graphqlError.message) ? 'Introspection is disabled on this server' : graphqlError.message;
      const { http: _transport, ...extensions } = graphqlError.extensions; // Apollo's status and headers stay inside
      return { message, locations, extensions: { ...extensions, code: code ?? 'GRAPHQL_VALIDATION_FAILED' } };
    }
  }
  if (isConnectionError(original)) {
    log.warn({ err: (original as Error).message, requestId }, 'database unreachable');
    return {
      message: `The database is unreachable or overloaded; retry shortly (request ${requestId})`,
      path: graphqlError?.path,
      extensions: { code: ErrorCode.ServiceUnavailable, requestId },
    };
  }
  log.error({ err: original, requestId, path: graphqlError?.path }, 'unexpected error');
  return {
    message: `Internal server error (request ${requestId})`,
    path: graphqlError?.path,
    extensions: { code: ErrorCode.InternalServerError, requestId },
  };
}
