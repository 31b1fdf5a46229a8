import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { parse, type GraphQLError, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import type { TokenService, Viewer } from '../auth/tokens';
import { AppError, ErrorCode, maskError } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { checkCost } from '../graphql/cost';
import { subscribeShared } from '../graphql/shared-subscribe';
import type { Logger } from '../logger';
import { graphiql } from './graphiql';
import { healthz, readyz, type ReadinessProbes } from './health';
import type { Metrics } from '../metrics';

export interface HttpDeps {
  schema: GraphQLSchema;
  tokens: TokenService;
  log: Logger;
  introspection: boolean;
  corsOrigins: '*' | string[];
  /** How long in-flight HTTP requests may take to finish on stop before their sockets are closed. */
  drainMs: number;
  probes: ReadinessProbes;
  /** Builds the context of one operation. */
  context(viewer: Viewer | null, requestId: string): GraphQLContext;
  metrics: Metrics;
}

/** WebSocket close code for a missing or invalid token (graphql-ws's Forbidden). */
export const CLOSE_FORBIDDEN = 4403;
/** The largest message a client may send, over HTTP and WebSocket alike. */
const MAX_REQUEST_BYTES = 1024 * 1024;
/** Subscriptions one WebSocket may hold at once. */
const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;

/**
 * One HTTP server on one port: Apollo Server for `POST /graphql`, graphql-ws on the same path,
 * GraphiQL for browsers, `/healthz`, `/readyz`, `/metrics`. `stop()` drains it: WebSockets are
 * closed with 1001 (clients reconnect elsewhere) and in-flight HTTP requests finish.
 */
export async function createHttpServer(deps: HttpDeps) {
  const { log } = deps;
  const app = express();
  app.disable('x-powered-by');
  const httpServer = http.createServer(app);
  // The request id of each failed operation's errors, noted before Apollo formats them. Keyed by
  // the thrown error, which Apollo keeps as `originalError` while it rewraps the GraphQLError.
  const requestIds = new WeakMap<object, string>();
  const requestIdOf = (error: unknown) => requestIds.get((error as GraphQLError).originalError ?? (error as object));

  const wsServer = new WebSocketServer({ server: httpServer, path: '/graphql', maxPayload: MAX_REQUEST_BYTES });
  const { metrics } = deps;
  metrics.gauge('chat_websocket_connections', 'Open graphql-ws connections', () => wsServer.clients.size);
  type WsExtra = { viewer?: Viewer };
  const wsCleanup = useServer<Record<string, unknown>, WsExtra>(
    {
      schema: deps.schema,
      subscribe: subscribeShared,
      onConnect: (ctx) => {
        const params = ctx.connectionParams ?? {};
        const viewer = deps.tokens.fromAuthorization(params.authorization ?? params.Authorization);
        if (!viewer) return false; // graphql-ws closes with 4403 Forbidden
        ctx.extra.viewer = viewer;
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

  const apollo = new ApolloServer<GraphQLContext>({
    schema: deps.schema,
    introspection: deps.introspection,
    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false, // main.ts owns SIGTERM: Apollo's handler would kill the process mid-shutdown
    formatError: (_formatted, error) => maskError(error, requestIdOf(error) ?? randomUUID(), log),
    plugins: [
      {
        async requestDidStart() {
          return {
            async didResolveOperation({ operation, document, request }) {
              checkCost(deps.schema, document, request.variables, request.operationName);
              if (operation?.operation === 'subscription') {
                throw new AppError(ErrorCode.BadRequest, 'Subscriptions run over WebSocket: connect to /graphql with the graphql-transport-ws protocol', {
                  http: { status: 400 },
                });
              }
            },
            async didEncounterErrors({ errors, contextValue }) {
              for (const e of errors) requestIds.set(e.originalError ?? e, contextValue.requestId);
            },
          };
        },
      },
      ApolloServerPluginDrainHttpServer({ httpServer, stopGracePeriodMillis: deps.drainMs }),
      ApolloServerPluginLandingPageDisabled(),
      metrics.plugin(),
      {
        async serverWillStart() {
          return {
            async drainServer() {
              await wsCleanup.dispose(); // closes every socket with 1001 Going Away
            },
          };
        },
      },
    ],
  });
  await apollo.start();

  app.use(cors({ origin: deps.corsOrigins, maxAge: 600 }));
  app.get('/', (_req, res) => res.redirect(302, '/graphql'));
  app.get('/healthz', healthz);
  app.get('/readyz', readyz(deps.probes));
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.use('/graphql', graphiql(deps.introspection));
  app.use(
    '/graphql',
    (_req, res, next) => {
      res.setHeader('x-request-id', randomUUID());
      next();
    },
    express.json({ limit: MAX_REQUEST_BYTES }),
    expressMiddleware(apollo, {
      context: async ({ req, res }) =>
        deps.context(deps.tokens.fromAuthorization(req.headers.authorization) ?? null, String(res.getHeader('x-request-id'))),
    }),
  );
  app.use((_req, res) => {
    res.status(404).json({ errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }] });
  });
  // Malformed JSON and anything else that escapes a handler: a JSON answer, never a stack trace.
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) log.error({ err }, 'unhandled HTTP error');
    const message = status === 500 ? 'Internal server error' : err.type === 'entity.parse.failed' ? 'Body is not valid JSON' : err.message;
    res.status(status).json({ errors: [{ message, extensions: { code: status === 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST' } }] });
  });

  return {
    httpServer,
    listen(port: number, host: string): Promise<number> {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          resolve((httpServer.address() as { port: number }).port);
        });
      });
    },
    /** Stops accepting, closes WebSockets with 1001, waits for in-flight HTTP requests. */
    stop: () => apollo.stop(),
  };
}
