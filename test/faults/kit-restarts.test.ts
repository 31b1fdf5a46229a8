// The client kit (Apollo Client 4 + createChatLink, `ws` under Node) subscribed to one room's
// messageAdded and roomEvents while another client sends 500 messages and the server is SIGTERM'd,
// restarted on the same port, SIGKILL'd, restarted again, and finally replaced by another instance
// on the same PostgreSQL and Redis (API.md, "The client kit"; issue 8). Every message must reach
// the application exactly once, in order, with no error surfaced.
import { must, signUp, waitFor, type TestUser } from '../support/harness';
import { closeKitClients, kitClient, logInSession, tally, watchEvents, watchMessages } from '../kit/support';
import { sharedUrls } from './support/backing';
import { killAllServers, spawnServer, type ChildServer } from './support/child-server';
import { pause, roomStart, roomWith, sendOnce } from './support/traffic';

jest.setTimeout(240_000);

const TOTAL = 500;
let env: Record<string, string>;
let current: ChildServer;

beforeAll(async () => {
  const { databaseUrl, redisUrl } = sharedUrls();
  env = { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, HEAL_INTERVAL_MS: '300' };
  current = await spawnServer('A', env);
  await current.ready();
}, 90_000);

afterAll(async () => {
  await closeKitClients();
  await killAllServers();
}, 60_000);

/** Starts a server (on `port` when given: a restart in place) and makes it the current one. */
async function replaceWith(name: string, port?: number) {
  const next = await spawnServer(name, { ...env, ...(port ? { PORT: String(port) } : {}) });
  await next.ready();
  current = next;
}

it('keeps a kit subscription through SIGTERM, SIGKILL, restarts on the same port and a move to another instance: 500 messages, each once, in order', async () => {
  const sender: TestUser = await signUp(current.url);
  const readerUser = await signUp(current.url);
  const roomId = await roomWith(current.url, [sender, readerUser]);
  const session = await logInSession(current.url, readerUser.username);

  // The kit asks where to connect at each (re)connect, as behind a load balancer; HTTP (refreshes) follows too.
  const moving = kitClient(current.url, () => current.wsUrl, session, { fetch: (_url, init) => fetch(current.url, init) });
  // From the room's start, so nothing sent before the subscriptions reached the server is missed.
  const messages = watchMessages(moving, roomId, roomStart(roomId));
  const events = watchEvents(moving, roomId, roomStart(roomId));
  await waitFor(async () => (await must(current.url, `{ room(id: "${roomId}") { lastSeq } }`, {}, readerUser.token)).room && moving.sockets() > 0, 10_000);

  let acked = 0;
  let failedAttempts = 0;
  const sending = (async () => {
    for (let i = 1; i <= TOTAL; i++) {
      for (;;) {
        const outcome = await sendOnce({ url: current.url, user: sender }, roomId, `m${i}`, `k${i}`, 5000);
        if (outcome.ok) break;
        failedAttempts++;
        await pause(100); // the server is down or restarting: the same clientId again (API.md guarantee 4)
      }
      acked = i;
      if (i % 25 === 0) await pause(20);
    }
  })();

  const steps: string[] = [];
  const at = (n: number) => waitFor(() => acked >= n, 120_000);
  const stopped = async (signal: NodeJS.Signals) => {
    const exit = current.exited;
    current.process.kill(signal);
    return exit;
  };

  await at(80);
  const sigterm = await stopped('SIGTERM');
  steps.push(`SIGTERM → exit ${sigterm.code ?? sigterm.signal}`);
  await pause(1000); // reconnects are refused meanwhile
  await replaceWith('A (restarted after SIGTERM)', current.port);

  await at(200);
  const sigkill = await stopped('SIGKILL');
  steps.push(`SIGKILL → ${sigkill.signal}`);
  await pause(1000);
  await replaceWith('A (restarted after SIGKILL)', current.port);

  await at(320);
  const old = current;
  await replaceWith('B'); // another instance on another port, same database and Redis
  steps.push(`moved from :${old.port} to :${current.port}`);
  old.process.kill('SIGTERM');
  await old.exited;

  await sending;
  await messages.until(() => messages.items.length >= TOTAL, 60_000).catch(() => undefined);
  await events.until(() => events.items.length >= TOTAL, 60_000).catch(() => undefined);
  await pause(1000); // a late duplicate would show now

  const counts = { messageAdded: tally(messages.items.map((m) => m.seq), TOTAL), roomEvents: tally(events.items.map((e) => e.seq!), TOTAL) };
  console.log(JSON.stringify({ scenario: 'kit through SIGTERM, SIGKILL, restarts and a move', sent: TOTAL, steps, failedAttempts, sockets: moving.sockets(), ...counts }));
  expect(counts.messageAdded).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
  expect(counts.roomEvents).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
  expect(messages.items.map((m) => m.body)).toEqual(Array.from({ length: TOTAL }, (_, i) => `m${i + 1}`));
  expect([...messages.errors, ...events.errors]).toEqual([]);
  expect(moving.ended).toEqual([]);
  expect(moving.sockets()).toBeGreaterThanOrEqual(4);

});
