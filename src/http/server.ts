import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { ApolloServer, HeaderMap } from '@apollo/server';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { GraphQLError } from 'graphql';
import { ErrorCode, maskError, cutShortAnswer } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { limitsPlugin } from '../graphql/pipeline';
import { answerStatusPlugin, CHECKED_IN_STATEMENT, checkFailed, confirmedViewerPlugin } from '../graphql/viewer';
import { DocumentsByBytes, HTTP_DOCUMENT_BYTES } from '../graphql/document-bytes';
import { graphiql } from './graphiql';
import { healthz, readyz } from './health';
import { MAX_REQUEST_BYTES, rawErrorAnswer, type TransportDeps } from './transport';
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
  // POST /graphql, the API's hot path, skips express's router (on this hardware a quarter of a
  // trivial request's CPU); `app` serves everything else, `/graphql` included, as it always did.
  const httpServer = http.createServer((req, res) => (req.method === 'POST' && isGraphQLPath(req.url) ? postGraphQL(req, res) : app(req, res)));
  httpServer.keepAliveTimeout = deps.httpKeepAliveMs;
  httpServer.on('clientError', answerClientError);
  // An `Expect` other than 100-continue: Node's own answer is a bare 417.
  httpServer.on('checkExpectation', (_req: http.IncomingMessage, res: http.ServerResponse) =>
    sendJson(res, 417, { errors: [{ message: 'Only Expect: 100-continue is understood', extensions: { code: ErrorCode.BadRequest } }] }),
  );
  // A client that asks before sending its body (`Expect: 100-continue`) is not asked for one too
  // large: the request goes on without it, and `graphql` refuses it unread, as any other.
  httpServer.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!declaredTooLarge(req)) res.writeContinue();
    httpServer.emit('request', req, res);
  });
  // The request id of each failed operation's errors, noted before Apollo formats them: by the
  // errors Apollo hands the plugins and then formatError (one object per request: a thrown error
  // may be shared by many, a pipelined connection's failure say), or for a context that failed, by
  // the error it threw (Apollo wraps it, keeping it as `originalError`), made for that request.
  const requestIds = new WeakMap<object, string>();
  const requestIdOf = (error: unknown) => requestIds.get(error as object) ?? requestIds.get((error as GraphQLError).originalError ?? {});

  const { metrics } = deps;
  const webSockets = attachWebSockets(httpServer, deps);
  metrics.gauge('chat_websocket_connections', 'Open graphql-ws connections', () => webSockets.size());
  metrics.gauge('chat_pubsub_up', 'Whether pub/sub (Redis) answers: 1 up, 0 down', async () => ((await deps.probes.pubsub()) ? 1 : 0));
  metrics.gauge('chat_database_up', 'Whether the database answers: 1 up, 0 down', async () => ((await deps.probes.database()) ? 1 : 0));

  const formatError = (error: unknown) => maskError(error, requestIdOf(error) ?? randomUUID(), log);
  const apollo = new ApolloServer<GraphQLContext>({
    schema: deps.schema,
    // Introspection is refused by the shared validation rules (`deps.rules`), as over WebSocket.
    introspection: true,
    parseOptions: deps.rules.parseOptions,
    dangerouslyDisableValidation: true, // limitsPlugin validates, with the same function as WebSocket
    documentStore: new DocumentsByBytes(HTTP_DOCUMENT_BYTES),

    includeStacktraceInErrorResponses: false,
    stopOnTerminationSignals: false, // main.ts owns SIGTERM: Apollo's handler would kill the process mid-shutdown
    formatError: (_formatted, error) => formatError(error),
    plugins: [
      limitsPlugin(deps.schema, deps.rules, formatError),
      confirmedViewerPlugin(),
      answerStatusPlugin(),
      {
        async requestDidStart() {
          return {
            async didEncounterErrors({ errors, contextValue }) {
              for (const e of errors) requestIds.set(e, contextValue.requestId);
            },
          };
        },
      },
      ApolloServerPluginDrainHttpServer({ httpServer, stopGracePeriodMillis: deps.shutdown.drainMs }),
      ApolloServerPluginLandingPageDisabled(),
      // No field has a cache hint: Apollo's default cache-control plugin would only wrap every
      // field's resolver to find that out. Every answer says `no-store` instead (`tagRequest`).
      ApolloServerPluginCacheControlDisabled(),
      metrics.plugin(),
    ],
  });
  await apollo.start();

  // A page on another origin reads these headers of an answer only when they are exposed: the
  // request id of an error, when to retry a 503, and that its token was refused (the client kit reads it).
  const withCors = cors({ origin: deps.corsOrigins, maxAge: 600, exposedHeaders: ['x-request-id', 'retry-after', 'www-authenticate'] });
  const parseJson = express.json({ limit: MAX_REQUEST_BYTES, verify: refuseInvalidUtf8 });
  const tagRequest = (res: http.ServerResponse) => {
    res.setHeader('x-request-id', randomUUID());
    res.setHeader('cache-control', 'no-store'); // what Apollo's cache-control plugin answered for every operation here
  };
  const runApollo = apolloHandler(apollo, async ({ req, res }) => {
    const { claimed, check, standing } = deps.sessions.viewerOf(req.headers.authorization);
    const requestId = String(res.getHeader('x-request-id'));
    // A session found standing lately is checked while Apollo parses, validates and (for a
    // mutation) spends budgets (`confirmViewer`); a request refused before it executes never waits
    // for it. A request that may be a send leaves it to the send's statement (`checkedInStatement`).
    if (check && standing && !mayBeSend(req.body)) check.result().catch(() => undefined);
    const context =
      check && standing
        ? deps.context(claimed, requestId, deps.clientAddress(req), undefined, check)
        : deps.context(
            check
              ? await check.result().catch((err: unknown) => {
                  const failed = checkFailed(err);
                  if (failed instanceof Error) requestIds.set(failed, requestId);
                  throw failed;
                })
              : null,
            requestId,
            deps.clientAddress(req),
          );
    context.holdForAnswer = () => !res.destroyed; // the client's connection is still there
    // A bearer token presented and not honoured (malformed, expired, or its session found ended): the request runs signed out.
    if (BEARER_TOKEN.test(req.headers.authorization ?? '') && !context.viewer && !context.pendingViewer) context.tokenRefused = true;
    return context;
  });
  const answerError = errorAnswer(log);
  /** GraphQL requests being answered: at the end of a shutdown's grace, what they still wait for is answered for them. */
  const answering = new Set<http.ServerResponse>();
  /** `/graphql` after CORS: a request id, the JSON body, Apollo; anything that fails goes to `fail`. */
  const graphql = (req: ParsedRequest, res: http.ServerResponse, fail: (err: unknown) => void) => {
    tagRequest(res);
    if (declaredTooLarge(req)) return void refuseTooLarge(res, fail);
    if (req.headers['transfer-encoding'] !== undefined) refuseAtLimit(req, () => refuseTooLarge(res, fail));
    if (req.method === 'GET' && !readableQueryString(req.url)) return void fail(Object.assign(new Error('Query string is not valid percent-encoded UTF-8'), { status: 400 }));
    answering.add(res);
    parseJson(req, res, (err?: unknown) => {
      const done = () => void answering.delete(res);
      if (err) return void (fail(err), done());
      runApollo(req, res).catch(fail).finally(done);
    });
  };
  /** The hot path: CORS and `graphql`, with the router's error answers, without the router. */
  const postGraphQL = (req: ParsedRequest, res: http.ServerResponse) => {
    const fail = (err: unknown) => answerError(err as HttpError, res);
    withCors(req, res, (err?: unknown) => (err ? fail(err) : graphql(req, res, fail)));
  };

  app.use(withCors);
  app.get('/', (_req, res) => res.redirect(302, '/graphql'));
  app.get('/healthz', healthz);
  app.get('/readyz', readyz(deps.probes, deps.readyWithoutPubsub));
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  // `/graphql` in any letter case, with or without a trailing slash (as the WebSocket upgrade takes it); not the paths under it.
  app.all('/graphql', graphiql(deps.introspection), (req, res, next) => graphql(req, res, next));
  app.use((_req, res) => {
    res.status(404).json({ errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }] });
  });
  app.use((err: HttpError, _req: Request, res: Response, _next: NextFunction) => answerError(err, res));

  return {
    httpServer,
    listen(port: number, host: string): Promise<number> {
      return new Promise((resolve, reject) => {
        // A port in use, an address this machine does not have or cannot resolve: name the settings.
        const refused = (err: Error) => reject(new Error(`cannot listen on HOST=${host} PORT=${port}: ${err.message}`));
        httpServer.once('error', refused);
        httpServer.listen(port, host, () => {
          httpServer.off('error', refused);
          resolve((httpServer.address() as { port: number }).port);
        });
      });
    },
    /**
     * Stops accepting, closes WebSockets with 1001 (each once the queries and mutations running on
     * it are answered), then waits for in-flight HTTP requests. The sockets first: Apollo's drain
     * ends every connection that has no HTTP request in flight, upgraded ones included, which
     * would cut a socket still waiting for an answer without a close frame.
     */
    stop: async () => {
      // No new connection from now on (idle ones are closed); resolves once every connection has ended.
      const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
      await webSockets.dispose();
      // Apollo's drain waits `drainMs` for requests in flight, then cuts their connections. One still
      // waiting then (for a frozen database, say) is answered SERVICE_UNAVAILABLE a moment before:
      // the client retries elsewhere (a send with its clientId) rather than seeing a reset.
      const late = setTimeout(() => {
        for (const res of answering) {
          res.setHeader('connection', 'close');
          res.setHeader('retry-after', '1'); // as every other 503 of this server: at once, elsewhere
          sendJson(res, 503, { errors: [cutShortAnswer] });
        }
      }, Math.max(0, deps.shutdown.drainMs - LATE_ANSWER_MARGIN_MS));
      await apollo.stop(); // its drain ends the idle connections and waits for in-flight requests
      clearTimeout(late);
      await closed;
    },
  };
}

