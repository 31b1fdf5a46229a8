import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { parse } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { Viewer } from '../auth/tokens';
import { AppError, ErrorCode, maskError } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { checkCost } from '../graphql/cost';
import { subscribeShared } from '../graphql/shared-subscribe';
import type { HttpDeps } from './server';

/** WebSocket close code for a missing or invalid token (graphql-ws's Forbidden). */
export const CLOSE_FORBIDDEN = 4403;
/** The largest message a client may send, over HTTP and WebSocket alike. */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** Subscriptions one WebSocket may hold at once. */
const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;

/**
 * graphql-ws on `/graphql` of the HTTP server: authenticates in `connection_init` (4403 without a
 * valid token, and when the token expires), bounds messages and subscriptions per socket and the
 * cost of each operation, executes subscription events once per operation (`subscribeShared`),
 * and masks errors as over HTTP. `dispose()` closes every socket with 1001.
 */
export function attachWebSockets(httpServer: http.Server, deps: HttpDeps) {
  const { log } = deps;
  const wsServer = new WebSocketServer({ server: httpServer, path: '/graphql', maxPayload: MAX_REQUEST_BYTES });
  type WsExtra = { viewer?: Viewer };
  const cleanup = useServer<Record<string, unknown>, WsExtra>(
    {
      schema: deps.schema,
      subscribe: subscribeShared,
      onConnect: (ctx) => {
        const params = ctx.connectionParams ?? {};
        // `{ authorization }` as API.md says (Apollo Client); also `{ headers: { Authorization } }` (graphql-tools executors).
        const headers = (typeof params.headers === 'object' && params.headers ? params.headers : {}) as Record<string, unknown>;
        const viewer = deps.tokens.fromAuthorization(params.authorization ?? params.Authorization ?? headers.authorization ?? headers.Authorization);
        if (!viewer) return false; // graphql-ws closes with 4403 Forbidden
        ctx.extra.viewer = viewer;
        ctx.extra.socket.once('close', deps.presence.connect(viewer.id));
        if (viewer.expiresAt) {
          // A socket lives no longer than its token: the client reconnects with a fresh one.
          const timer = setTimeout(() => ctx.extra.socket.close(CLOSE_FORBIDDEN, 'Token expired'), Math.min(viewer.expiresAt - Date.now(), 2 ** 31 - 1));
          timer.unref();
          ctx.extra.socket.once('close', () => clearTimeout(timer));
        }
        return true;
      },
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
      context: (ctx) => deps.context(ctx.extra.viewer ?? null, randomUUID()),
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
    dispose: () => cleanup.dispose(),
  };
}
