import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { createClient, type Client, type FormattedExecutionResult as ExecutionResult } from 'graphql-ws';
import { Client as PgClient } from 'pg';
import WebSocket from 'ws';
import { createApp, type App } from '../../src/app';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { LIFTED_BUDGETS } from './budgets';

export { LIFTED_BUDGETS };

export const TEST_SECRET = 'test-secret-that-is-long-enough-for-hs256-signing';

/** A running app on port 0 and how to talk to it. */
export interface TestServer {
  app: App;
  url: string;
  wsUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts the real app on port 0. By default against the PostgreSQL and Redis that the global
 * setup started; pass `{ DATABASE_URL: undefined }` for the embedded database, `{ REDIS_URL: undefined }`
 * for in-memory pub/sub (and then, unless a database is given, a fresh one on the shared server).
 */
export async function startServer(
  env: Record<string, string | undefined> = {},
  /** Where its log lines go (stdout by default; `TEST_LOG_LEVEL` or `env.LOG_LEVEL` says which, none by default). */
  logTo?: Writable,
): Promise<TestServer> {
  // Without Redis an instance is, by contract, the only one on its database (at start it ends every
  // reply left streaming there): on the shared PostgreSQL it gets a database of its own.
  const alone = 'REDIS_URL' in env && !env.REDIS_URL && !('DATABASE_URL' in env);
  const own = alone ? await privateDatabase() : undefined;
  // Removed on stop, or when the server does not start (one the test names is left to it).
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chat-data-'));
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: own?.url ?? requireEnv('TEST_DATABASE_URL'),
    REDIS_URL: requireEnv('TEST_REDIS_URL'),
    DATA_DIR: dataDir,
    JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // Every test client comes from 127.0.0.1 and some send fast: budgets are lifted unless a test sets them.
    ...LIFTED_BUDGETS,
    ...env,
  });
  const notStarted = async (err: unknown): Promise<never> => {
    await own?.drop().catch(() => undefined);
    removeDataDir();
    throw err;
  };
  const app = await createApp(config, createLogger(config.logLevel, logTo)).catch(notStarted);
  const port = await app.listen().catch(async (err: unknown) => notStarted(await app.stop().then(() => err, () => err)));
  return {
    app,
    url: `http://127.0.0.1:${port}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    stop: async () => {
      await app.stop();
      await own?.drop();
      removeDataDir();
    },
  };
}

/** A fresh database on the shared PostgreSQL, and how to drop it. */
async function privateDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const shared = new URL(requireEnv('TEST_DATABASE_URL'));
  const name = `chat_alone_${randomBytes(5).toString('hex')}`;
  const admin = () => {
    const url = new URL(shared);
    url.pathname = '/postgres';
    return new PgClient({ connectionString: url.toString() });
  };
  const run = async (statement: string) => {
    const client = admin();
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(shared);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/**
 * Starts the app before the tests of the file (or `describe` block) that calls it and stops it
 * after them; the returned server is filled in once it is up.
 */
export function useServer(env: Record<string, string | undefined> = {}): TestServer {
  const server = {} as TestServer;
  beforeAll(async () => {
    Object.assign(server, await startServer(env));
  });
  afterAll(() => server.stop?.());
  return server;
}


function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: the jest global setup starts the servers (see DESIGN.md, Tests)`);
  return value;
}

export interface GqlResult<T = any> {
  status: number;
  data?: T;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, any> }>;
}

/** POSTs one GraphQL operation; resolves to the HTTP status and the body. */
export async function gql<T = any>(url: string, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GqlResult<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as object) };
}

