// The real server as a child process (`node --import tsx src/main.ts`), as it is deployed: its own
// process, its own signals. Every child a test starts is killed at the end whatever happened.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LIFTED_BUDGETS, TEST_SECRET, waitFor } from '../../support/harness';
import { freePort } from './backing';

const ROOT = path.resolve(__dirname, '../../..');

export interface ChildServer {
  name: string;
  port: number;
  /** `http://127.0.0.1:<port>` */
  base: string;
  /** The GraphQL endpoint over HTTP and WebSocket. */
  url: string;
  wsUrl: string;
  process: ChildProcess;
  /** Resolves when the process exits, with its code or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Whether it has exited. */
  readonly running: boolean;
  /** Everything it wrote on stdout and stderr (pino JSON lines at LOG_LEVEL=warn, plus crashes). */
  output(): string;
  /** Its log lines at `minLevel` or above (pino: 50 error, 60 fatal) and anything that is not a log line. */
  problems(minLevel?: number): string[];
  /** Resolves once `GET /readyz` answers 200; rejects with the output if it exits or times out. */
  ready(timeoutMs?: number): Promise<void>;
  /** Kills it (SIGKILL) if it still runs, and waits for the exit. */
  kill(): Promise<void>;
}

const children = new Set<ChildServer>();
// Should the test process end without its afterAll (a crash), the servers do not outlive it.
process.once('exit', () => {
  for (const child of children) child.process.kill('SIGKILL');
});

/**
 * Spawns the server with PORT (free), HOST, DATABASE_URL, REDIS_URL, JWT_SECRET (the harness's, so
 * tokens from any instance work), LOG_LEVEL=warn and NODE_ENV=production (as deployed: the
 * process owns its signals), plus `env` (with `PORT`, on that port). Does not wait: call `ready()`.
 */
export async function spawnServer(name: string, env: Record<string, string>): Promise<ChildServer> {
  const port = env.PORT ? Number(env.PORT) : await freePort(); // a given PORT restarts a server in its place
  const { NODE_OPTIONS: _jestFlags, ...inherited } = process.env;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chat-child-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...inherited,
      NODE_ENV: 'production',
      PORT: String(port),
      HOST: '127.0.0.1',
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ...LIFTED_BUDGETS,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      rmSync(dataDir, { recursive: true, force: true });
      resolve({ code, signal });
    });
  });
  const base = `http://127.0.0.1:${port}`;
  const server: ChildServer = {
    name,
    port,
    base,
    url: `${base}/graphql`,
    wsUrl: `ws://127.0.0.1:${port}/graphql`,
    process: child,
    exited,
    get running() {
      return running;
    },
    output: () => output,
    problems: (minLevel = 50) =>
      output
        .split('\n')
        .filter((line) => line.trim())
        .filter((line) => {
          try {
            return (JSON.parse(line) as { level?: number }).level! >= minLevel;
          } catch {
            return true;
          }
        }),
    async ready(timeoutMs = 60_000) {
      await waitFor(
        async () => {
          if (!running) throw new Error(`${name} exited before it was ready:\n${output}`);
          try {
            return (await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200;
          } catch {
            return false;
          }
        },
        timeoutMs,
        () => `${name} not ready:\n${output}`,
      );
    },
    async kill() {
      if (running) child.kill('SIGKILL');
      await exited;
      children.delete(server);
    },
  };
  children.add(server);
  return server;
}

/** Spawns and waits until ready. */
export async function startServerProcess(name: string, env: Record<string, string>): Promise<ChildServer> {
  const server = await spawnServer(name, env);
  await server.ready();
  return server;
}

/** Kills every child still running (call from afterAll). */
export async function killAllServers(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
}

/** `/readyz` of a server: the status and the report. */
export async function readiness(base: string): Promise<{ status: number; body: { status?: string; database?: string; pubsub?: string } }> {
  try {
    const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: (await res.json()) as { database?: string; pubsub?: string } };
  } catch (err) {
    return { status: 0, body: { status: (err as Error).message } };
  }
}
