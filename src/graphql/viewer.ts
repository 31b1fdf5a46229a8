import type { ApolloServerPlugin } from '@apollo/server';
import { MapperKind, mapSchema } from '@graphql-tools/utils';
import type { GraphQLFieldResolver, GraphQLSchema } from 'graphql';
import type { GraphQLContext } from './context';

/**
 * Settles an HTTP request's viewer. The session of one found standing lately on this instance
 * (`SessionService.viewerOf`) is checked while Apollo parses and validates (and a mutation's
 * budgets are spent, `budgets.ts`); until the check answers, `ctx.viewer` is the one its token
 * claims, and no resolver runs: a query's wait here before it executes
 * (`confirmedViewerPlugin`), a mutation's root fields each before they run (`withConfirmedViewer`).
 * A session that ended leaves the request signed out, as if it carried no token. Rejects when the
 * database cannot answer (SERVICE_UNAVAILABLE). Over WebSocket the socket's session was checked
 * when it connected: nothing waits.
 */
export async function confirmViewer(ctx: GraphQLContext): Promise<void> {
  if (!ctx.pendingViewer) return;
  try {
    ctx.viewer = await ctx.pendingViewer;
    ctx.pendingViewer = undefined; // settled: the operation's later fields need not wait
  } catch (err) {
    ctx.viewer = null; // unconfirmed: nothing may run as the claimed user
    throw checkFailed(err);
  }
}

/**
 * A session check that failed (the database unreachable) as the answer to the whole request:
 * SERVICE_UNAVAILABLE with HTTP 503, which load balancers and retrying clients take for "try
 * again" (Apollo reads `extensions.http`, also when it wraps the error), whether the request
 * waited for its check before Apollo ran (`http/server.ts`) or while it ran (here).
 */
export function checkFailed(err: unknown): unknown {
  if (err instanceof Error) Object.assign(err, { extensions: { ...(err as { extensions?: object }).extensions, http: { status: 503 } } });
  return err;
}

/** Queries wait for their viewer before they execute (mutations: `withConfirmedViewer`). */
export function confirmedViewerPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ operation, contextValue }) {
          if (contextValue.pendingViewer && operation?.operation !== 'mutation') await confirmViewer(contextValue);
        },
      };
    },
  };
}

/** The schema with each mutation's root field waiting for its viewer before it runs. */
export function withConfirmedViewer(schema: GraphQLSchema): GraphQLSchema {
  return mapSchema(schema, {
    [MapperKind.MUTATION_ROOT_FIELD]: (field) => {
      const resolve = field.resolve;
      if (!resolve) return field;
      // Without a check under way (WebSocket, or settled already) it runs at once.
      const confirmed: GraphQLFieldResolver<unknown, GraphQLContext> = (source, args, ctx, info) =>
        ctx.pendingViewer ? confirmViewer(ctx).then(() => resolve(source, args, ctx, info)) : resolve(source, args, ctx, info);
      return { ...field, resolve: confirmed };
    },
  });
}
