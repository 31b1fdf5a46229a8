// Fault: SIGTERM on one of two instances (child processes, as deployed) in the middle of a burst.
// It must stop accepting, close WebSockets with 1001, finish the HTTP request in flight, end the
// assistant reply it was streaming FAILED with a reason, release everything and exit 0 in bounded
// time; its subscribers resume on the other instance with their last cursor (a message cursor for
// messageAdded, an event cursor for roomEvents) and lose no message and no edit, reaction or
// deletion made during the burst (API.md guarantees 1, 2, 4, 5, 7, 8). Nothing here stops PostgreSQL or Redis: the shared ones serve.
import http from 'node:http';
import { collect, must, signUp, waitFor, wsClient, type TestUser } from '../support/harness';
import { FakeOpenAI } from '../support/fake-openai';
import { sharedUrls } from './support/backing';
import { killAllServers, spawnServer, type ChildServer } from './support/child-server';
import { ChangeTraffic } from './support/changes';
import { changeReport, tallyAdded } from './support/change-tally';
import { EventSubscriber } from './support/events';
import { expectClean, expectCleanChanges, report, tally } from './support/tally';
import { burst, Ledger, roomWith, sendOnce, spread, Subscriber, settle, Subscribers, within, type Acked, type SendOutcome } from './support/traffic';

const HEAL_INTERVAL_MS = 300;
const SHUTDOWN_BOUND_MS = 15_000;

let fake: FakeOpenAI;
let c1: ChildServer;
let c2: ChildServer;
const subscribers = new Subscribers();

beforeAll(async () => {
  // A reply that streams for 15 s: still streaming when the instance is told to stop.
  fake = new FakeOpenAI({ 'slow question': { kind: 'stream', chunks: Array.from({ length: 300 }, (_, i) => `w${i} `), delayMs: 50 } });
  await fake.start();
  const { databaseUrl, redisUrl } = sharedUrls();
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS),
    OPENAI_API_KEY: 'test',
    OPENAI_BASE_URL: fake.url,
    OPENAI_MAX_RETRIES: '0',
  };
  [c1, c2] = await Promise.all([spawnServer('C1', env), spawnServer('C2', env)]);
  await Promise.all([c1.ready(), c2.ready()]);
}, 90_000);

afterAll(async () => {
  await subscribers.closeAll();
  await killAllServers();
  await fake?.stop();
}, 60_000);

