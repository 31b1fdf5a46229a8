// Fault: Redis goes away during sends and comes back on the same port. A send never waits on Redis
// (it commits and answers), /readyz reports pub/sub down and the database up, a subscription opened
// during the outage still starts, and every subscriber on both instances catches up — the
// roomEvents ones with every edit, reaction, deletion and reply made meanwhile, in change order
// (API.md guarantees 1–5, 8). An instance started while Redis is down serves, delivers to
// messageAdded and myEvents what is sent while it waits for its subscriptions, and stops without
// waiting for Redis. A session logged out meanwhile gets nothing sent after it on any instance. A
// private Redis: stopping the shared one would break the other test files.
import { collect, createRoom, MESSAGE_ADDED, must, send, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { sharedUrls, startRedis, type PrivateRedis } from './support/backing';
import Redis from 'ioredis';
import { readiness, spawnServer, type ChildServer } from './support/child-server';
import { ChangeTraffic } from './support/changes';
import { changeReport, tallyAdded } from './support/change-tally';
import { EventSubscriber } from './support/events';
import { expectClean, expectCleanChanges, report, tally } from './support/tally';
import { baseOf, burst, Ledger, roomWith, SEND_TIMEOUT_MS, spread, Subscriber, settle, Subscribers } from './support/traffic';

const HEAL_INTERVAL_MS = 300;

let redis: PrivateRedis;
let a: TestServer;
let b: TestServer;
const subscribers = new Subscribers();

beforeAll(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([
    startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS) }),
    startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS) }),
  ]);
}, 60_000);

afterAll(async () => {
  await subscribers.closeAll();
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.destroy();
}, 60_000);

