/**
 * The chat API's client kit for Apollo Client 4: `createChatLink` (resumable subscriptions,
 * in-band session refresh, UNAUTHENTICATED at once), `chatCacheConfig` (possibleTypes and Relay
 * pagination), and typed documents for every operation (GraphQL Code Generator, client preset).
 */
export { createChatLink, type ChatLink, type ChatLinkOptions } from './link.js';
export { chatCacheConfig } from './cache.js';
export type { Session, SessionLock, SessionSource } from './session.js';
export type { RetryOptions } from './backoff.js';
export { possibleTypes } from './cache-policies.js';
export * from './generated/graphql.js';
export { graphql } from './generated/gql.js';