/**
 * Whether a request declares a body over the limit. The JSON parser refuses it too, but only once
 * the client has sent all of it (it reads the rest to keep the connection), however large.
 */
function declaredTooLarge(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined && Number(length) > MAX_REQUEST_BYTES;
}

/**
 * A body sent without its length (chunked) is refused once it passes the limit: the JSON parser
 * would read and discard the rest before answering, however long the client goes on sending.
 */
function refuseAtLimit(req: http.IncomingMessage, refuse: () => void): void {
  let received = 0;
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received <= MAX_REQUEST_BYTES) return;
    req.off('data', count);
    refuse();
  };
  req.on('data', count);
}

/**
 * Whether a GET's query string decodes to text: a query parser puts U+FFFD for a byte that is
 * not UTF-8 (`%FF`), and the operation would run on other text than was sent.
 */
function readableQueryString(url: string | undefined): boolean {
  const query = url?.indexOf('?') ?? -1;
  if (query < 0) return true;
  try {
    decodeURIComponent(url!.slice(query + 1));
    return true;
  } catch {
    return false;
  }
}

/** 413 at once, and the connection closed after the answer: the body it declared is not read. */
function refuseTooLarge(res: http.ServerResponse, answer: (err: HttpError) => void): void {
  res.setHeader('connection', 'close');
  answer(Object.assign(new Error('request entity too large'), { status: 413, type: 'entity.too.large' }));
}

