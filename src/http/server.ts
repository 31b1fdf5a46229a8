import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { GraphQLError } from 'graphql';
import { maskError } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { limitsPlugin } from '../graphql/pipeline';
import { graphiql } from './graphiql';
import { healthz, readyz } from './health';
import { MAX_REQUEST_BYTES, type TransportDeps } from './transport';
import { attachWebSockets } from './websocket';

/**
 * One HTTP server on one port: Apollo Server for `POST /graphql`, graphql-ws on the same path,
 * GraphiQL for browsers, `/healthz`, `/readyz`, `/metrics`. `stop()` drains it: WebSockets are
 * closed with 1001 (clients reconnect elsewhere) and in-flight HTTP requests finish.
 */
export async function createHttpServer(deps: TransportDeps) {
  const { log } = deps;
  const app = express();
  app.disable('x-powered-by');
  const httpServer = http.createServer(app);
  // The request id of each failed operation's errors, noted before Apollo formats them. Keyed by
  // the thrown error, which Apollo keeps as `originalError` while it rewraps the GraphQLError.
  const requestIds = new WeakMap<object, string>();
  const requestIdOf = (error: unknown) => requestIds.get((error as GraphQLError).originalError ?? (error as object));

  const { metrics } = deps;
  const webSockets = attachWebSockets(httpServer, deps);
  metrics.gauge('chat_websocket_connections', 'Open graphql-ws connections', () => webSockets.size());
  metrics.gauge('chat_pubsub_up', 'Whether pub/sub (Redis) answers: 1 up, 0 down', async () => ((await deps.probes.pubsub()) ? 1 : 0));
  metrics.gauge('chat_database_up', 'Whether the database answers: 1 up, 0 down', async () => ((await deps.probes.database()) ? 1 : 0));

  const apollo = new ApolloServer<GraphQLContext>({
    schema: deps.schema,
    // Introspection is refused by the shared validation rules (`deps.rules`), as over WebSocket.
    introspection: true,
    parseOptions: deps.rules.parseOptions,
    dangerouslyDisableValidation: true, // limitsPlugin validates, with the same function as WebSocket

    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false, // main.ts owns SIGTERM: Apollo's handler would kill the process mid-shutdown
    formatError: (_formatted, error) => maskError(error, requestIdOf(error) ?? randomUUID(), log),
    plugins: [
      limitsPlugin(deps.schema, deps.rules),
      {
        async requestDidStart() {
          return {
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
              await webSockets.dispose(); // closes every socket with 1001 Going Away
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
        deps.context(await deps.sessions.viewerOf(req.headers.authorization), String(res.getHeader('x-request-id')), deps.clientAddress(req)),
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