it('commits and answers every send and change while Redis is down, reports it in /readyz, and every subscriber catches up when Redis returns', async () => {
  const users = await Promise.all([0, 1, 2, 3].map(() => signUp(a.url)));
  const servers = [a, b];
  const roomId = await roomWith(a.url, users);
  // A second room whose first subscriber arrives during the outage (its hub starts with Redis dead).
  const lateRoomId = await roomWith(a.url, users);
  const subs = users.map((user, i) => {
    const sub = subscribers.add(new Subscriber(`${i % 2 ? 'B' : 'A'}${i}`, roomId));
    sub.connect(servers[i % 2].wsUrl, user);
    return sub;
  });
  const eventSubs = users.slice(2).map((user, i) => {
    const sub = subscribers.add(new EventSubscriber(`roomEvents ${i % 2 ? 'B' : 'A'}${i + 2}`, roomId, user));
    sub.connect(servers[i % 2].wsUrl);
    return sub;
  });
  await waitFor(() => a.app.hubs.listeners(roomId) === 3 && b.app.hubs.listeners(roomId) === 3);

  const ledger = new Ledger();
  const changes = new ChangeTraffic({ members: users });
  const lateLedger = new Ledger();
  const target = (i: number) => ({ url: servers[i % 2].url, user: users[i % users.length] });
  const sending = burst({ ledger, roomId, label: 'redis', concurrency: 4, target, changes });
  const sendingLate = burst({ ledger: lateLedger, roomId: lateRoomId, label: 'redis-late', concurrency: 1, target });
  try {
    await waitFor(() => ledger.sent >= 200, 30_000);

    await redis.stop();
    const outageStarted = Date.now();
    const answeredBeforeOutage = ledger.latencies.length;
    const seqAtOutage = ledger.lastSeq;
    const sentAtOutage = ledger.sent;
    const changesAtOutage = changes.acked.length;
    const readyDuringOutage = await Promise.all(
      servers.map((s) =>
        waitFor(async () => {
          const r = await readiness(baseOf(s.url));
          return r.body.pubsub === 'down' ? r : undefined; // not ready: the contract's readiness needs pub/sub (README.md, Security)
        }, 15_000),
      ),
    );
    const late = subscribers.add(new Subscriber('B late (subscribed during the outage)', lateRoomId));
    late.connect(b.wsUrl, users[1]);
    await waitFor(() => ledger.sent >= sentAtOutage + 200 && Date.now() - outageStarted >= 3500, 30_000);
    const outageLatencies = ledger.latencies.slice(answeredBeforeOutage);
    const sentDuringOutage = ledger.lastSeq - seqAtOutage;
    const changesDuringOutage = changes.acked.length - changesAtOutage;
    const deliveredDuringOutage = Math.min(...subs.map((s) => s.lastSeq)) - seqAtOutage;
    const lateDeliveredDuringOutage = late.received.length;

    await redis.start();
    const outageMs = Date.now() - outageStarted;
    await Promise.all(servers.map((s) => waitFor(async () => (await readiness(baseOf(s.url))).status === 200, 20_000)));
    const sentAtReturn = ledger.sent;
    await waitFor(() => ledger.sent >= sentAtReturn + 200, 30_000);
    await Promise.all([sending.stop(), sendingLate.stop()]);

    const { databaseUrl } = sharedUrls();
    const [truth, lateTruth] = await Promise.all([
      settle(databaseUrl, roomId, [...subs, ...eventSubs], 2 * HEAL_INTERVAL_MS),
      settle(databaseUrl, lateRoomId, [late], 2 * HEAL_INTERVAL_MS),
    ]);
    const changed = await changeReport(a.url, databaseUrl, changes, eventSubs);

    const line = report(
      'redis stopped and restarted during sends',
      ledger.sent + lateLedger.sent,
      [
        ...subs.map((s) => tally(s.name, ledger.acked.values(), s.received)),
        tally(late.name, lateLedger.acked.values(), late.received),
        ...eventSubs.map((s) => tallyAdded(s, ledger.acked.values())),
      ],
      {
        instances: 2,
        outageMs,
        sentDuringOutage,
        deliveredDuringOutageByHealTimer: deliveredDuringOutage,
        lateSubscriberDeliveredDuringOutage: lateDeliveredDuringOutage,
        sendFailures: ledger.failures.length + lateLedger.failures.length,
        sendMsDuringOutage: spread(outageLatencies),
        sendMsOverall: spread(ledger.latencies),
        readyzDuringOutage: readyDuringOutage[0].body,
        changeFailures: changes.failures.length,
        changesDuringOutage,
      },
      changed,
    );
    // Every send answered (none hung past SEND_TIMEOUT_MS) and committed, with Redis down or up.
    expect([...ledger.failures, ...lateLedger.failures]).toEqual([]);
    expect(sentDuringOutage).toBeGreaterThanOrEqual(200);
    expect(Math.max(...outageLatencies)).toBeLessThan(SEND_TIMEOUT_MS);
    expect(readyDuringOutage).toEqual([
      { status: 503, body: { status: 'unavailable', database: 'up', pubsub: 'down' } },
      { status: 503, body: { status: 'unavailable', database: 'up', pubsub: 'down' } },
    ]);
    expect(truth.messages.map((m) => m.id).sort()).toEqual([...ledger.acked.keys()].sort());
    expect(lateTruth.messages.map((m) => m.id).sort()).toEqual([...lateLedger.acked.keys()].sort());
    expect(changes.failures).toEqual([]);
    expect(changes.pending).toEqual([]);
    expect(changesDuringOutage).toBeGreaterThan(0);
    const all = [...subs, late, ...eventSubs];
    expect(all.map((s) => ({ name: s.name, ended: s.ended, errors: s.errors }))).toEqual(all.map((s) => ({ name: s.name, ended: 0, errors: [] })));
    expectClean(line);
    expectCleanChanges(line);
  } finally {
    await Promise.all([sending.stop(), sendingLate.stop()]);
  }
}, 90_000);

it('starts, serves and stops an instance while Redis is down, and its subscribers get what is sent meanwhile', async () => {
  await redis.stop();
  let c: TestServer | undefined;
  let dispose = async (): Promise<void> => undefined;
  try {
    // Before, its start waited for the subscription of session revocations: it never listened.
    c = await startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: String(HEAL_INTERVAL_MS) });
    const readyz = await fetch(c.url.replace('/graphql', '/readyz'));
    expect(readyz.status).toBe(503); // serving, but not ready without pub/sub
    expect(await readyz.json()).toMatchObject({ database: 'up', pubsub: 'down' });
    const [ada, bob] = await Promise.all([signUp(c.url), signUp(c.url)]);
    const roomId = await createRoom(c.url, ada);
    await must(c.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const ws = wsClient(c.wsUrl, bob);
    dispose = async () => ws.dispose();
    const sub = collect(ws, MESSAGE_ADDED, { roomId, after: null });
    const feed = collect(ws, `subscription { myEvents { __typename ... on RoomActivity { message { id } } } }`);
    // Sent while the room's hub waits for its subscription (2 s): after the subscriber asked, so theirs.
    await waitFor(() => c!.app.hubs.size === 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(c.app.hubs.listeners(roomId)).toBe(0); // still waiting
    const sent = await Promise.all([1, 2, 3].map((i) => send(c!.url, ada, roomId, `while Redis is down ${i}`)));
    await sub.until((r) => r.length >= 3, 10_000); // from the database, by the hub's timer
    expect(sub.results.map((r) => r.data?.messageAdded.id).sort()).toEqual(sent.map((m) => m.id).sort());
    expect(sub.results.map((r) => r.data?.messageAdded.seq)).toEqual([1, 2, 3]);
    // The feed asked for meanwhile starts without its viewer's topic; its timer reads what is sent after.
    await waitFor(() => c!.app.services.activity.size === 1, 5000); // before, it waited for Redis
    const later = [await send(c.url, ada, roomId, 'for the feed 4'), await send(c.url, ada, roomId, 'for the feed 5')];
    await feed.until((r) => r.length >= 2, 10_000);
    expect(feed.results.map((r) => r.data?.myEvents.message.id)).toEqual(later.map((m) => m.id));
  } finally {
    await dispose();
    // Before, its stop waited for subscriptions that Redis, being down, never settled.
    await c?.stop();
    await redis.start();
  }
}, 60_000);

