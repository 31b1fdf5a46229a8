import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { parse } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { AppError, ErrorCode, maskError } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { checkCost } from '../graphql/cost';
import { subscribeShared } from '../graphql/shared-subscribe';
import type { HttpDeps } from './server';
import { SocketSessions, type SocketExtra } from './socket-sessions';

/** The largest message a client may send, over HTTP and WebSocket alike. */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Subscriptions one WebSocket may hold at once. */
const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;

/**
 * graphql-ws on `/graphql` of the HTTP server: authenticates in `connection_init` through
 * `SocketSessions` (4403 without a valid token and session, when the token expires unrenewed, and
 * when the session is revoked), bounds messages and subscriptions per socket and the
 * cost of each operation, executes subscription events once per operation (`subscribeShared`),
 * and masks errors as over HTTP. `dispose()` closes every socket with 1001.
 */
export function attachWebSockets(httpServer: http.Server, deps: HttpDeps) {
  const { log } = deps;
  const wsServer = new WebSocketServer({ server: httpServer, path: '/graphql', maxPayload: MAX_REQUEST_BYTES });
  type WsExtra = Omit<SocketExtra, 'socket'>;
  const socketSessions = new SocketSessions(deps.tokens, deps.sessions, log, deps.sessionSweepMs);
  const cleanup = useServer<Record<string, unknown>, WsExtra>(
    {
      schema: deps.schema,
      subscribe: subscribeShared,
      onConnect: (ctx) => socketSessions.connect(ctx.connectionParams, ctx.extra),
      onSubscribe: (ctx, _id, payload) => {
        if (Object.keys(ctx.subscriptions).length > MAX_SUBSCRIPTIONS_PER_SOCKET) { // this one is already counted
          return [new AppError(ErrorCode.BadRequest, `At most ${MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per connection`)];
        }
        try {
          checkCost(deps.schema, parse(payload.query), payload.variables ?? {}, payload.operationName);
        } catch (err) {
          if (err instanceof AppError) return [err];
        }
        return undefined; // graphql-ws parses and validates as usual
      },
      context: (ctx) => deps.context(ctx.extra.viewer ?? null, randomUUID(), ctx.extra.auth),
      onNext: (_ctx, _id, _payload, args, result) =>
        result.errors
          ? { ...result, errors: result.errors.map((e) => maskError(e, (args.contextValue as GraphQLContext).requestId, log)) }
          : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => maskError(e, randomUUID(), log)),
    },
    wsServer,
    12_000,
  );

  return {
    size: () => wsServer.clients.size,
    dispose: () => {
      socketSessions.dispose();
      return cleanup.dispose();
    },
  };
}
