import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeExecutableSchema } from '@graphql-tools/schema';
import type { GraphQLSchema } from 'graphql';
import { resolvers } from './resolvers';

/** Where the SDL lives, from `src/graphql` and from `dist/graphql` alike. */
export const SCHEMA_DIR = path.resolve(__dirname, '../../schema');

/** The SDL of `schema/*.graphql`, one file per domain. */
export function loadTypeDefs(dir = SCHEMA_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.graphql'))
    .sort()
    .map((f) => readFileSync(path.join(dir, f), 'utf8'));
}

/** The executable schema served on both transports. */
export function createSchema(): GraphQLSchema {
  return makeExecutableSchema({ typeDefs: loadTypeDefs(), resolvers: resolvers as never[] });
}
