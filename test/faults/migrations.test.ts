// Fault: several instances (child processes) start at once on one empty database. Migrations run
// under a PostgreSQL advisory lock, so they run once, and every instance comes up and serves.
// A fresh database on the shared PostgreSQL (created and dropped here) is enough: nothing is stopped.
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { migrations } from '../../src/db/migrations';
import { must, signUp } from '../support/harness';
import { sharedUrls, sql } from './support/backing';
import { killAllServers, spawnServer } from './support/child-server';
import { pause } from './support/traffic';

const INSTANCES = 4;

afterAll(() => killAllServers(), 30_000);

const withDatabase = (url: string, name: string) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};

it('runs the migrations once and brings every instance up when four start together on an empty database', async () => {
  const { databaseUrl, redisUrl } = sharedUrls();
  const name = `chat_fresh_${randomBytes(5).toString('hex')}`;
  const adminUrl = withDatabase(databaseUrl, 'postgres');
  const freshUrl = withDatabase(databaseUrl, name);
  await sql(adminUrl, `CREATE DATABASE ${name}`);
  try {
    const started = Date.now();
    const servers = await Promise.all(
      Array.from({ length: INSTANCES }, (_, i) => spawnServer(`M${i}`, { DATABASE_URL: freshUrl, REDIS_URL: redisUrl })),
    );
    // Watch the advisory lock while they start: instances queued behind it show the race was real.
    let waitersSeen = 0;
    let starting = true;
    const watcher = new Client({ connectionString: freshUrl });
    await watcher.connect();
    const watching = (async () => {
      while (starting) {
        const { rows } = await watcher.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
        waitersSeen = Math.max(waitersSeen, rows[0].n);
        await pause(20);
      }
    })();
    const ready = await Promise.allSettled(servers.map((s) => s.ready(90_000)));
    const readyMs = Date.now() - started;
    starting = false;
    await watching.finally(() => watcher.end());
    const applied = await sql<{ name: string; runs: number }>(freshUrl, 'SELECT name, count(*)::int AS runs FROM migrations GROUP BY name ORDER BY name');
    const expected = migrations.map((M) => ({ name: new M().name as string, runs: 1 })).sort((x, y) => x.name.localeCompare(y.name));

    // Every instance serves, on the one schema: a user made on one is known to all.
    const user = await signUp(servers[0].url);
    const seen = await Promise.all(servers.map(async (s) => (await must(s.url, '{ me { id } }', {}, user.token)).me?.id));

    process.stdout.write(
      `${JSON.stringify({
        scenario: 'instances start at once on an empty database',
        instances: INSTANCES,
        ready: ready.filter((r) => r.status === 'fulfilled').length,
        readyMs,
        advisoryLockWaitersSeen: waitersSeen,
        migrations: applied,
        serverErrors: servers.flatMap((s) => s.problems().map((l) => `${s.name}: ${l.slice(0, 300)}`)).slice(0, 5),
      })}\n`,
    );
    expect(ready.map((r) => (r.status === 'fulfilled' ? 'ready' : String(r.reason).slice(0, 2000)))).toEqual(servers.map(() => 'ready'));
    expect(applied).toEqual(expected);
    expect(seen).toEqual(servers.map(() => user.id));
  } finally {
    await killAllServers();
    await sql(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}, 120_000);