/** The JSON parser's `verify`: a body that says UTF-8 and is not is refused (the parser would put U+FFFD for what it cannot read, and store that). */
function refuseInvalidUtf8(_req: http.IncomingMessage, _res: http.ServerResponse, body: Buffer, encoding: string): void {
  if (encoding === 'utf-8' && !isUtf8(body)) throw Object.assign(new Error('Body is not valid UTF-8'), { status: 400, type: 'entity.verify.failed' });
}

/** What Node's parser refuses, by its error's code: the status Node would answer, and what to say. */
const CLIENT_ERRORS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'The request line and headers are too large (over 16 KiB): send a long query by POST'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Chunk extensions too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request did not arrive in time'],
};

/**
 * A request Node's HTTP parser refused (malformed, headers too large, too slow): answered as Node
 * would, with the JSON errors of every other answer instead of an empty body, then the connection
 * closed. Pipelined behind a request still being answered, it is answered after that answer
 * (written in its place, it would lose the answer to a request that ran: a send, retried, stored twice).
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
  const [status, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'Malformed HTTP request'];
  const answer = () => (socket.writable ? socket.end(rawErrorAnswer(status, message, { code: ErrorCode.BadRequest })) : socket.destroy());
  const inFlight = (socket as Duplex & { _httpMessage?: http.ServerResponse | null })._httpMessage;
  if (inFlight && !inFlight.writableFinished) inFlight.once('close', answer);
  else answer();
}

/** An Authorization header that presents a bearer token (RFC 6750): only such a token can be refused as invalid. */
const BEARER_TOKEN = /^bearer\s+\S/i;

