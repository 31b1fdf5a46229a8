import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { execute, getOperationAST, GraphQLError, type DocumentNode, type ExecutionArgs, type ExecutionResult, type FormattedExecutionResult } from 'graphql';
import type { Context, SubscribePayload } from 'graphql-ws';
import pLimit from 'p-limit';
import { WebSocketServer, type WebSocket } from 'ws';
import { AppError, ErrorCode, maskError, rateLimited, shuttingDown, unauthenticated } from '../errors';
import type { GraphQLContext } from '../graphql/context';
import { prepareOperation, subscriptionDocument, type KeptDocument } from '../graphql/pipeline';
import { confirmViewer } from '../graphql/viewer';
import { subscribeShared, type FrameSink } from '../graphql/shared-subscribe';
import { serveGraphQLOverWebSocket, type WsTransportExtra } from './graphql-ws-server';
import { SocketGuard } from './socket-guard';
import { sendMessages } from './ws-frames';
import { CLOSE_GOING_AWAY, holdForAnswer, operationAnswered, sessionEnded, SocketSessions, type SocketExtra } from './socket-sessions';
import { MAX_REQUEST_BYTES, rawErrorAnswer, type TransportDeps } from './transport';

/** Subscriptions one WebSocket may hold at once (queries and mutations in flight do not count). */
export const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;

/**
 * Queries and mutations one WebSocket runs at once; its others wait their turn, in the order they
 * came. A client's burst (a view opening, a flood within `WS_OPERATIONS_PER_SOCKET_PER_S`) then
 * holds at most this many of the database pool's connections and of the event loop's turns, and
 * other users' operations go in between.
 */
export const RUNNING_OPERATIONS_PER_SOCKET = 8;
/** A socket's operations a second may come in a burst of up to this many seconds' worth (a client opening its subscriptions). */
const OPERATION_BURST_S = 3;
/** What the subscriptions of one WebSocket may hold together, in bytes (`SocketSubscriptions`). */
export const MAX_SUBSCRIPTION_BYTES_PER_SOCKET = 2 * 1024 * 1024;

/**
 * A socket's running subscriptions, and about what they hold in memory: each its `subscribe`
 * message (graphql-ws keeps it for the operation's life; two bytes a character, as
 * `documentBytes` counts), and each distinct document once (`subscriptionDocument`). Without
 * this bound, one user's sockets could keep gigabytes: a message of 1 MiB per subscription, its
 * document padded with a comment that no token limit counts (README.md, "Operation limits").
 */
class SocketSubscriptions {
  private readonly running = new Map<string, { kept: KeptDocument; messageBytes: number }>();
  /** Each document in use, and by how many of the socket's subscriptions. */
  private readonly documents = new Map<KeptDocument, number>();
  private bytes = 0;

  get size(): number {
    return this.running.size;
  }

  has(id: string): boolean {
    return this.running.has(id);
  }

  /** Adds subscription `id` unless what the socket's subscriptions hold would then pass the bound. */
  add(id: string, kept: KeptDocument, messageLength: number): boolean {
    const uses = this.documents.get(kept) ?? 0;
    const messageBytes = 2 * messageLength;
    const bytes = this.bytes + messageBytes + (uses ? 0 : kept.bytes);
    if (bytes > MAX_SUBSCRIPTION_BYTES_PER_SOCKET) return false;
    this.bytes = bytes;
    this.documents.set(kept, uses + 1);
    this.running.set(id, { kept, messageBytes });
    return true;
  }

  delete(id: string): void {
    const held = this.running.get(id);
    if (!held) return;
    this.running.delete(id);
    this.bytes -= held.messageBytes;
    const uses = this.documents.get(held.kept)! - 1;
    if (uses > 0) this.documents.set(held.kept, uses);
    else {
      this.documents.delete(held.kept);
      this.bytes -= held.kept.bytes;
    }
  }
}

type WsExtra = Omit<SocketExtra, 'socket'> & {
  /** This socket's running subscriptions. */
  subscriptions?: SocketSubscriptions;
  /** The client's address, read from the upgrade request at `connection_init` (the request is not kept). */
  clientAddress?: string;
  /** The operations the socket may start now, and when that was reckoned (`performance.now()`, `operationRefused`). */
  operationTokens?: { tokens: number; at: number };
  /** Runs the socket's queries and mutations, `RUNNING_OPERATIONS_PER_SOCKET` at once (made at its first). */
  turns?: pLimit.Limit;
  /** Its queries and mutations under way, by id (made at its first). */
  operations?: Map<string, Operation>;
};

