import { STATUS_CODES } from 'node:http';
import type { GraphQLSchema } from 'graphql';
import type { SessionCheck, SessionService, SocketAuth } from '../auth/sessions';
import type { TokenService, Viewer } from '../auth/tokens';
import type { GraphQLContext } from '../graphql/context';
import type { OperationRules } from '../graphql/limits';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { ClientAddress } from './client-address';
import type { ReadinessProbes } from './health';

/** The largest message a client may send, over HTTP and WebSocket alike. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/**
 * An HTTP answer written straight to a connection (where no `ServerResponse` exists: a refused
 * WebSocket upgrade, a request Node's parser refused), with the JSON errors of every other answer;
 * the connection is closed after it.
 */
export function rawErrorAnswer(status: number, message: string, extensions: { code: string } & Record<string, unknown>, headers = ''): string {
  const body = JSON.stringify({ errors: [{ message, extensions }] });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n${headers}Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** WebSocket close codes this server uses besides graphql-ws's own. */
export enum CloseCode {
  /** A missing, invalid or expired token (graphql-ws's Forbidden). */
  Forbidden = 4403,
  /** Too many sockets for this user (graphql-ws's client does not retry it). */
  TooManyConnections = 4429,
}

/** Per-socket and per-client bounds of the WebSocket transport. */
export interface WebSocketLimits {
  /** Open sockets per user on this instance. */
  perUser: number;
  /** Operations a socket may start a second, over windows of 3 s (`websocket.ts`). */
  operationsPerSocketPerSecond: number;
  /** Open sockets per client address on this instance. */
  perAddress: number;
  /** Bytes that may wait to be sent to one socket. */
  maxBufferedBytes: number;
  /** How long a socket may take nothing while data waits for it, in ms. */
  stallTimeoutMs: number;
}

/** What the HTTP and WebSocket transports need from the composition root. */
export interface TransportDeps {
  schema: GraphQLSchema;
  /** The parse and validation rules both transports apply (`src/graphql/pipeline.ts`). */
  rules: OperationRules;
  tokens: TokenService;
  /** Sessions: every request's token is checked against its session (revoked, user deleted). */
  sessions: SessionService;
  /** How often open sockets' sessions are checked against the database, in ms. */
  sessionSweepMs: number;
  log: Logger;
  /** Serve GraphiQL. */
  introspection: boolean;
  corsOrigins: '*' | string[];
  /** Who the client is behind any trusted proxies. */
  clientAddress: ClientAddress;
  webSockets: WebSocketLimits;
  /** How long an HTTP connection may stay open with no request (`Config.httpKeepAliveMs`). */
  httpKeepAliveMs: number;
  /** How a stop spends its time (`shutdownPlan`). */
  shutdown: ShutdownPlan;
  probes: ReadinessProbes;
  /** `/readyz` counts the database alone (`Config.readyWithoutPubsub`). */
  readyWithoutPubsub?: boolean;
  /** Builds the context of one operation. */
  context(viewer: Viewer | null, requestId: string, clientAddress: string, socket?: SocketAuth, pendingViewer?: SessionCheck): GraphQLContext;
  metrics: Metrics;
  /** Told when a signed-in socket opens; calls back when it closes (docs/guarantees.md, guarantee 11). */
  presence: { connect(userId: string): () => void };
}

/** How a stop spends its budget (`SHUTDOWN_TIMEOUT_MS`), in order. */
export interface ShutdownPlan {
  /** How long the WebSockets wait for the answers of their running queries and mutations before they close. */
  socketAnswersMs: number;
  /** How long in-flight HTTP requests may take to finish, after that, before they are answered SERVICE_UNAVAILABLE and their connections closed. */
  drainMs: number;
}

/**
 * Splits a shutdown budget: the sockets' answers (2 s at most), the HTTP requests in flight, and a
 * reserve (1 s at most) for streams, hubs, Redis and the database, so that whatever still waits is
 * answered before the process's own deadline, however short it is set.
 */
export function shutdownPlan(timeoutMs: number): ShutdownPlan {
  const socketAnswersMs = Math.min(2000, Math.round(timeoutMs * 0.25));
  const reserveMs = Math.min(1000, Math.round(timeoutMs * 0.15));
  return { socketAnswersMs, drainMs: Math.max(0, timeoutMs - socketAnswersMs - reserveMs) };
}
