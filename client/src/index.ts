/**
 * The chat API's client kit for Apollo Client 4: `createChatLink` (resumable subscriptions,
 * in-band session refresh, UNAUTHENTICATED at once), `chatCacheConfig` (possibleTypes and Relay
 * pagination), and typed documents for every operation (GraphQL Code Generator, client preset).
 */
export { createChatLink, type ChatLink, type ChatLinkOptions } from './link';
export { chatCacheConfig } from './cache';
export type { Session, SessionLock, SessionSource } from './session';
export type { RetryOptions } from './backoff';
export { possibleTypes } from './cache-policies';
export * from './generated/graphql';
export { graphql } from './generated/gql';