const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq cursor clientId } }`;
const ASK = `mutation($m: ID!) { askAssistant(input: { messageId: $m }) { id seq status } }`;
const THREAD = `query($r: ID!, $t: ID!) { messages(roomId: $r, threadId: $t) { edges { node { id status statusReason author { isAssistant } } } } }`;
const ROOM_EVENTS = `subscription($r: ID!) { roomEvents(roomId: $r) { __typename ... on MessageUpdated { message { id status statusReason } } } }`;

/**
 * A sendMessage whose headers reach the server (it answers 100 Continue, so the request is in
 * flight) but whose body is sent only on `finish()`: a request the shutdown must wait for.
 */
function slowSend(server: ChildServer, user: TestUser, roomId: string, clientId: string) {
  const body = JSON.stringify({ query: SEND, variables: { input: { roomId, body: 'in flight during SIGTERM', clientId } } });
  const req = http.request({
    host: '127.0.0.1',
    port: server.port,
    path: '/graphql',
    method: 'POST',
    agent: false,
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      authorization: `Bearer ${user.token}`,
      expect: '100-continue',
    },
  });
  const started = Date.now();
  const continued = new Promise<void>((resolve, reject) => {
    req.once('continue', resolve);
    req.once('error', reject);
  });
  const response = new Promise<SendOutcome>((resolve) => {
    req.once('error', (err) => resolve({ ok: false, clientId, url: server.url, ms: Date.now() - started, network: true, error: err.message }));
    req.once('response', (res) => {
      let raw = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (raw += chunk));
      res.on('end', () => {
        const ms = Date.now() - started;
        try {
          const answer = JSON.parse(raw) as { data?: { sendMessage?: Acked }; errors?: Array<{ message: string; extensions?: { code?: string } }> };
          const message = answer.data?.sendMessage;
          const first = answer.errors?.[0];
          resolve(message ? { ok: true, message, ms } : { ok: false, clientId, url: server.url, ms, status: res.statusCode, code: first?.extensions?.code, error: first?.message ?? 'no data', raw });
        } catch {
          resolve({ ok: false, clientId, url: server.url, ms, status: res.statusCode, error: 'the answer is not JSON', raw });
        }
      });
    });
  });
  req.flushHeaders();
  return { continued, response, finish: () => req.end(body) };
}

/** What a new connection to `port` gets: an HTTP status, or the connection error's code. */
function connectAnew(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(`HTTP ${res.statusCode}`);
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

it('SIGTERM on one of two instances: 1001 to its WebSockets, no new connection, its in-flight request answered, its assistant reply FAILED, exit 0; its subscribers resume on the other with no loss of messages or changes', async () => {
  const [ada, bob, carol, dan] = await Promise.all([0, 1, 2, 3].map(() => signUp(c2.url)));
  const roomId = await roomWith(c2.url, [ada, bob, carol, dan]);
  const traveller = subscribers.add(new Subscriber('bob: C1 until SIGTERM, then C2', roomId));
  const steady = subscribers.add(new Subscriber('carol: C2 throughout', roomId));
  const eventTraveller = subscribers.add(new EventSubscriber('roomEvents dan: C1 until SIGTERM, then C2 with its last event cursor', roomId, dan));
  const eventSteady = subscribers.add(new EventSubscriber('roomEvents ada: C2 throughout', roomId, ada));
  traveller.connect(c1.wsUrl, bob);
  steady.connect(c2.wsUrl, carol);
  eventTraveller.connect(c1.wsUrl);
  eventSteady.connect(c2.wsUrl);

  // An assistant reply streaming on C1, watched from C2.
  const assistantRoom = await roomWith(c2.url, [ada]);
  const watcher = wsClient(c2.wsUrl, ada);
  const events = collect(watcher, ROOM_EVENTS, { r: assistantRoom });
  try {
    const question = await sendOnce({ url: c1.url, user: ada }, assistantRoom, 'slow question', 'slow-question');
    if (!question.ok) throw new Error(`could not send the question: ${question.error}`);
    const reply = (await must(c1.url, ASK, { m: question.message.id }, ada.token)).askAssistant as { id: string; status: string };
    expect(reply.status).toBe('STREAMING');
    await waitFor(async () => {
      const rows = (await must(c2.url, THREAD, { r: assistantRoom, t: question.message.id }, ada.token)).messages.edges;
      return rows.some((e: { node: { id: string; status: string } }) => e.node.id === reply.id && e.node.status === 'STREAMING') && fake.requests.length > 0;
    }, 15_000);

    // The burst: both instances until SIGTERM, then only C2; a send that fails on C1 as it goes
    // away is retried on C2 with the same clientId, as a client would.
    let live = [c1, c2];
    const senders = [ada, dan];
    const ledger = new Ledger();
    const changes = new ChangeTraffic({ members: [ada, bob, carol, dan] });
    const sending = burst({
      ledger,
      roomId,
      label: 'sigterm',
      concurrency: 4,
      target: (i, attempt) => ({ url: live[(i + attempt) % live.length].url, user: senders[i % 2] }),
      retry: (_outcome, attempt) => attempt < 5,
      changes,
    });
    try {
      await waitFor(() => ledger.sent >= 300 && traveller.received.length >= 100 && steady.received.length >= 100 && eventTraveller.events.length >= 100 && changes.acked.length >= 30, 30_000);

      const inFlight = slowSend(c1, ada, roomId, 'in-flight');
      await inFlight.continued; // C1 has read the headers: the request is in flight
      live = [c2];
      const signalled = Date.now();
      c1.process.kill('SIGTERM');
      await waitFor(() => traveller.closeCodes.length > 0 && eventTraveller.closeCodes.length > 0, SHUTDOWN_BOUND_MS); // its WebSockets were closed
      const newConnection = await connectAnew(c1.port); // while the request in flight still holds C1 open
      inFlight.finish(); // the body arrives while C1 is shutting down
      const inFlightAnswer = await inFlight.response;
      const exit = await within(c1.exited, SHUTDOWN_BOUND_MS, 'still running' as const);
      const shutdownMs = Date.now() - signalled;
      ledger.record(inFlightAnswer);

      traveller.connect(c2.wsUrl, bob); // resumes after its last cursor, on the other instance
      eventTraveller.connect(c2.wsUrl); // resumes after the cursor of the last event it received
      const resumedAt = ledger.sent;
      await waitFor(() => ledger.sent >= resumedAt + 200, 30_000);
      await sending.stop();

      const { databaseUrl } = sharedUrls();
      const eventSubs = [eventTraveller, eventSteady];
      const truth = await settle(databaseUrl, roomId, [traveller, steady, ...eventSubs], 2 * HEAL_INTERVAL_MS);
      const changed = await changeReport(c2.url, databaseUrl, changes, eventSubs);

      const thread = (await must(c2.url, THREAD, { r: assistantRoom, t: question.message.id }, ada.token)).messages.edges as Array<{
        node: { id: string; status: string; statusReason: string | null };
      }>;
      const replyAfter = thread.find((e) => e.node.id === reply.id)?.node;
      const failedEventSeen = await waitFor(
        () => events.results.some((r) => r.data?.roomEvents?.message?.id === reply.id && r.data.roomEvents.message.status === 'FAILED'),
        5000,
      ).then(() => true, () => false);
      const line = report(
        'sigterm on one of two instances, subscriber resumes on the other',
        ledger.sent,
        [
          tally(traveller.name, ledger.acked.values(), traveller.received),
          tally(steady.name, ledger.acked.values(), steady.received),
          ...eventSubs.map((s) => tallyAdded(s, ledger.acked.values())),
        ],
        {
          instances: 2,
          exit,
          shutdownMs,
          webSocketCloseCodes: traveller.closeCodes,
          roomEventsCloseCodes: eventTraveller.closeCodes,
          eventResumedAfter: eventTraveller.resumedAfter[1],
          newConnectionDuringShutdown: newConnection,
          inFlightRequest: inFlightAnswer.ok ? 'answered' : inFlightAnswer.error,
          assistantReply: replyAfter ? { status: replyAfter.status, statusReason: replyAfter.statusReason } : 'missing',
          assistantFailedEventOnOtherInstance: failedEventSeen,
          resumedAfterSeq: Math.max(...traveller.received.filter((m) => m.session === 1).map((m) => m.seq)),
          failedAttemptsRetriedElsewhere: ledger.failures.length,
          failedChangeAttemptsRetriedElsewhere: changes.failures.length,
          sendMs: spread(ledger.latencies),
          stoppedInstanceLog: c1.problems(40).map((l) => l.slice(0, 300)).slice(0, 5),
        },
        changed,
      );
      expect(exit).toEqual({ code: 0, signal: null });
      expect(traveller.closeCodes).toEqual([1001]);
      expect(eventTraveller.closeCodes).toEqual([1001]);
      expect(newConnection).toBe('ECONNREFUSED'); // it stopped accepting
      expect(inFlightAnswer).toMatchObject({ ok: true });
      expect(replyAfter).toMatchObject({ status: 'FAILED', statusReason: expect.stringMatching(/\w/) });
      expect(failedEventSeen).toBe(true);
      // Only sends to C1 as it went away failed, at the network level, and each was settled on C2.
      expect(ledger.failures.filter((f) => !(f.network && f.url === c1.url))).toEqual([]);
      expect(changes.failures.filter((f) => !(f.network && f.url === c1.url))).toEqual([]);
      expect(changes.pending).toEqual([]);
      expect(ledger.conflicting).toEqual([]);
      expect(truth.messages.map((m) => m.id).sort()).toEqual([...ledger.acked.keys()].sort());
      expect([steady.errors, eventSteady.errors]).toEqual([[], []]);
      expectClean(line);
      expectCleanChanges(line);
    } finally {
      await sending.stop();
    }
  } finally {
    await watcher.dispose();
  }
}, 120_000);