describe('a session logged out while Redis is down', () => {
  const MY_EVENTS = `subscription { myEvents { __typename ... on RoomActivity { message { seq } } } }`;
  // Redis comes back at once, before a heal ran (the sockets' sweep and the hubs' check then race), or stays down for heals.
  for (const redisBack of ['at once', 'after heals'] as const) {
    it(`reaches none of its sockets on another instance with what is sent after it: closed 4403 before a heal delivers (Redis back ${redisBack})`, async () => {
      const [ada, vic] = await Promise.all([signUp(a.url), signUp(a.url)]);
      const roomId = await createRoom(a.url, ada);
      await must(a.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, vic.token);
      const closes: number[] = [];
      const closed = { on: { closed: (e: unknown) => void closes.push((e as { code: number }).code) } };
      const ws = wsClient(b.wsUrl, vic, closed);
      const idle = wsClient(b.wsUrl, vic, { lazy: false, onNonLazyError: () => undefined, ...closed }); // no subscription: closed all the same
      try {
        const sub = collect(ws, MESSAGE_ADDED, { roomId, after: null });
        const feed = collect(ws, MY_EVENTS);
        await waitFor(() => b.app.hubs.listeners(roomId) === 1 && b.app.services.activity.size === 1);
        const first = await send(a.url, ada, roomId, 'before the logOut');
        await sub.until((r) => r.length === 1);
        await feed.until((r) => r.length === 1);
        await redis.stop();
        let down = true;
        try {
          await must(a.url, 'mutation { logOut }', {}, vic.token); // its signal is lost
          for (let i = 0; i < 3; i++) {
            await send(a.url, ada, roomId, `after the logOut ${i}`);
            if (redisBack === 'after heals') await new Promise((resolve) => setTimeout(resolve, HEAL_INTERVAL_MS));
          }
          if (redisBack === 'at once') await redis.start().then(() => (down = false));
          await waitFor(() => closes.length === 2, 5000); // the sweep every SESSION_SWEEP_MS (15 s) would be too late
          expect(closes).toEqual([4403, 4403]);
          await new Promise((resolve) => setTimeout(resolve, 3 * HEAL_INTERVAL_MS));
          // Before: the heals delivered to the ended session what was sent after its end, until the sweep closed it.
          expect(sub.results.map((r) => r.data?.messageAdded.seq)).toEqual([1]);
          expect(feed.results.map((r) => r.data?.myEvents.message.seq)).toEqual([1]);
        } finally {
          if (down) await redis.start();
        }
      } finally {
        await Promise.all([ws.dispose(), idle.dispose()]);
      }
    }, 30_000);
  }

  it('reads nothing for an operation on its socket before the session is checked (no heal in between)', async () => {
    const c = await startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: '60000' }); // no heal while the test runs
    const [ada, vic] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await createRoom(a.url, ada);
    await must(a.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, vic.token);
    const closes: number[] = [];
    let acknowledged = false;
    const on = { connected: () => void (acknowledged = true), closed: (e: unknown) => void closes.push((e as { code: number }).code) };
    const ws = wsClient(c.wsUrl, vic, { lazy: false, onNonLazyError: () => undefined, on });
    try {
      const first = await send(a.url, ada, roomId, 'before the logOut');
      await waitFor(() => acknowledged);
      await redis.stop();
      try {
        await must(a.url, 'mutation { logOut }', {}, vic.token); // its signal is lost
        await send(a.url, ada, roomId, 'after the logOut');
        // A subscription replaying from its cursor: before, it replayed what was sent after the logOut.
        const late = collect(ws, MESSAGE_ADDED, { roomId, after: first.cursor });
        await waitFor(() => closes.length === 1, 5000);
        expect(closes).toEqual([4403]);
        expect(late.results).toEqual([]);
      } finally {
        await redis.start();
      }
    } finally {
      await ws.dispose();
      await c.stop();
    }
  }, 30_000);
});

