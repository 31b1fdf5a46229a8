import { HeaderMap, type ApolloServerPlugin } from '@apollo/server';
import { MapperKind, mapSchema } from '@graphql-tools/utils';
import type { GraphQLFieldResolver, GraphQLSchema } from 'graphql';
import type { SessionToCheck } from '../auth/sessions';
import { ErrorCode, isUnavailable, unauthenticated } from '../errors';
import type { GraphQLContext } from './context';

/**
 * Settles an HTTP request's viewer. The session of one found standing lately on this instance
 * (`SessionService.viewerOf`) is checked while Apollo parses and validates (and a mutation's
 * budgets are spent, `budgets.ts`); until the check answers, `ctx.viewer` is the one its token
 * claims, and no resolver runs: a query's wait here before it executes
 * (`confirmedViewerPlugin`), a mutation's root fields each before they run (`withConfirmedViewer`),
 * but those whose statement checks the session itself (`checkedInStatement`).
 * A session that ended leaves the request signed out, as if it carried no token. Rejects when the
 * database cannot answer (SERVICE_UNAVAILABLE). Over WebSocket each operation checks the socket's
 * session the same way (`SessionService.checkFor`; a query waits in the socket's `execute`, a
 * subscription in `subscribeShared`), and a session found ended closes its sockets (4403) once
 * they are answered.
 */
export async function confirmViewer(ctx: GraphQLContext): Promise<void> {
  if (!ctx.pendingViewer) return;
  try {
    ctx.viewer = await ctx.pendingViewer.result();
    ctx.pendingViewer = undefined; // settled: the operation's later fields need not wait
    if (!ctx.viewer) ctx.tokenRefused = true;
  } catch (err) {
    ctx.viewer = null; // unconfirmed: nothing may run as the claimed user
    throw checkFailed(err);
  }
}

/** Mutations whose statement checks the request's session together with its own work (`checkedInStatement`). */
export const CHECKED_IN_STATEMENT = new Set(['sendMessage']);

/**
 * Runs a mutation whose statement can check the request's session itself (a send:
 * `MessageStore.insert`): when the session's check has not started, `work` gets the session, to
 * be settled from what its statement found, and no check of its own is made. A session the statement
 * found ended leaves the request signed out (the statement refused: UNAUTHENTICATED). When `work`
 * ends before its statement answered (bad input, a thread not found), the check is made then,
 * and a session that ended answers UNAUTHENTICATED: whatever `work` read before its statement, a
 * request answers as if its session had been checked first. A database that cannot serve the
 * statement answers as a check that failed (SERVICE_UNAVAILABLE, HTTP 503; nothing spent).
 */
export async function checkedInStatement<T>(ctx: GraphQLContext, work: (session?: SessionToCheck) => Promise<T>): Promise<T> {
  const check = ctx.pendingViewer;
  if (!check || check.started) {
    await confirmViewer(ctx);
    return work();
  }
  let answered = false;
  const session: SessionToCheck = {
    viewer: check.claimed,
    settle(live) {
      answered = true;
      check.settle(live);
      if (!live) {
        ctx.viewer = null;
        ctx.tokenRefused = true;
      }
      ctx.pendingViewer = undefined;
    },
  };
  let result: T;
  try {
    result = await work(session);
  } catch (err) {
    if (!answered && isUnavailable(err)) {
      // The statement that was to check the session could not be served: a check that failed.
      ctx.viewer = null;
      ctx.pendingViewer = undefined;
      throw checkFailed(err);
    }
    if (!answered) await requireSignedIn(ctx);
    throw err;
  }
  if (!answered) await requireSignedIn(ctx); // nothing may go out as the claimed user unchecked
  return result;
}

/** Makes the request's session check: UNAUTHENTICATED when its session ended. */
async function requireSignedIn(ctx: GraphQLContext): Promise<void> {
  await confirmViewer(ctx);
  if (!ctx.viewer) throw unauthenticated();
}

/**
 * A session check that failed (the database unreachable) as the answer to the whole request:
 * SERVICE_UNAVAILABLE with HTTP 503, which load balancers and retrying clients take for "try
 * again" (Apollo reads `extensions.http`, also when it wraps the error), whether the request
 * waited for its check before Apollo ran (`http/server.ts`) or while it ran (here).
 */
export function checkFailed(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const http = { status: 503, headers: new HeaderMap([['retry-after', RETRY_AFTER_S]]) };
  // A copy for this request: the failure of a check may be every request's of its batch, and a
  // request's id goes with its own error (`http/server.ts`).
  const own = Object.assign(Object.create(Object.getPrototypeOf(err) as object) as Error, err, { message: err.message, stack: err.stack });
  return Object.assign(own, { extensions: { ...(err as { extensions?: object }).extensions, http } });
}

/** The `Retry-After` of a 503 (seconds): soon, as the database's outages this answers are often short. */
const RETRY_AFTER_S = '1';

/**
 * What an HTTP answer's status and headers say besides its body.
 * - An answer with nothing in it because the database could not serve it — the session check, or
 *   the operation's own statements (a send's also checks its session) — goes out with HTTP 503, as
 *   a failed session check's does (`checkFailed`): one status for "try again" whichever statement failed.
 * - An answer to a request whose bearer token was refused (malformed, expired, or its session
 *   ended: `GraphQLContext.tokenRefused`) carries `WWW-Authenticate: Bearer error="invalid_token"`
 *   (RFC 6750) with whatever status it has: an operation that needs no session (`me`, `room`) ran
 *   signed out and answered null, and the client learns all the same that its session is over.
 */
export function answerStatusPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ response, contextValue }) {
          // Refused before it executed (a validation error), a request did not wait for the check of
          // its session already under way: waited for here, so that its answer says what it found.
          if (contextValue.pendingViewer?.started) await confirmViewer(contextValue).catch(() => undefined);
          if (contextValue.tokenRefused) response.http.headers.set('www-authenticate', 'Bearer error="invalid_token"');
          if (response.body.kind !== 'single') return;
          const { data, errors } = response.body.singleResult;
          const nothing = data == null || Object.values(data).every((value) => value === null);
          if (nothing && errors?.some((e) => e.extensions?.code === ErrorCode.ServiceUnavailable)) {
            response.http.status = 503;
            response.http.headers.set('retry-after', RETRY_AFTER_S);
          }
        },
      };
    },
  };
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
    [MapperKind.MUTATION_ROOT_FIELD]: (field, name) => {
      const resolve = field.resolve;
      if (!resolve || CHECKED_IN_STATEMENT.has(name)) return field;
      // Without a check under way (a subscription's context, or settled already) it runs at once.
      const confirmed: GraphQLFieldResolver<unknown, GraphQLContext> = (source, args, ctx, info) =>
        ctx.pendingViewer ? confirmViewer(ctx).then(() => resolve(source, args, ctx, info)) : resolve(source, args, ctx, info);
      return { ...field, resolve: confirmed };
    },
  });
}