/** A query or mutation of a socket, from its context on (`socketOf`). */
interface Operation {
  extra: WsExtra & WsTransportExtra;
  id: string;
  /** Its client completed it: it is not run if it has not begun. */
  cancelled: boolean;
  /** Ends its execution at once (once it is executing): the client completed it. */
  end?: (result: ExecutionResult) => void;
}

/**
 * Whether an upgrade asks for `/graphql` as HTTP's router takes it: in any letter case, with or
 * without a trailing slash and a query string. Read from the request target as written: a target
 * the URL parser refuses (`//[/graphql`) is not `/graphql`, and no parser is needed to say so.
 */
function asksForGraphQL(target: string | undefined): boolean {
  const path = (target ?? '').replace(ABSOLUTE_FORM, '').split(/[?#]/, 1)[0].toLowerCase();
  return path === '/graphql' || path === '/graphql/';
}

/** The scheme and authority of a target in absolute form (`http://host:port/graphql`), which HTTP's router also takes. */
const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/** An upgrade socket's error listener: the client went away; nothing is left to answer. */
function destroyQuietly(this: Duplex): void {
  this.destroy();
}

/** When an address with `WS_PER_ADDRESS` sockets open may try again (ms). */
const SOCKETS_FULL_RETRY_MS = 5000;

/**
 * graphql-ws on `/graphql` of the HTTP server: refuses foreign browser origins and too many
 * sockets per address and per user (`SocketGuard`), authenticates in `connection_init` through
 * `SocketSessions` (4403 without a valid token and session, when the token expires unrenewed, and
 * when the session is revoked), admits each operation through the same
 * pipeline as HTTP (`prepareOperation`: a bad one gets an `error` message with HTTP's code and
 * the socket stays up), bounds subscriptions per socket, executes subscription events once per
 * operation (`subscribeShared`), and masks errors as over HTTP. `dispose()` closes every socket with 1001, each once the queries and mutations running on it are answered.
 */
export function attachWebSockets(httpServer: http.Server, deps: TransportDeps) {
  const { log } = deps;
  // No permessage-deflate (ws's default, said here on purpose): compressing each frame per socket costs more CPU than the bytes saved on a chat event.
  const wsServer = new WebSocketServer({ noServer: true, maxPayload: MAX_REQUEST_BYTES, perMessageDeflate: false });
  const guard = new SocketGuard(wsServer, deps.webSockets, deps.corsOrigins, deps.clientAddress);
  /** Set when the instance stops: no socket is initialised any more (the HTTP server accepts no new connection). */
  let stopping = false;
  const upgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands over an upgrade's socket with no error listener: a client that resets it while it
    // is answered (a refusal written to a closed connection) would raise an unhandled 'error' and
    // end the process. `ws` listens itself once it takes the socket.
    socket.on('error', destroyQuietly);
    try {
      admitUpgrade(req, socket, head);
    } catch (err) {
      // Nothing catches what an 'upgrade' listener throws: it would end the process, every client's connection with it.
      log.warn({ err }, 'WebSocket upgrade request refused');
      socket.end(rawErrorAnswer(400, 'Bad WebSocket upgrade request', { code: ErrorCode.BadRequest }));
    }
  };
  const admitUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
      // Node cannot serve a request that asks to upgrade to anything else as a plain one (its body is not read): say so.
      socket.end(rawErrorAnswer(400, `Upgrade to ${JSON.stringify(req.headers.upgrade ?? '')} is not supported here: send the request without Upgrade`, { code: ErrorCode.BadRequest }));
      return;
    }
    if (!asksForGraphQL(req.url)) {
      socket.end(rawErrorAnswer(404, 'Not found', { code: 'NOT_FOUND' }));
      return;
    }
    guard.verify({ origin: req.headers.origin, req }, (ok, status, message) => {
      if (!ok) {
        // A full address frees a place when one of its sockets closes: try again in a moment.
        const full = status === 429;
        const extensions = full ? { code: ErrorCode.RateLimited, retryAfterMs: SOCKETS_FULL_RETRY_MS } : { code: ErrorCode.Forbidden };
        socket.end(rawErrorAnswer(status ?? 400, message ?? 'Refused', extensions, full ? `Retry-After: ${SOCKETS_FULL_RETRY_MS / 1000}\r\n` : ''));
        return;
      }
      wsServer.handleUpgrade(req, socket, head, (ws) => wsServer.emit('connection', ws, req));
    });
  };
  httpServer.on('upgrade', upgrade);

  const socketSessions = new SocketSessions(deps.tokens, deps.sessions, log, deps.sessionSweepMs);
  /** Each query and mutation, by its context (for its turn, `WsExtra.turns`). */
  const socketOf = new WeakMap<object, Operation>();
  /**
   * Spends one of the socket's operations (`WS_OPERATIONS_PER_SOCKET_PER_S`, a token bucket holding
   * OPERATION_BURST_S seconds' worth): past them, the operation is answered RATE_LIMITED with
   * `retryAfterMs` and not run, so that a client flooding operations — queries, subscriptions
   * opened and completed — costs the server a refusal each, not an execution, and does not hold up
   * everyone else's. Counted per socket, not per user: a user's sockets are bounded by
   * `WS_PER_USER`, and a client opening a socket per view (or a load with one account) subscribes
   * once on each. Decided at once, before the operation's document is parsed: graphql-ws keeps an
   * operation's id as running from `onSubscribe` on, and a `complete` and a `subscribe` reusing the
   * id right behind it must find it so (`ReusedIds`); a limiter that answers through a promise
   * (rate-limiter-flexible's) would leave a gap there, in which the reused id ran twice.
   */
  const operationRefused = (extra: WsExtra) => {
    const rate = deps.webSockets.operationsPerSocketPerSecond;
    const now = performance.now(); // monotonic: a clock stepped back takes no tokens away
    const bucket = (extra.operationTokens ??= { tokens: OPERATION_BURST_S * rate, at: now });
    bucket.tokens = Math.min(OPERATION_BURST_S * rate, bucket.tokens + ((now - bucket.at) * rate) / 1000);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    deps.metrics.rateLimited.inc({ budget: 'ws-operations' });
    return rateLimited(((1 - bucket.tokens) * 1000) / rate, 'Too many operations on this WebSocket at once; slow down');
  };
  /**
   * An operation's admission (`onSubscribe`): the socket's operations a second, its state,
   * the pipeline shared with HTTP, the subscriptions' bound.
   */
  const admit = (ctx: Context<Record<string, unknown> | undefined, WsExtra & WsTransportExtra>, id: string, payload: SubscribePayload) => {
    const refused = operationRefused(ctx.extra);
    if (refused) return [refused];
    const { closing, socket } = ctx.extra;
    if (closing) return [closing.code === CLOSE_GOING_AWAY ? shuttingDown() : unauthenticated(closing.reason)]; // closing once its running operations are answered
    if (socket.readyState !== socket.OPEN) return [closedConnection()]; // closed at once (nothing was running): nothing more runs on it
    const prepared = prepareOperation(deps.schema, deps.rules, payload);
    if (Array.isArray(prepared)) return prepared;
    if (isSubscription(prepared)) {
      const subscriptions = (ctx.extra.subscriptions ??= new SocketSubscriptions());
      if (subscriptions.size >= MAX_SUBSCRIPTIONS_PER_SOCKET) {
        return [new AppError(ErrorCode.BadRequest, `At most ${MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per connection`)];
      }
      const kept = subscriptionDocument(prepared.document);
      if (!subscriptions.add(id, kept, ctx.extra.messageLength ?? 0)) {
        return [
          new AppError(
            ErrorCode.BadRequest,
            `The subscriptions of one connection may hold at most ${MAX_SUBSCRIPTION_BYTES_PER_SOCKET / 1024 / 1024} MiB (their messages, and each document once): complete some, or send a smaller document`,
          ),
        ];
      }
      prepared.document = kept.document;
      // graphql-ws keeps the message for the operation's life: only what the subscription runs
      // with — not the text the client sent, its extensions, or variables it does not declare
      // (a parsed JSON value takes many times its text: 300,000 `{}` some 19 MB).
      const variables = declaredVariables(kept.document, prepared.operationName, prepared.variableValues);
      Object.assign(payload, { query: '', variables, extensions: undefined });
      prepared.variableValues = variables;
    } else {
      // graphql-ws keeps the message until the answer: let it hold the query text its admitted
      // document was parsed from, one string for all the operations that send it.
      const text = prepared.document.loc?.source.body;
      if (text !== undefined && text === payload.query) (payload as { query: string }).query = text;
      (ctx.extra.answering ??= new Set()).add(id);
    }
    return prepared;
  };
  const cleanup = serveGraphQLOverWebSocket<WsExtra>(
    wsServer,
    {
      schema: deps.schema,
      subscribe: subscribeShared,
      connectionInitWaitTimeout: Infinity, // `SocketGuard` closes a socket not initialised in time, on its sweep
      onConnect: async (ctx) => {
        guard.initialised(ctx.extra.socket);
        // graphql-ws keeps the upgrade request and the connection_init payload for the socket's
        // life: keep the address instead of the request (its headers and stream state, ~1.3 KB),
        // and drop the payload (the bearer token) once read.
        ctx.extra.clientAddress = deps.clientAddress(ctx.extra.request);
        (ctx.extra as { request?: unknown }).request = undefined;
        const connected = await socketSessions.connect(ctx.connectionParams, ctx.extra);
        (ctx as { connectionParams?: unknown }).connectionParams = undefined;
        if (!connected) return false; // closed 4403 (or 1013)
        if (stopping) {
          ctx.extra.socket.close(CLOSE_GOING_AWAY, 'Going away'); // initialised after the stop began (or while its session was checked)
          return false;
        }
        const viewer = ctx.extra.viewer!;
        if (!guard.admitUser(ctx.extra.socket, viewer.id)) return false; // already closed with 4429
        ctx.extra.socket.on('close', deps.presence.connect(viewer.id)); // a WebSocket closes once
        return true;
      },
      onSubscribe: (ctx, id, payload) => admit(ctx, id, payload), // each operation then checks the socket's session (`context`)
      onComplete: (ctx, id) => {
        ctx.extra.subscriptions?.delete(id);
        operationAnswered(ctx.extra, id);
      },
      context: (ctx, id, _payload, args) => {
        const viewer = ctx.extra.viewer ?? null;
        // Each operation checks the socket's session as an HTTP request does, after it arrived
        // (`checkFor`; a subscription before it reads anything, `subscribeShared`): a
        // revocation whose signal this instance missed ends the socket here.
        const check = viewer ? deps.sessions.checkFor(viewer) : undefined;
        const context = deps.context(viewer, flatRequestId(), ctx.extra.clientAddress!, ctx.extra.auth, check);
        // A subscription's events are written straight to the socket (one serialisation per event
        // per operation); queries and mutations answer through graphql-ws as usual.
        if (isSubscription(args)) {
          context.frames = new SocketFrames(ctx.extra, id, log);
        } else {
          context.holdForAnswer = () => holdForAnswer(ctx.extra, id);
          ctx.extra.turns ??= pLimit(RUNNING_OPERATIONS_PER_SOCKET);
          // Completed already (while its document was read): graphql-ws has forgotten its id, which
          // the client may not use again before this one ends (`ReusedIds`).
          const operation: Operation = { extra: ctx.extra, id, cancelled: !(id in ctx.subscriptions) };
          socketOf.set(context, operation);
          (ctx.extra.operations ??= new Map()).set(id, operation);
        }
        return context;
      },
      execute: (args) => {
        const operation = socketOf.get(args.contextValue as object);
        if (!operation) return executeConfirmed(args); // a subscription
        const { extra, id } = operation;
        const forget = () => {
          if (extra.operations?.get(id) === operation) extra.operations.delete(id);
        };
        if (operation.cancelled) {
          forget();
          return { errors: [completedByClient()] };
        }
        const turn = extra.turns!(() => {
          // One that waited while its socket closed is not run: no one would hear its answer; nor
          // one the client completed meanwhile (cancelled); nor while the instance stops, as one
          // sent then (begun now, it could be made after the stop answered it cut short). A socket
          // closing for its session runs it signed out, as before (and one closing for an expired
          // token its refreshSession, which keeps it open).
          if (extra.socket.readyState !== extra.socket.OPEN) return { errors: [closedConnection()] };
          if (operation.cancelled) return { errors: [completedByClient()] };
          if (extra.closing?.code === CLOSE_GOING_AWAY) return { errors: [shuttingDown()] };
          (extra.begun ??= new Set()).add(id);
          return executeConfirmed(args);
        });
        // Ended at once when its client completes it, waiting or begun (`cancelled`), so that its
        // id is free for the client to use again at once (graphql-ws sends nothing for it): one
        // begun goes on to its end in its turn, its answer dropped.
        const ended = new Promise<ExecutionResult>((resolve) => (operation.end = resolve));
        return Promise.race([turn, ended]).finally(forget);
      },
      onNext: (_ctx, _id, _payload, args, result) =>
        result.errors
          ? { ...result, errors: result.errors.map((e) => maskError(e, (args.contextValue as GraphQLContext).requestId, log)) }
          : undefined,
      onError: (ctx, id, _payload, errors) => {
        ctx.extra.subscriptions?.delete(id);
        return errors.map((e) => maskError(e, randomUUID(), log));
      },
    },
    log,
    {
      running: (extra, id) => extra.subscriptions?.has(id) === true || extra.answering?.has(id) === true,
      completedByClient: (extra, id) => {
        const operation = extra.operations?.get(id);
        if (!operation) return; // a subscription (graphql-ws ends it), or not yet executing
        operation.cancelled = true;
        operation.end?.({ errors: [completedByClient()] });
      },
    },
  );

  return {
    size: () => wsServer.clients.size,
    dispose: async () => {
      stopping = true;
      guard.close();
      // Each socket closes (1001) once the queries and mutations running on it are answered: a
      // `refreshSession` cut off here would have rotated the client's refresh token unseen.
      await socketSessions.closeAll(deps.shutdown.socketAnswersMs);
      socketSessions.dispose();
      await cleanup.dispose(); // the rest: sockets not yet past connection_init, those whose answers did not come
    },
  };
}

