// Starting the real process (`src/main.ts`) as deployed: what an operator sees when it cannot
// start, and a stop asked for while it starts. Every line it writes is JSON.
import { execFileSync, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sharedUrls, startRedis, type PrivateRedis } from './support/backing';
import { waitFor } from '../support/harness';
import { killAllServers, spawnServer } from './support/child-server';

afterAll(() => killAllServers());

const lines = (output: string) => output.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line) as { level: number; msg: string });

it('fails to start on a database it cannot open with one fatal line naming DATABASE_URL, not its password, and exit 1', async () => {
  const c = await spawnServer('unreachable database', { DATABASE_URL: 'postgresql://chat:hunter2-secret@127.0.0.1:1/chat', REDIS_URL: '' });
  expect(await c.exited).toEqual({ code: 1, signal: null });
  const fatal = lines(c.output()).filter((line) => line.level === 60);
  expect(fatal.map((line) => line.msg)).toEqual([expect.stringMatching(/^Failed to start: cannot open the database \(DATABASE_URL\): connect ECONNREFUSED/)]);
  expect(c.output()).not.toContain('hunter2-secret');
}, 30_000);

it('refuses a bad setting with one fatal line naming it, and exit 2', async () => {
  const c = await spawnServer('bad setting', { JWT_TTL_SECONDS: 'soon' });
  expect(await c.exited).toEqual({ code: 2, signal: null });
  expect(lines(c.output()).map((line) => [line.level, line.msg])).toEqual([[60, expect.stringContaining('Invalid JWT_TTL_SECONDS')]]);
}, 30_000);

it('stops at once, exit 0, when asked to while it waits for Redis at start', async () => {
  let redis: PrivateRedis | undefined;
  try {
    redis = await startRedis();
    await redis.stop(); // its port, with nothing listening
    // On the shared PostgreSQL: with the embedded database it first spends seconds opening PGlite
    // (over 20 s on a busy CI machine), and this is about the wait for Redis that follows.
    const c = await spawnServer('stopped while starting', { DATABASE_URL: sharedUrls().databaseUrl, REDIS_URL: redis.url });
    // Before: no handler until it was ready, so SIGTERM killed it (or, as a container's first process, did nothing).
    await waitFor(() => c.output().includes('redis connection error'), 20_000); // waiting for Redis
    expect(c.running).toBe(true);
    c.process.kill('SIGTERM');
    expect(await c.exited).toEqual({ code: 0, signal: null });
    expect(lines(c.output()).some((line) => line.msg === 'stopped while starting')).toBe(true);
  } finally {
    await redis?.destroy();
  }
}, 30_000);

it('stops gracefully, exit 0, when asked to while it opens the embedded database (the event loop busy)', async () => {
  // The built server, as `npm start` runs it (under tsx the loop is read more often, and the loss below did not show),
  // built here as `npm start` builds it: a fresh checkout has no dist/, and an old one may be stale.
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: path.resolve(__dirname, '../..'), stdio: 'pipe' });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chat-startup-'));
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: path.resolve(__dirname, '../..'),
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  try {
    await waitFor(() => output.includes('opening the embedded database'), 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // PGlite's start under way
    child.kill('SIGTERM');
    // Before: the signal came in while the start kept the loop busy, was read only after the
    // startup's listener had been swapped for the running server's, and was lost: it served on.
    let late: NodeJS.Timeout | undefined;
    const exit = await Promise.race([exited, new Promise((resolve) => (late = setTimeout(() => resolve(`still running:\n${output}`), 60_000)))]);
    clearTimeout(late);
    expect(exit).toEqual({ code: 0, signal: null });
  } finally {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
}, 120_000);

it('stays up when clients reset the connections of upgrades it refuses, while it answers them (an unhandled socket error ended the process)', async () => {
  const c = await spawnServer('refused upgrades reset', { DATABASE_URL: sharedUrls().databaseUrl, REDIS_URL: '' });
  await c.ready();
  const url = new URL(c.url);
  for (let i = 0; i < 150; i++) {
    const target = ['/graphql/x', '/healthz', 'http://x/nothing'][i % 3];
    await new Promise<void>((resolve) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
        socket.resetAndDestroy(); // RST at once: the refusal is written to a connection that is gone
        resolve();
      });
      socket.on('error', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(c.running).toBe(true);
  expect((await fetch(c.url.replace('/graphql', '/healthz'))).status).toBe(200);
}, 60_000);
