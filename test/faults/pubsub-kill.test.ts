// Fault: Redis pub/sub is at-most-once. The subscriber connections of both instances are killed
// again and again (CLIENT KILL TYPE pubsub) during a burst of 2,000 messages with edits,
// reactions, deletions and thread replies on earlier messages in between; the room hubs must
// notice the gaps (and re-read the tail after each reconnect and by timer) so that every
// subscriber still gets every message once, in seq order, and every roomEvents subscriber every
// change once, in change order, ending with the history's view (API.md guarantees 1, 2, 5, 8).
// A private Redis: the kills must not reach the other test files' connections.
import { Writable } from 'node:stream';
import Redis from 'ioredis';
import { FakeOpenAI } from '../support/fake-openai';
import { collect, must, send, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { followReply } from '../support/reply-recipe';
import { sharedUrls, startRedis, type PrivateRedis } from './support/backing';
import { ChangeTraffic } from './support/changes';
import { changeReport, tallyAdded } from './support/change-tally';
import { EventSubscriber } from './support/events';
import { expectClean, expectCleanChanges, report, tally } from './support/tally';
import { burst, Ledger, pause, roomWith, spread, Subscriber, settle, Subscribers } from './support/traffic';

const BURST = 2000;
const HEAL_INTERVAL_MS = 300;

/** The assistant's answer in the reply test: 60 pieces, 40 ms apart. */
const REPLY = Array.from({ length: 60 }, (_, i) => `p${i} `);

let redis: PrivateRedis;
let fake: FakeOpenAI;
let a: TestServer;
let b: TestServer;
let admin: Redis | undefined;
let naive: Redis | undefined;
const subscribers = new Subscribers();

/** The instances' warnings and errors, to tell what a failed request met (its request id is in both). */
const logged: string[] = [];
const logTo = new Writable({
  write(chunk, _encoding, done) {
    logged.push(String(chunk));
    done();
  },
});

beforeAll(async () => {
  redis = await startRedis();
  fake = new FakeOpenAI({ '[[long]]': { kind: 'stream', chunks: REPLY, delayMs: 40 } });
  await fake.start();
  const model = { OPENAI_API_KEY: 'sk-test-pubsub-kill', OPENAI_BASE_URL: fake.url, OPENAI_MODEL: 'fake' };
  const env = { REDIS_URL: redis.url, HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS), LOG_LEVEL: 'warn', ...model };
  [a, b] = await Promise.all([startServer(env, logTo), startServer(env, logTo)]);
}, 60_000);

afterAll(async () => {
  await subscribers.closeAll();
  await Promise.all([a?.stop(), b?.stop()]);
  admin?.disconnect();
  naive?.disconnect();
  await fake?.stop();
  await redis?.destroy();
}, 60_000);