/** Like `gql`, but throws when the answer has errors; resolves to `data`. */
export async function must<T = any>(url: string, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<T> {
  const result = await gql<T>(url, query, variables, token);
  if (result.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
  return result.data as T;
}

/** The `extensions.code` of the first error. */
export const codeOf = (result: GqlResult) => result.errors?.[0]?.extensions?.code;

/** A unique name for test data, so test files share one database without truncation. */
export const unique = (prefix = 'u') => `${prefix}_${randomBytes(5).toString('hex')}`;

export interface TestUser {
  id: string;
  username: string;
  token: string;
}

/** Signs up a fresh user. */
export async function signUp(url: string, username = unique()): Promise<TestUser> {
  const data = await must(
    url,
    `mutation($input: SignUpInput!) { signUp(input: $input) { token user { id username } } }`,
    { input: { username, password: 'correct horse battery' } },
  );
  return { id: data.signUp.user.id, username, token: data.signUp.token };
}

/** Creates a room owned by `owner`; resolves to its id. */
export async function createRoom(url: string, owner: TestUser, kind: 'PUBLIC' | 'PRIVATE' = 'PUBLIC', name = unique('room')): Promise<string> {
  const data = await must(url, `mutation($input: CreateRoomInput!) { createRoom(input: $input) { id } }`, { input: { name, kind } }, owner.token);
  return data.createRoom.id;
}

export interface SentMessage {
  id: string;
  seq: number;
  cursor: string;
  body: string;
}

/** Sends a message; resolves to it. */
export async function send(url: string, user: TestUser, roomId: string, body: string, extra: Record<string, unknown> = {}): Promise<SentMessage> {
  const data = await must(
    url,
    `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq cursor body } }`,
    { input: { roomId, body, ...extra } },
    user.token,
  );
  return data.sendMessage;
}

/** A graphql-ws client authenticated as `user` (or with the given connection params). */
export function wsClient(wsUrl: string, params: Record<string, unknown> | TestUser | null, options: Partial<Parameters<typeof createClient>[0]> = {}): Client {
  const connectionParams = params && 'token' in params ? { authorization: `Bearer ${params.token}` } : (params ?? undefined);
  return createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: connectionParams as Record<string, unknown>, retryAttempts: 0, lazy: true, ...options });
}

/** A running subscription whose results are collected as they arrive. */
export interface Collected<T = any> {
  results: ExecutionResult<T>[];
  /** Resolves when the subscription completes; rejects with the close event or error. */
  done: Promise<void>;
  /** Waits until `predicate(results)` holds. */
  until(predicate: (results: ExecutionResult<T>[]) => boolean, timeoutMs?: number): Promise<ExecutionResult<T>[]>;
  stop(): void;
}

/**
 * Typing and presence events (API.md guarantee 11) that the query selects nothing of: a client's
 * switch over `__typename` skips them, and so does `collect`, so that tests of other events are
 * not disturbed by users coming online. A query that selects their fields gets them.
 */
const unselectedEphemeral = (result: ExecutionResult<unknown>) => {
  const event = Object.values((result.data ?? {}) as Record<string, unknown>)[0] as Record<string, unknown> | null | undefined;
  if (!event || typeof event !== 'object') return false;
  const keys = Object.keys(event);
  return keys.length === 0 || (keys.length === 1 && ['TypingChanged', 'PresenceChanged'].includes(event.__typename as string));
};

/** Subscribes and collects every result (but typing and presence events the query selects nothing of). */
export function collect<T = any>(client: Client, query: string, variables: Record<string, unknown> = {}): Collected<T> {
  const results: ExecutionResult<T>[] = [];
  let stop = () => {};
  const done = new Promise<void>((resolve, reject) => {
    const next = (r: ExecutionResult<T>) => unselectedEphemeral(r) || results.push(r);
    stop = client.subscribe<T>({ query, variables }, { next, error: reject, complete: resolve });
  });
  done.catch(() => undefined);
  return {
    results,
    done,
    until: (predicate, timeoutMs = 10_000) => waitFor(() => (predicate(results) ? results : undefined), timeoutMs, () => JSON.stringify(results).slice(0, 2000)),
    stop: () => stop(),
  };
}

/** Polls `probe` until it returns a value other than undefined/false; rejects after `timeoutMs`. */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000, describe?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`waitFor timed out${describe ? `: ${describe()}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const MESSAGE_ADDED = `subscription($roomId: ID!, $after: String) {
  messageAdded(roomId: $roomId, after: $after) { id seq cursor body author { username } }
}`;

/** The seqs of collected `messageAdded` results. */
export const seqsOf = (results: ExecutionResult<any>[]) => results.map((r) => r.data?.messageAdded?.seq);

/**
 * Takes a row lock from a connection of the test's own (`sql` names the row, `FOR UPDATE`), which
 * holds up whatever else needs that row until `release`; the statements given to `release` run
 * in the lock's transaction before it commits (a change the held-up operations then find).
 */
export async function holdRow(sql: string, params: unknown[]): Promise<(...then: Array<[sql: string, params: unknown[]]>) => Promise<void>> {
  const db = new PgClient({ connectionString: process.env.TEST_DATABASE_URL });
  db.on('error', () => undefined); // a test that failed before releasing it: the database goes at teardown
  await db.connect();
  await db.query('BEGIN');
  await db.query(sql, params);
  return async (...then) => {
    for (const [statement, values] of then) await db.query(statement, values);
    await db.query('COMMIT');
    await db.end();
  };
}

/** Lets an operation just sent reach the lock that holds it up. */
export const reachTheLock = () => new Promise((r) => setTimeout(r, 300));