/**
 * Executes a query once its session check has answered (a mutation's root fields wait for it each,
 * `withConfirmedViewer`, or leave it to their statement, `checkedInStatement`): an ended session's
 * query runs signed out, and its socket closes (4403) once it is answered; a database that cannot
 * answer the check answers SERVICE_UNAVAILABLE, in the result, as over HTTP.
 */
function executeConfirmed(args: ExecutionArgs): Promise<ExecutionResult> | ReturnType<typeof execute> {
  const ctx = args.contextValue as GraphQLContext;
  if (!ctx.pendingViewer || getOperationAST(args.document, args.operationName)?.operation === 'mutation') return execute(args);
  return confirmViewer(ctx).then(
    () => execute(args),
    (err: unknown) => ({ errors: [new GraphQLError((err as Error).message, { originalError: err as Error })] }),
  );
}

/** What an operation that arrived on a socket closed meanwhile answers (the client hears the close). */
const closedConnection = () => new AppError(ErrorCode.BadRequest, 'This connection is closed');
/** What a query or mutation its client completed ends with; never sent: graphql-ws sends nothing for it. */
const completedByClient = () => new AppError(ErrorCode.BadRequest, 'Completed by the client');

/** Unsent bytes on a socket above which a subscription takes no more live events until its frames have gone out. */
const FRAME_HIGH_WATER_BYTES = 64 * 1024;