it('lives through a Redis that refuses its password: serving but not ready, then subscribed and ready once Redis takes it', async () => {
  const locked = await startRedis();
  const admin = new Redis(locked.url); // signed in before Redis asks for a password: it stays so
  await admin.config('SET', 'requirepass', 'the-right-one');
  let c: ChildServer | undefined;
  try {
    const url = new URL(locked.url);
    url.password = 'a-wrong-one';
    c = await spawnServer('wrong Redis password', { DATABASE_URL: sharedUrls().databaseUrl, REDIS_URL: url.toString() });
    // It serves after its wait for pub/sub and asks for its subscriptions then. Before, Redis's
    // refusal failed them where nothing caught it, and the process exited.
    const notReady = await waitFor(async () => {
      const r = await readiness(c!.base);
      return r.status === 503 ? r : undefined;
    }, 30_000);
    expect(notReady.body).toEqual({ status: 'unavailable', database: 'up', pubsub: 'down' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(c.running).toBe(true);
    await admin.config('SET', 'requirepass', 'a-wrong-one'); // the operator mends it on Redis's side
    await waitFor(async () => (await readiness(c!.base)).status === 200, 30_000);
    expect(await admin.pubsub('CHANNELS')).toEqual(expect.arrayContaining(['activity', 'session:revoked']));
    expect(c.output()).not.toContain('a-wrong-one'); // the password is in no log line
    expect(c.problems()).toEqual([]);
  } finally {
    await c?.kill();
    admin.disconnect();
    await locked.destroy();
  }
}, 90_000);

it('drops a message it cannot read on any of its channels, and lives through a Redis user not allowed its channels', async () => {
  const own = await startRedis(); // its own: what is published here reaches nobody else's servers
  const admin = new Redis(own.url);
  let c: ChildServer | undefined;
  let barred: ChildServer | undefined;
  try {
    c = await spawnServer('reader of bad messages', { DATABASE_URL: sharedUrls().databaseUrl, REDIS_URL: own.url });
    await c.ready();
    const ada = await signUp(c.url);
    const roomId = await createRoom(c.url, ada);
    const ws = wsClient(c.wsUrl, ada);
    const live = collect(ws, MESSAGE_ADDED, { roomId, after: null }); // a room hub, listening on the room's channel
    try {
      await waitFor(async () => ((await admin.pubsub('NUMSUB', `room:${roomId}`)) as [string, number])[1] === 1);
      // Before: `{}` on `activity` ended the process of every instance at once.
      for (const channel of ['activity', 'session:revoked', 'assistant:control', `room:${roomId}`]) {
        for (const message of ['{}', 'not json', '[1,2]', '{"message":null}']) await admin.publish(channel, message);
      }
      await send(c.url, ada, roomId, 'still here');
      await live.until((results) => results.some((r: any) => r.data?.messageAdded?.body === 'still here'));
    } finally {
      live.stop();
      await ws.dispose();
    }
    expect(c.running).toBe(true);
    expect((await readiness(c.base)).status).toBe(200);
    expect(c.output()).toContain('pub/sub message dropped');
    expect(c.problems()).toEqual([]);

    // A Redis user without channels (Redis 7's default for a new user): before, its refused SUBSCRIBEs ended the process.
    await admin.call('ACL', 'SETUSER', 'barred', 'on', '>barred-password', '~*', '+@all', 'resetchannels');
    const url = new URL(own.url);
    [url.username, url.password] = ['barred', 'barred-password'];
    barred = await spawnServer('barred from channels', { DATABASE_URL: sharedUrls().databaseUrl, REDIS_URL: url.toString() });
    await waitFor(() => barred!.output().includes('redis refused a subscription'), 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(barred.running).toBe(true);
    // It serves, and says pub/sub is down (it keeps asking for the channels): before, it said up and heard nothing.
    expect(await readiness(barred.base)).toEqual({ status: 503, body: expect.objectContaining({ database: 'up', pubsub: 'down' }) });
    expect(barred.output()).not.toContain('barred-password');
    expect(barred.problems()).toEqual([]); // the refusals are heard where they happen: no promise of the library's fails unawaited
  } finally {
    await Promise.all([c?.kill(), barred?.kill()]);
    admin.disconnect();
    await own.destroy();
  }
}, 120_000);