/** How long before Apollo's drain cuts the connections of requests in flight the shutdown answers them itself. */
const LATE_ANSWER_MARGIN_MS = 250;

/**
 * Whether a request's document names a mutation whose statement checks the session itself
 * (`CHECKED_IN_STATEMENT`: a send): its check then waits to be asked for. Any other request's
 * starts at once (it would be asked for).
 */
function mayBeSend(body: unknown): boolean {
  const query = (body as { query?: unknown } | undefined)?.query;
  if (typeof query !== 'string') return false;
  for (const name of CHECKED_IN_STATEMENT) if (query.includes(name)) return true;
  return false;
}

/** `/graphql` with or without a query string, as POSTed by clients (any other spelling goes through the router). */
function isGraphQLPath(url: string | undefined): boolean {
  return url !== undefined && url.startsWith('/graphql') && (url.length === 8 || url[8] === '?');
}

type HttpError = Error & { status?: number; type?: string };

/** A request whose body the JSON parser has read. */
type ParsedRequest = http.IncomingMessage & { body?: unknown };

/** Malformed JSON and anything else that escapes a handler: a JSON answer, never a stack trace. */
function errorAnswer(log: TransportDeps['log']) {
  return (err: HttpError, res: http.ServerResponse) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) log.error({ err }, 'unhandled HTTP error');
    const message = status === 500 ? 'Internal server error' : err.type === 'entity.parse.failed' ? 'Body is not valid JSON' : err.message;
    sendJson(res, status, { errors: [{ message, extensions: { code: status === 500 ? 'INTERNAL_SERVER_ERROR' : 'BAD_REQUEST' } }] });
  };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}

/**
 * Runs a parsed request (`req.body` set by the JSON parser) through Apollo Server and writes its
 * answer with Node's own response methods (what `@as-integrations/express5` does, without
 * express's `send`: no ETag to hash for a POST answer nobody caches).
 */
function apolloHandler(apollo: ApolloServer<GraphQLContext>, context: (args: { req: ParsedRequest; res: http.ServerResponse }) => Promise<GraphQLContext>) {
  return async (req: ParsedRequest, res: http.ServerResponse): Promise<void> => {
    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(req.headers)) if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
    const url = req.url ?? '';
    const query = url.indexOf('?');
    const answer = await apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: req.method!.toUpperCase(), headers, search: query < 0 ? '' : url.slice(query), body: req.body },
      context: () => context({ req, res }),
    });
    if (res.headersSent) return; // answered meanwhile by a shutdown whose grace ended
    for (const [key, value] of answer.headers) res.setHeader(key, value);
    res.statusCode = answer.status ?? 200;
    if (answer.body.kind === 'complete') return void res.end(answer.body.string);
    for await (const chunk of answer.body.asyncIterator) res.write(chunk);
    res.end();
  };
}