/** `next` frames of subscription `id` written to `socket` (nothing once it is closed), errors masked as in `onNext`. A class: each subscription holds one small object, no closures. */
class SocketFrames implements FrameSink {
  constructor(
    private readonly extra: SocketExtra,
    readonly id: string,
    private readonly log: TransportDeps['log'],
  ) {}

  write(prefix: Buffer, rests: readonly Buffer[]): Promise<void> | undefined {
    const { socket } = this.extra;
    // Nothing more for a session that ended, while its socket waits for a running operation's answer.
    if (socket.readyState !== socket.OPEN || sessionEnded(this.extra)) return undefined;
    if (!this.congested()) return void sendMessages(socket, prefix, rests);
    // A failed write closes the socket, which ends the subscription: nothing to report here.
    return new Promise<void>((resolve) => sendMessages(socket, prefix, rests, resolve));
  }

  private congested(): boolean {
    return this.extra.socket.bufferedAmount >= FRAME_HIGH_WATER_BYTES;
  }

  mask(result: ExecutionResult, ctx: GraphQLContext): FormattedExecutionResult {
    return result.errors ? { ...result, errors: result.errors.map((e) => maskError(e, ctx.requestId, this.log)) } : result;
  }
}

/**
 * A request id as one flat string: `randomUUID()` builds it from some fifteen joined pieces, which a
 * subscription's context would keep as they are (~490 bytes instead of ~64) for its whole life.
 * Reading a character makes V8 flatten it.
 */
function flatRequestId(): string {
  const id = randomUUID();
  id.charCodeAt(0);
  return id;
}

const isSubscription = (args: { document: DocumentNode; operationName?: string | null }) =>
  getOperationAST(args.document, args.operationName)?.operation === 'subscription';

/** Of `values`, those the operation declares (for a subscription: scalars, its root field's arguments). */
function declaredVariables(document: DocumentNode, operationName: string | null | undefined, values: ExecutionArgs['variableValues']): Record<string, unknown> {
  const declared: Record<string, unknown> = {};
  for (const definition of getOperationAST(document, operationName)?.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    if (values && Object.hasOwn(values, name)) declared[name] = values[name];
  }
  return declared;
}
