// The client kit (Apollo Client 4 + createChatLink, `ws` under Node) subscribed to one room's
// messageAdded and roomEvents while another client sends 500 messages and 50 edits and the server is SIGTERM'd,
// restarted on the same port, SIGKILL'd, restarted again, and finally replaced by another instance
// on the same PostgreSQL and Redis (docs/guarantees.md, "Sessions and the client kit"). Every message must reach
// the application exactly once, in order, every change at most once in change order, the last state
// the application saw of each message must be the database's, and no error may surface.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { EditMessageDocument, SendMessageDocument } from '../../client';
import jwt from 'jsonwebtoken';
import { must, signUp, TEST_SECRET, waitFor, type TestUser } from '../support/harness';
import { closeKitClients, kitClient, logInSession, tally, tallyEvents, watchEvents, watchMessages } from '../kit/support';
import { sharedUrls, sql } from './support/backing';
import { killAllServers, spawnServer, type ChildServer } from './support/child-server';
import { pause, roomStart, roomWith } from './support/traffic';

jest.setTimeout(240_000);

const TOTAL = 500;
let env: Record<string, string>;
let current: ChildServer;

beforeAll(async () => {
  const { databaseUrl, redisUrl } = sharedUrls();
  // 5-second access tokens: they expire while a server is down, so the kit must refresh on the way back.
  env = { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, HEAL_INTERVAL_MS: '300', JWT_TTL_SECONDS: '5' };
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
  const follow: typeof fetch = (_url, init) => fetch(current.url, init);
  const moving = kitClient(current.url, () => current.wsUrl, session, { fetch: follow });
  // For comparison, what GraphQLWsLink does on its own: graphql-ws retrying (here without giving up)
  // and re-sending the subscription's original variables. Counted, not asserted. It gets an hour-long
  // token of the reader's session (signed with the test secret), so only resuming is compared.
  const { sid } = jwt.decode(session.token) as { sid: string };
  const longToken = jwt.sign({ sid }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: readerUser.id, expiresIn: 3600 });
  const naiveSeqs: number[] = [];
  const naive = createClient({
    url: () => current.wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: () => pause(250),
    connectionParams: () => ({ authorization: `Bearer ${longToken}` }),
  });
  naive.subscribe({ query: `subscription($r: ID!) { messageAdded(roomId: $r) { seq } }`, variables: { r: roomId } }, {
    next: (r) => naiveSeqs.push((r.data as { messageAdded: { seq: number } }).messageAdded.seq),
    error: () => undefined,
    complete: () => undefined,
  });

  // From the room's start, so nothing sent before the subscriptions reached the server is missed.
  const messages = watchMessages(moving, roomId, roomStart(roomId));
  const events = watchEvents(moving, roomId, roomStart(roomId));
  await waitFor(async () => (await must(current.url, `{ room(id: "${roomId}") { lastSeq } }`, {}, readerUser.token)).room && moving.sockets() > 0, 10_000);

  let acked = 0;
  let failedAttempts = 0;
  let edits = 0;
  const ids: string[] = [];
  /** Retries an operation until the server (whichever is current) answers it. */
  const persist = async <T>(attempt: () => Promise<T | undefined>): Promise<T> => {
    for (;;) {
      const result = await attempt().catch(() => undefined);
      if (result !== undefined) return result;
      failedAttempts++;
      await pause(100); // the server is down or restarting: the same request again (idempotent)
    }
  };
  // The sender runs on the kit too (its 5-second token is refreshed as it goes), over HTTP only.
  const senderKit = kitClient(current.url, () => current.wsUrl, await logInSession(current.url, sender.username), { fetch: follow });
  const sending = (async () => {
    for (let i = 1; i <= TOTAL; i++) {
      // The same clientId again after a failure (docs/guarantees.md, guarantee 4).
      const sent = await persist(async () => (await senderKit.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: `m${i}`, clientId: `k${i}` } } })).data?.sendMessage);
      ids.push(sent.id);
      acked = i;
      if (i % 10 === 0) {
        // An edit of a message five back: the same text again is no change, so a retry is safe.
        const messageId = ids[i - 6];
        await persist(async () => (await senderKit.client.mutate({ mutation: EditMessageDocument, variables: { input: { messageId, body: `m${i - 5} (edited)` } } })).data?.editMessage);
        edits++;
      }
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
  const truth = new Map((await sql<{ id: string; body: string }>(env.DATABASE_URL, 'SELECT id, body FROM messages WHERE room_id = $1', [roomId])).map((r) => [r.id, r.body]));
  await events.until(() => tallyEvents(events.items, TOTAL, truth).stale === 0, 60_000).catch(() => undefined);
  await pause(1000); // a late duplicate would show now

  const counts = { messageAdded: tally(messages.items.map((m) => m.seq), TOTAL), roomEvents: tallyEvents(events.items, TOTAL, truth) };
  const naiveCounts = tally(naiveSeqs, TOTAL);
  await Promise.resolve(naive.dispose()).catch(() => undefined);
  console.log(JSON.stringify({ scenario: 'kit through SIGTERM, SIGKILL, restarts and a move (5 s tokens)', sent: TOTAL, edits, steps, failedAttempts, sockets: moving.sockets(), refreshes: moving.changes.length, ...counts, withoutTheKit: naiveCounts }));
  expect(counts.messageAdded).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
  expect(counts.roomEvents).toMatchObject({ delivered: TOTAL, lost: 0, duplicated: 0, changesOutOfOrder: 0, stale: 0 }); // change order, not seq order
  expect(counts.roomEvents.updates).toBeGreaterThan(0);
  expect(edits).toBe(TOTAL / 10);
  expect(messages.items.map((m) => m.seq)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
  expect([...messages.errors, ...events.errors]).toEqual([]);
  expect(moving.ended).toEqual([]);
  expect(moving.changes.length).toBeGreaterThanOrEqual(1); // the run outlives a 5-second token: it was refreshed
  expect(moving.sockets()).toBeGreaterThanOrEqual(4);

});