it('delivers every message and every change once and in order to subscribers on two instances while their pub/sub connections are killed during a burst', async () => {
  const users = await Promise.all([0, 1, 2, 3].map(() => signUp(a.url)));
  const roomId = await roomWith(a.url, users);
  const servers = [a, b];
  const subs = users.map((user, i) => {
    const sub = subscribers.add(new Subscriber(`${i % 2 ? 'B' : 'A'}${i}`, roomId));
    sub.connect(servers[i % 2].wsUrl, user);
    return sub;
  });
  const eventSubs = users.slice(0, 2).map((user, i) => {
    const sub = subscribers.add(new EventSubscriber(`roomEvents ${i % 2 ? 'B' : 'A'}${i}`, roomId, user));
    sub.connect(servers[i % 2].wsUrl);
    return sub;
  });
  await waitFor(() => a.app.hubs.listeners(roomId) === 3 && b.app.hubs.listeners(roomId) === 3);

  // A plain pub/sub subscriber on the same topic, killed alongside: what pub/sub alone delivers.
  naive = new Redis(redis.url);
  const naiveSeqs = new Set<number>();
  const naiveChanges = new Set<number>();
  naive.on('message', (_channel: string, payload: string) => {
    // New messages come on the activity topic (of every room), later changes on the room's.
    const signal = JSON.parse(payload) as { kind?: string; message?: { roomId: string; seq: number; changeSeq: number; createdChange: number } };
    if ((signal.kind ?? 'change') !== 'change' || signal.message?.roomId !== roomId) return;
    naiveChanges.add(signal.message.changeSeq);
    if (signal.message.changeSeq === signal.message.createdChange) naiveSeqs.add(signal.message.seq);
  });
  await naive.subscribe(`room:${roomId}`, 'activity');
  admin = new Redis(redis.url);

  const ledger = new Ledger();
  const changes = new ChangeTraffic({ members: users, ratio: 0.1 }); // the longest burst of the suite: fewer changes keep it short
  const started = Date.now();
  const sending = burst({
    ledger,
    roomId,
    label: 'kill',
    count: BURST,
    concurrency: 8,
    target: (i) => ({ url: servers[i % 2].url, user: users[i % users.length] }),
    changes,
  });
  let sendingDone = false;
  void sending.done.finally(() => (sendingDone = true));
  // A client on a bad network: it drops about every second and resumes on the other instance with its last event cursor.
  const hopper = subscribers.add(new EventSubscriber('roomEvents hopper: A, B, A, … with its last event cursor', roomId, users[3]));
  hopper.connect(a.wsUrl);
  let kills = 0;
  let connectionsKilled = 0;
  while (!sendingDone) {
    await pause(150 + Math.random() * 150); // the interval between kills, not a wait for a result
    connectionsKilled += Number(await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
    kills++;
    if (kills % 4 === 0) {
      await hopper.disconnect();
      hopper.connect(servers[hopper.sessions % 2].wsUrl);
    }
  }
  await sending.done;
  const burstMs = Date.now() - started;

  const { databaseUrl } = sharedUrls();
  const truth = await settle(databaseUrl, roomId, [...subs, ...eventSubs, hopper], 2 * HEAL_INTERVAL_MS, 30_000);
  const changed = await changeReport(a.url, databaseUrl, changes, [...eventSubs, hopper]);

  const line = report(
    'pubsub connections killed during a burst',
    ledger.sent,
    [...subs.map((s) => tally(s.name, ledger.acked.values(), s.received)), ...[...eventSubs, hopper].map((s) => tallyAdded(s, ledger.acked.values()))],
    {
      instances: 2,
      concurrency: 8,
      kills,
      connectionsKilled,
      naivePubsubLost: ledger.sent - naiveSeqs.size,
      naivePubsubChangesLost: truth.lastChange - naiveChanges.size,
      sendFailures: ledger.failures.length,
      changeFailures: changes.failures.length,
      sendMs: spread(ledger.latencies),
      burstMs,
      catchUpMs: Date.now() - started - burstMs,
      hopperSessions: hopper.sessions,
    },
    changed,
  );
  // A failure comes with what the instance logged of it (a failed send once answered 503 in a full run).
  const explained = (failures: object[]) => failures.map((f) => ({ ...f, logged: logged.filter((line) => JSON.stringify(f).includes(JSON.parse(line).requestId ?? '-')) }));
  expect(explained(ledger.failures)).toEqual([]);
  expect(ledger.sent).toBe(BURST);
  expect(truth.messages.map((m) => m.seq)).toEqual(Array.from({ length: BURST }, (_, i) => i + 1));
  expect(new Set(truth.messages.map((m) => m.id))).toEqual(new Set(ledger.acked.keys()));
  expect(kills).toBeGreaterThanOrEqual(5);
  expect(connectionsKilled).toBeGreaterThan(kills); // both instances' subscribers (and the plain one) were hit
  expect(explained(changes.failures)).toEqual([]);
  expect(changes.pending).toEqual([]);
  expect(hopper.sessions).toBeGreaterThanOrEqual(5);
  const all = [...subs, ...eventSubs, { name: hopper.name, ended: 0, errors: hopper.errors }];
  expect(all.map((s) => ({ name: s.name, ended: s.ended, errors: s.errors }))).toEqual(all.map((s) => ({ name: s.name, ended: 0, errors: [] })));
  expectClean(line);
  expectCleanChanges(line);
}, 90_000);

it('streams an assistant reply on through pub/sub kills: a roomEvents subscriber on either instance is told the reply again past the deltas lost, and README\'s recipe has the whole text before its end', async () => {
  const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
  const roomId = await roomWith(a.url, [ada, bob]);
  const query = `subscription($roomId: ID!) { roomEvents(roomId: $roomId) { __typename
    ... on MessageAdded { message { id status body deltaCount } }
    ... on MessageUpdated { message { id status body deltaCount } }
    ... on AssistantDelta { messageId index text } } }`;
  const clients = [wsClient(a.wsUrl, bob), wsClient(b.wsUrl, bob)];
  try {
    const subs = clients.map((client) => collect(client, query, { roomId }));
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);
    const question = await send(a.url, ada, roomId, 'Tell me [[long]]');
    const reply = (await must(a.url, `mutation($m: ID!) { askAssistant(input: { messageId: $m }) { id } }`, { m: question.id }, ada.token)).askAssistant;
    const events = (i: number) => subs[i].results.map((r) => r.data?.roomEvents).filter((e) => (e.message?.id ?? e.messageId) === reply.id);
    const ended = (i: number) => events(i).some((e) => e.message && e.message.status !== 'STREAMING');
    admin ??= new Redis(redis.url);
    let kills = 0;
    while (!(ended(0) && ended(1))) {
      await pause(250 + Math.random() * 250); // the interval between kills, not a wait for a result
      if (!ended(0) || !ended(1)) kills += Math.sign(Number(await admin!.call('CLIENT', 'KILL', 'TYPE', 'pubsub')));
    }
    const text = REPLY.join('');
    let retold = 0;
    for (const i of [0, 1]) {
      const { beforeEnd, final, received, retold: told, inText } = followReply(events(i));
      retold += told; // told again past deltas lost
      expect({ instance: i, inText }).toEqual({ instance: i, inText: [] }); // no delta already in the text it had
      // Live to the end: every delta that came is in the text (before: none after the first loss was
      // appended), and what the end adds is at most the deltas lost after the last one that came.
      expect({ instance: i, beforeEnd: beforeEnd!.deltaCount >= received, body: text.startsWith(beforeEnd!.body) }).toEqual({ instance: i, beforeEnd: true, body: true });
      expect({ instance: i, received: received > REPLY.length / 2, final }).toEqual({ instance: i, received: true, final: { body: text, deltaCount: REPLY.length } });
    }
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(retold).toBeGreaterThan(0);
  } finally {
    await Promise.all(clients.map((client) => client.dispose()));
  }
}, 60_000);
