// Delivery under load across two instances (API.md guarantees 1, 2, 4, 5): ten senders racing
// into one room (with racing retries of the same clientId), and a subscriber that goes offline
// in the middle of a burst and resumes on the other instance with its last cursor.
// Nothing here stops PostgreSQL or Redis, so the shared ones serve.
import { signUp, startServer, waitFor, type TestServer, type TestUser } from '../support/harness';
import { sharedUrls } from './support/backing';
import { expectClean, report, tally } from './support/tally';
import { burst, Ledger, pause, roomWith, sendOnce, spread, Subscriber, settle, Subscribers } from './support/traffic';

const HEAL_INTERVAL_MS = 300;
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

let a: TestServer;
let b: TestServer;
const subscribers = new Subscribers();

beforeAll(async () => {
  [a, b] = await Promise.all([
    startServer({ HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS) }),
    startServer({ HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS) }),
  ]);
}, 60_000);

afterEach(() => subscribers.closeAll());

afterAll(async () => {
  await subscribers.closeAll();
  await Promise.all([a?.stop(), b?.stop()]);
}, 60_000);

it('numbers and delivers the messages of ten concurrent senders on two instances without gap, double or reorder', async () => {
  const SENDERS = 10;
  const EACH = 60;
  const users = await Promise.all(Array.from({ length: SENDERS }, () => signUp(a.url)));
  const roomId = await roomWith(a.url, users);
  const servers = [a, b];
  const subs = users.slice(0, 4).map((user, i) => {
    const sub = subscribers.add(new Subscriber(`${i % 2 ? 'B' : 'A'}${i}`, roomId));
    sub.connect(servers[i % 2].wsUrl, user);
    return sub;
  });
  await waitFor(() => a.app.hubs.listeners(roomId) === 2 && b.app.hubs.listeners(roomId) === 2);

  const ledger = new Ledger();
  let racedRetries = 0;
  const ownSeqs: number[][] = users.map(() => []);
  const started = Date.now();
  await Promise.all(
    users.map(async (user, j) => {
      for (let k = 0; k < EACH; k++) {
        const clientId = `ten-${j}-${k}`;
        const here = servers[(j + k) % 2];
        if (k % 10 === 9) {
          // A retry racing the original on the other instance: both must answer the same message.
          const there = servers[(j + k + 1) % 2];
          const [first, second] = await Promise.all([
            sendOnce({ url: here.url, user }, roomId, `sender ${j} message ${k}`, clientId),
            sendOnce({ url: there.url, user }, roomId, `sender ${j} message ${k}`, clientId),
          ]);
          ledger.record(first);
          ledger.record(second);
          racedRetries++;
          if (first.ok) ownSeqs[j].push(first.message.seq);
        } else {
          const outcome = ledger.record(await sendOnce({ url: here.url, user }, roomId, `sender ${j} message ${k}`, clientId));
          if (outcome.ok) ownSeqs[j].push(outcome.message.seq);
        }
      }
    }),
  );
  const sendMs = Date.now() - started;

  const truth = await settle(sharedUrls().databaseUrl, roomId, subs, 2 * HEAL_INTERVAL_MS);

  const line = report(
    'ten concurrent senders into one room',
    ledger.sent,
    subs.map((s) => tally(s.name, ledger.acked.values(), s.received)),
    { instances: 2, senders: SENDERS, racedRetries, conflictingRetries: ledger.conflicting.length, sendFailures: ledger.failures.length, sendMs: spread(ledger.latencies), burstMs: sendMs },
  );
  expect(ledger.failures).toEqual([]);
  expect(ledger.conflicting).toEqual([]); // guarantee 4: a racing retry answers the first message
  expect(ledger.sent).toBe(SENDERS * EACH);
  expect(truth.messages.map((m) => m.seq)).toEqual(range(SENDERS * EACH));
  expect(new Set(truth.messages.map((m) => m.clientId)).size).toBe(SENDERS * EACH);
  // Each sender waited for every answer, so its own messages got increasing seqs (commit order = seq order).
  for (const seqs of ownSeqs) expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
  expect(subs.map((s) => s.errors)).toEqual(subs.map(() => []));
  expectClean(line);
}, 90_000);

it('resumes a subscriber that was offline during a burst, on the other instance, with its last cursor', async () => {
  const [ada, bob, carol] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url)]);
  const roomId = await roomWith(a.url, [ada, bob, carol]);
  const traveller = subscribers.add(new Subscriber('bob: A, offline, then B', roomId));
  const steady = subscribers.add(new Subscriber('carol: B throughout', roomId));
  traveller.connect(a.wsUrl, bob);
  steady.connect(b.wsUrl, carol);
  await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);

  const ledger = new Ledger();
  const senders: TestUser[] = [ada, carol];
  const sending = burst({
    ledger,
    roomId,
    label: 'offline',
    concurrency: 4,
    target: (i) => ({ url: [a, b][i % 2].url, user: senders[i % 2] }),
  });
  try {
    await waitFor(() => traveller.received.length >= 150, 30_000);
    await traveller.disconnect();
    const wentOffline = Date.now();
    const seenBeforeOffline = traveller.lastSeq;
    const sentBeforeOffline = ledger.sent;
    await waitFor(() => ledger.sent >= sentBeforeOffline + 300, 30_000);
    const offlineFor = Date.now() - wentOffline;
    if (offlineFor < 1000) await pause(1000 - offlineFor); // stay away for a while (several heal intervals)
    const missedWhileOffline = ledger.lastSeq - seenBeforeOffline;
    const offlineMs = Date.now() - wentOffline;
    traveller.connect(b.wsUrl, bob); // resumes after its last cursor while the burst goes on
    await waitFor(() => traveller.sessions === 2 && traveller.received.some((m) => m.session === 2), 30_000);
    const resumedAt = ledger.sent;
    await waitFor(() => ledger.sent >= resumedAt + 200, 30_000);
    await sending.stop();

    const truth = await settle(sharedUrls().databaseUrl, roomId, [traveller, steady], 2 * HEAL_INTERVAL_MS);

    const line = report(
      'client offline for a while resumes with after',
      ledger.sent,
      [tally(traveller.name, ledger.acked.values(), traveller.received), tally(steady.name, ledger.acked.values(), steady.received)],
      {
        instances: 2,
        offlineMs,
        resumedAfterSeq: seenBeforeOffline,
        missedWhileOffline,
        sendFailures: ledger.failures.length,
        sendMs: spread(ledger.latencies),
      },
    );
    expect(ledger.failures).toEqual([]);
    expect(missedWhileOffline).toBeGreaterThanOrEqual(300);
    expect(truth.messages.map((m) => m.seq)).toEqual(range(ledger.sent));
    expect([traveller.errors, steady.errors]).toEqual([[], []]);
    expectClean(line);
  } finally {
    await sending.stop();
  }
}, 90_000);
