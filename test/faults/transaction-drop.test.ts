// Fault: a database connection dies in the middle of a change's transaction (between its
// statements: the room row locked, the change not yet committed), as it does when PostgreSQL
// restarts or a proxy drops idle connections. The change must fail like any other database fault —
// SERVICE_UNAVAILABLE, retryable — and a retry must settle it (API.md: Errors; guarantees 8, 10).
// A private PostgreSQL: its backends are terminated here. The instance is a child process, as in
// postgres-outage.test.ts (the errors of Node's net module lose their class in jest's VM context).
import { createRoom, must, send, signUp } from '../support/harness';
import { sharedUrls, sql, startPostgres, type PrivatePostgres } from './support/backing';
import { killAllServers, startServerProcess, type ChildServer } from './support/child-server';
import { changeOnce, type ChangeOp, type ChangeOutcome } from './support/changes';
import { pause } from './support/traffic';

const WORKERS = 6;
/** How many transactions to cut: enough to hit one between two of its statements. */
const TERMINATIONS = 40;

let pg: PrivatePostgres;
let server: ChildServer;

beforeAll(async () => {
  pg = await startPostgres();
  server = await startServerProcess('T', { DATABASE_URL: pg.url, REDIS_URL: sharedUrls().redisUrl });
}, 90_000);

afterAll(async () => {
  await killAllServers();
  pg?.destroy();
}, 60_000);

it('answers SERVICE_UNAVAILABLE, never INTERNAL_SERVER_ERROR, when the connection of a change dies mid-transaction, and a retry settles it', async () => {
  const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
  const roomId = await createRoom(server.url, ada);
  await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
  const messages = await Promise.all([0, 1, 2].map((i) => send(server.url, ada, roomId, `target ${i}`)));

  // Each worker toggles its own reaction and edits its own text: every op is a real change.
  let cutting = true;
  const outcomes: Array<{ op: ChangeOp; outcome: ChangeOutcome }> = [];
  const work = async (w: number) => {
    const user = w % 2 ? bob : ada;
    for (let k = 0; cutting; k++) {
      const messageId = messages[k % messages.length].id;
      const op: ChangeOp =
        w % 3 === 0 && user === ada
          ? { kind: 'edit', messageId, body: `edit ${w}-${k}`, user }
          : { kind: k % 2 ? 'removeReaction' : 'addReaction', messageId, emoji: `:w${w}:`, user, tag: `w${w}`, n: 0 };
      outcomes.push({ op, outcome: await changeOnce(server.url, op) });
    }
  };
  const workers = Promise.all(Array.from({ length: WORKERS }, (_, w) => work(w)));

  // Cut the connections caught between two statements of a transaction, until enough were cut.
  let terminated = 0;
  const deadline = Date.now() + 30_000;
  while (terminated < TERMINATIONS && Date.now() < deadline) {
    const rows = await sql<{ pid: number }>(
      pg.url,
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`,
    );
    for (const { pid } of rows) {
      await sql(pg.url, 'SELECT pg_terminate_backend($1)', [pid]);
      terminated++;
    }
    if (rows.length === 0) await pause(1); // yield to the workers; the loop polls, it waits for no result
  }
  cutting = false;
  await workers;

  const failed = outcomes.filter((o): o is { op: ChangeOp; outcome: Extract<ChangeOutcome, { ok: false }> } => !o.outcome.ok);
  const codes: Record<string, number> = {};
  for (const { outcome } of failed) codes[outcome.code ?? outcome.error] = (codes[outcome.code ?? outcome.error] ?? 0) + 1;
  // The client's retry of each failed change, now that nothing is cut.
  const retried = await Promise.all(failed.map(({ op }) => changeOnce(server.url, op)));
  process.stdout.write(
    `${JSON.stringify({
      scenario: 'connections cut mid-transaction during changes',
      changes: outcomes.length,
      terminated,
      failed: failed.length,
      errorCodes: codes,
      retryFailures: retried.filter((r) => !r.ok).length,
      serverErrors: server.problems().map((l) => l.slice(0, 400)).slice(0, 3),
    })}\n`,
  );

  expect(terminated).toBeGreaterThanOrEqual(TERMINATIONS);
  expect(failed.length).toBeGreaterThan(0);
  expect(failed.filter(({ outcome }) => outcome.code !== 'SERVICE_UNAVAILABLE').map(({ op, outcome }) => ({ op: op.kind, code: outcome.code, error: outcome.error }))).toEqual([]);
  expect(retried.filter((r) => !r.ok)).toEqual([]);
}, 90_000);
