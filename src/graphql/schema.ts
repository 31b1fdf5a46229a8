import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeExecutableSchema } from '@graphql-tools/schema';
import type { GraphQLSchema } from 'graphql';
import { withBudgets, type Budgets } from './budgets';
import { withCanonicalIds } from './canonical-ids';
import { withConfirmedViewer } from './viewer';
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

/**
 * The executable schema served on both transports. At its boundary, ids are canonicalised
 * (`canonical-ids.ts`), given budgets, budgeted mutations spend them (`budgets.ts`), and over HTTP
 * no resolver runs before the request's session is confirmed (`viewer.ts`).
 */
export function createSchema(budgets?: Budgets): GraphQLSchema {
  const schema = makeExecutableSchema({ typeDefs: loadTypeDefs(), resolvers: resolvers as never[] });
  // Canonical ids outermost, so budgets per room see one key per room; a mutation runs once its viewer is confirmed (`viewer.ts`).
  const confirmed = withConfirmedViewer(schema);
  return withCanonicalIds(budgets ? withBudgets(confirmed, budgets) : confirmed);
}
