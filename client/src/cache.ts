import type { FieldPolicy, InMemoryCacheConfig, TypePolicies } from '@apollo/client';
import { relayStylePagination } from '@apollo/client/utilities';
import { connectionFields, possibleTypes } from './cache-policies.js';

/** Relay pagination for every connection field of the schema, keyed by its non-paging arguments. */
function connectionPolicies(): TypePolicies {
  const policies: TypePolicies = {};
  for (const [typeName, fields] of Object.entries(connectionFields)) {
    const fieldPolicies: Record<string, FieldPolicy> = {};
    for (const [field, keyArgs] of Object.entries(fields)) fieldPolicies[field] = relayStylePagination(keyArgs.length ? keyArgs : false) as FieldPolicy;
    policies[typeName] = { fields: fieldPolicies };
  }
  return policies;
}

/**
 * The `InMemoryCache` configuration for this API, derived from its schema: `possibleTypes` of
 * every union (so fragments on `RoomEvent` members match) and Relay pagination for every
 * connection (`rooms`, `messages` per room and thread, …: pages merge into one list). Entities
 * are normalised by `id`. Use as `new InMemoryCache(chatCacheConfig)`.
 */
export const chatCacheConfig: InMemoryCacheConfig = {
  possibleTypes,
  typePolicies: connectionPolicies(),
};
