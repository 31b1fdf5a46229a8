// Delivery under load across two instances (API.md guarantees 1, 2, 4, 5): ten senders racing
// into one room (with racing retries of the same clientId), and a subscriber that goes offline
// in the middle of a burst (of messages, edits, reactions, deletions and replies) and resumes on the
// other instance with its last cursor — a message cursor for messageAdded, an event cursor for
// roomEvents — and a roomEvents client that comes back with an old message cursor (guarantee 8).
// Nothing here stops PostgreSQL or Redis, so the shared ones serve.
import { signUp, startServer, waitFor, type TestServer, type TestUser } from '../support/harness';
import { sharedUrls } from './support/backing';
import { changeOnce, ChangeTraffic } from './support/changes';
import { changeReport, tallyAdded } from './support/change-tally';
import { EventSubscriber } from './support/events';
import { expectClean, expectCleanChanges, report, tally } from './support/tally';
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

it('resumes subscribers that were offline during a burst of messages and changes, on the other instance, with their last message or event cursor, and one with an old message cursor', async () => {
  const [ada, bob, carol] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url)]);
  const roomId = await roomWith(a.url, [ada, bob, carol]);
  const ledger = new Ledger();
  const changes = new ChangeTraffic({ members: [ada, bob, carol] });
  // A history before anyone subscribes: the old message cursor below points into it.
  for (let i = 0; i < 20; i++) {
    const outcome = ledger.record(await sendOnce({ url: a.url, user: ada }, roomId, `history ${i}`, `history-${i}`));
    if (outcome.ok) changes.noteSent(outcome.message, ada);
  }
  const oldCursor = ledger.messages()[9];
  // Two of the messages before that cursor change after it: a resume from it must bring them.
  const [third, fifth] = [ledger.messages()[2], ledger.messages()[4]];
  const early = await Promise.all([
    changeOnce(a.url, { kind: 'edit', messageId: third.id, body: 'history 2, edited before the burst', user: ada }),
    changeOnce(a.url, { kind: 'addReaction', messageId: fifth.id, emoji: '👍', user: bob, tag: 'none', n: 0 }),
  ]);
  expect(early.map((c) => c.ok)).toEqual([true, true]);

  const traveller = subscribers.add(new Subscriber('bob: A, offline, then B', roomId));
  const steady = subscribers.add(new Subscriber('carol: B throughout', roomId));
  const eventTraveller = subscribers.add(new EventSubscriber('roomEvents bob: A, offline, then B with its last event cursor', roomId, bob));
  const eventSteady = subscribers.add(new EventSubscriber('roomEvents carol: B throughout', roomId, carol));
  const eventLate = subscribers.add(new EventSubscriber(`roomEvents ada: B from the old message cursor of seq ${oldCursor.seq}`, roomId, ada, oldCursor.cursor));
  traveller.connect(a.wsUrl, bob);
  steady.connect(b.wsUrl, carol);
  eventTraveller.connect(a.wsUrl);
  eventSteady.connect(b.wsUrl);
  await waitFor(() => a.app.hubs.listeners(roomId) === 2 && b.app.hubs.listeners(roomId) === 2);

  const senders: TestUser[] = [ada, carol];
  const sending = burst({
    ledger,
    roomId,
    label: 'offline',
    concurrency: 4,
    target: (i) => ({ url: [a, b][i % 2].url, user: senders[i % 2] }),
    changes,
  });
  try {
    await waitFor(() => traveller.received.length >= 150 && eventTraveller.events.length >= 150 && changes.acked.length >= 30, 30_000);
    await Promise.all([traveller.disconnect(), eventTraveller.disconnect()]);
    const changesBeforeOffline = changes.acked.length;
    const wentOffline = Date.now();
    const seenBeforeOffline = traveller.lastSeq;
    // Counted from what it had seen: a message can reach a subscriber before its sender has the answer.
    await waitFor(() => ledger.lastSeq >= seenBeforeOffline + 300, 30_000);
    const offlineFor = Date.now() - wentOffline;
    if (offlineFor < 1000) await pause(1000 - offlineFor); // stay away for a while (several heal intervals)
    const missedWhileOffline = ledger.lastSeq - seenBeforeOffline;
    const changesWhileOffline = changes.acked.length - changesBeforeOffline;
    const offlineMs = Date.now() - wentOffline;
    traveller.connect(b.wsUrl, bob); // resumes after its last cursor while the burst goes on
    eventTraveller.connect(b.wsUrl); // resumes after the cursor of the last event it received
    eventLate.connect(b.wsUrl); // comes back with a message cursor from long ago
    await waitFor(() => traveller.received.some((m) => m.session === 2) && eventTraveller.events.some((e) => e.session === 2) && eventLate.events.length > 0, 30_000);
    const resumedAt = ledger.sent;
    await waitFor(() => ledger.sent >= resumedAt + 200, 30_000);
    await sending.stop();

    const { databaseUrl } = sharedUrls();
    const eventSubs = [eventTraveller, eventSteady, eventLate];
    const truth = await settle(databaseUrl, roomId, [traveller, steady, ...eventSubs], 2 * HEAL_INTERVAL_MS);
    const changed = await changeReport(a.url, databaseUrl, changes, eventSubs);

    const line = report(
      'client offline for a while resumes with after',
      ledger.sent,
      [
        tally(traveller.name, ledger.acked.values(), traveller.received),
        tally(steady.name, ledger.acked.values(), steady.received),
        tallyAdded(eventTraveller, ledger.acked.values()),
        tallyAdded(eventSteady, ledger.acked.values()),
        tallyAdded(eventLate, ledger.acked.values(), oldCursor.seq),
      ],
      {
        instances: 2,
        offlineMs,
        resumedAfterSeq: seenBeforeOffline,
        missedWhileOffline,
        changesWhileOffline,
        eventResumedAfter: eventTraveller.resumedAfter[1],
        oldMessageCursorSeq: oldCursor.seq,
        olderMessagesReplayedAsUpdated: eventLate.events.filter((e) => e.message.seq <= oldCursor.seq).length,
        sendFailures: ledger.failures.length,
        changeFailures: changes.failures.length,
        sendMs: spread(ledger.latencies),
      },
      changed,
    );
    expect(ledger.failures).toEqual([]);
    expect(changes.failures).toEqual([]);
    expect(missedWhileOffline).toBeGreaterThanOrEqual(300);
    expect(changesWhileOffline).toBeGreaterThan(0);
    expect(eventTraveller.resumedAfter[1]).toBe(eventTraveller.events.filter((e) => e.session === 1).at(-1)!.cursor);
    expect(truth.messages.map((m) => m.seq)).toEqual(range(ledger.sent));
    // From the old message cursor: the older messages only as changed since, never as added.
    const older = eventLate.events.filter((e) => e.message.seq <= oldCursor.seq);
    expect(older.filter((e) => e.kind !== 'MessageUpdated')).toEqual([]);
    expect(older.map((e) => e.message.seq)).toEqual(expect.arrayContaining([third.seq, fifth.seq]));
    expect([traveller, steady, ...eventSubs].map((s) => ({ name: s.name, errors: s.errors }))).toEqual([traveller, steady, ...eventSubs].map((s) => ({ name: s.name, errors: [] })));
    expectClean(line);
    expectCleanChanges(line);
  } finally {
    await sending.stop();
  }
}, 90_000);
