import { CombinedGraphQLErrors } from '@apollo/client/errors';
import type { GraphQLFormattedError } from 'graphql';

/** Thrown (and turned into an `UNAUTHENTICATED` GraphQL error) once the session is refused or revoked. */
export class SessionEndedError extends Error {
  override readonly name = 'SessionEndedError';
}

/** The GraphQL error an application sees when its session is refused or revoked. */
export function unauthenticated(message: string): CombinedGraphQLErrors {
  const error: GraphQLFormattedError = { message, extensions: { code: 'UNAUTHENTICATED' } };
  return new CombinedGraphQLErrors({ data: null, errors: [error] });
}

/** A WebSocket close event, as graphql-ws reports it. */
export interface CloseEventLike {
  code: number;
  reason: string;
}

export const isCloseEvent = (value: unknown): value is CloseEventLike =>
  typeof value === 'object' && value !== null && 'code' in value && 'reason' in value && typeof (value as CloseEventLike).code === 'number';

/** Close codes that say the session was refused: never retried (graphql-ws's Forbidden and Unauthorized). */
export const AUTH_CLOSE_CODES = new Set([4401, 4403]);

/** Close codes that say the request itself is wrong: retrying cannot help (bad request, subprotocol). */
export const FATAL_CLOSE_CODES = new Set([4400, 4406]);

/** True when a GraphQL error list says UNAUTHENTICATED. */
export const hasUnauthenticated = (errors: readonly GraphQLFormattedError[] | undefined) =>
  !!errors?.some((e) => e.extensions?.code === 'UNAUTHENTICATED');
