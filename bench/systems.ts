import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LIFTED_BUDGETS } from '../test/support/budgets';
import { onCleanup } from './cleanup';
import { freePort, ROOT, startServerProcess, type ServerProcess } from './infra';
import type { SystemName, Target } from './protocol';

/** One system under test, running: its server process and how load processes reach it. */
export interface RunningSystem {
  name: SystemName;
  server: ServerProcess;
  target: Target;
  stop(): Promise<void>;
}

/** How many distinct users the subscriber connections of ours share (sign-up costs ~100 ms each). */
const SUBSCRIBER_USERS = 10;

/** What a scenario needs made before it runs. */
export interface Setup {
  rooms: number;
  /** Subscriber connections: subscriber `j` is user `j % SUBSCRIBER_USERS` in room `j % rooms`. */
  connections: number;
}

/** Calls made at once while setting up many rooms. */
const SETUP_CONCURRENCY = 16;

let built = false;

/**
 * Builds the server as `npm start` and the Dockerfile run it (`tsc` into `dist/`), once per bench
 * process. Run from its sources through tsx instead, every named closure of our code would carry a
 * `name` property esbuild's keepNames adds (about 3 KB more per subscribed connection, and a
 * `defineProperty` each time such a closure is made): not what production runs.
 */
function buildOurs(): void {
  if (built) return;
  execFileSync('npm', ['run', '--silent', 'build:server'], { cwd: ROOT, stdio: 'inherit' });
  built = true;
}

/**
 * Starts the chat API, built as `npm start` runs it (`buildOurs`), in production mode against the given
 * PostgreSQL and Redis, then signs up a sender (who creates `setup.rooms` PUBLIC rooms) and
 * subscriber users (each joining the rooms its connections listen to).
 */
export async function startOurs(backing: { databaseUrl: string; redisUrl: string }, setup: Setup = { rooms: 1, connections: 0 }): Promise<RunningSystem> {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chat-bench-'));
  const removeDataDir = () => rmSync(dataDir, { recursive: true, force: true });
  const forget = onCleanup('chat API data dir', removeDataDir);
  buildOurs();
  const server = await startServerProcess(
    'chat API',
    'dist/main.js',
    {
      NODE_ENV: 'production',
      DATABASE_URL: backing.databaseUrl,
      REDIS_URL: backing.redisUrl,
      JWT_SECRET: randomBytes(48).toString('base64url'),
      JWT_TTL_SECONDS: '86400', // a scenario's sockets must not close for expiry (access tokens default to 15 minutes)
      LOG_LEVEL: 'warn',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      // The load comes from one address and a few accounts at rates no person sends: lift the budgets.
      ...LIFTED_BUDGETS,
    },
    `http://127.0.0.1:${port}/readyz`,
  );
  const httpUrl = `http://127.0.0.1:${port}/graphql`;
  const sender = await signUp(httpUrl);
  const roomIds = await inParallel(setup.rooms, async (n) => {
    const room = await gql(httpUrl, 'mutation($input: CreateRoomInput!) { createRoom(input: $input) { id } }', {
      input: { name: `bench ${sender.name} ${n}`, kind: 'PUBLIC' },
    }, sender.token);
    return room.createRoom.id as string;
  });
  const subscriberTokens: string[] = [];
  for (let i = 0; i < SUBSCRIBER_USERS; i++) subscriberTokens.push((await signUp(httpUrl)).token);
  // Each (user, room) pair some subscriber connection has, joined once.
  const pairs = new Set<string>();
  for (let j = 0; j < Math.max(setup.connections, SUBSCRIBER_USERS); j++) pairs.add(`${j % SUBSCRIBER_USERS} ${j % setup.rooms}`);
  const joins = [...pairs].map((pair) => pair.split(' ').map(Number));
  await inParallel(joins.length, async (n) => {
    const [user, room] = joins[n];
    await gql(httpUrl, 'mutation($roomId: ID!) { joinRoom(roomId: $roomId) { id } }', { roomId: roomIds[room] }, subscriberTokens[user]);
  });
  return {
    name: 'ours',
    server,
    target: { system: 'ours', httpUrl, wsUrl: `ws://127.0.0.1:${port}/graphql`, roomId: roomIds[0], roomIds, senderToken: sender.token, subscriberTokens },
    async stop() {
      await server.stop();
      removeDataDir();
      forget();
    },
  };
}

/** Starts the reference Socket.IO server (`bench/socketio-server.ts`); its rooms are names `0`, `1`, …. */
export async function startReference(setup: Setup = { rooms: 1, connections: 0 }): Promise<RunningSystem> {
  const port = await freePort();
  const server = await startServerProcess('Socket.IO reference', 'bench/socketio-server.ts', { PORT: String(port) }, `http://127.0.0.1:${port}/healthz`);
  return {
    name: 'socketio',
    server,
    target: {
      system: 'socketio',
      httpUrl: `http://127.0.0.1:${port}`,
      wsUrl: '',
      roomId: '0',
      roomIds: Array.from({ length: setup.rooms }, (_, n) => String(n)),
      senderToken: '',
      subscriberTokens: [],
    },
    stop: () => server.stop(),
  };
}

/** `task(0)` … `task(count - 1)`, SETUP_CONCURRENCY at a time; the results in order. */
async function inParallel<T>(count: number, task: (n: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      results[n] = await task(n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(SETUP_CONCURRENCY, count) }, worker));
  return results;
}

async function signUp(url: string): Promise<{ name: string; token: string }> {
  const name = `bench_${randomBytes(5).toString('hex')}`;
  const data = await gql(url, 'mutation($input: SignUpInput!) { signUp(input: $input) { token } }', {
    input: { username: name, password: 'correct horse battery staple' },
  });
  return { name, token: data.signUp.token };
}

/** POSTs one GraphQL operation; resolves to `data`, throws on errors. */
export async function gql(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  if (body.errors?.length) throw new Error(`GraphQL errors (${res.status}): ${JSON.stringify(body.errors)}`);
  return body.data;
}
