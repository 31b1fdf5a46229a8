import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';
import type { Resolvers } from '../generated';

function toDate(value: unknown): Date {
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : new Date(NaN);
  if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime must be an ISO 8601 date-time string');
  return date;
}

/** `schema/common.graphql`: the DateTime scalar. */
export const commonResolvers: Resolvers = {
  DateTime: new GraphQLScalarType({
    name: 'DateTime',
    description: 'An instant in time, as an ISO 8601 string in UTC (for example `2026-11-22T09:28:12.000Z`).',
    serialize: (value) => toDate(value).toISOString(),
    parseValue: (value) => toDate(value),
    parseLiteral: (ast) => (ast.kind === Kind.STRING ? toDate(ast.value) : toDate(undefined)),
  }),
};
