// Scale-out (API.md guarantees 1, 2 and 5): two instances on one PostgreSQL and one Redis.
// Redis pub/sub is only a wake-up; the room hubs read what it lost from the database, and so do
// the myEvents feeds (docs/guarantees.md, "The viewer's feed").
import type { Client } from 'graphql-ws';
import Redis from 'ioredis';
import { activityTopic, type MessageWire } from '../../src/pubsub';
import {
  collect,
  createRoom,
  MESSAGE_ADDED,
  must,
  send,
  seqsOf,
  signUp,
  startServer,
  waitFor,
  wsClient,
  type Collected,
  type TestServer,
  type TestUser,
} from '../support/harness';

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const idsOf = (sub: Collected) => sub.results.map((r) => r.data?.messageAdded?.id);

/** Clients opened by a test, disposed after it whatever happened. */
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
});

function subscribe(server: TestServer, user: TestUser, roomId: string, after?: string): Collected {
  const client = wsClient(server.wsUrl, user);
  clients.push(client);
  return collect(client, MESSAGE_ADDED, { roomId, after: after ?? null });
}

/** A public room owned by the first user, joined by the others. */
async function roomWith(url: string, users: TestUser[]): Promise<string> {
  const roomId = await createRoom(url, users[0]);
  await Promise.all(users.slice(1).map((u) => must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, u.token)));
  return roomId;
}

const MY_EVENTS = `subscription { myEvents { __typename
  ... on AddedToRoom { room { id } } ... on RoomActivity { room { id unreadCount } message { body } }
  ... on Mentioned { message { body } } ... on RemovedFromRoom { roomId } ... on ReadStateChanged { room { id unreadCount } } } }`;

/** A viewer's myEvents on an instance, open once the instance counts it. */
async function myEvents(server: TestServer, user: TestUser): Promise<Collected> {
  const client = wsClient(server.wsUrl, user);
  clients.push(client);
  const before = server.app.services.activity.size;
  const feed = collect(client, MY_EVENTS);
  await waitFor(() => server.app.services.activity.size > before);
  return feed;
}

/** Until `restore`, `server`'s publish hands each payload on a topic `picks` accepts to `take` (`release` publishes it). */
function interceptPublishes(server: TestServer, picks: (topic: string) => boolean, take: (payload: unknown, release: () => Promise<void>) => Promise<void>) {
  const original = server.app.pubsub.publish.bind(server.app.pubsub);
  const publish = jest.spyOn(server.app.pubsub, 'publish');
  publish.mockImplementation((topic, payload) => (picks(topic.name) ? take(payload, () => original(topic, payload)) : original(topic, payload)));
  return { restore: () => publish.mockRestore() };
}

/** Cuts `server`'s pub/sub subscriber connection (as a Redis failover would): it reconnects and heals. */
async function cutSubscriber(server: TestServer): Promise<void> {
  const admin = new Redis(process.env.TEST_REDIS_URL!);
  try {
    const { stream } = (server.app.pubsub as unknown as { subscriber: { stream: { localAddress: string; localPort: number } } }).subscriber;
    await admin.client('KILL', 'ADDR', `${stream.localAddress}:${stream.localPort}`);
  } finally {
    admin.disconnect();
  }
}

/** A publish that fails, as one to a Redis that is down. */
const lose = () => Promise.reject(new Error('down'));

const ADD_MEMBER = `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }`;
const REMOVE_MEMBER = `mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }`;

const activities = (feed: Collected) =>
  feed.results.map((r) => r.data!.myEvents).filter((e) => e.__typename === 'RoomActivity').map((e) => [e.message.body, e.room.unreadCount]);

describe('two instances sharing PostgreSQL and Redis', () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    // The heal timer is pushed out of reach so that what arrives here comes through pub/sub and
    // the gap fill alone; the timer has its own test below.
    [a, b] = await Promise.all([startServer({ HEAL_INTERVAL_MS: '600000' }), startServer({ HEAL_INTERVAL_MS: '600000' })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('delivers a message sent on A to subscribers on A and on B, in seq order', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const onA = subscribe(a, ada, roomId);
    const onB = subscribe(b, bob, roomId);
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);

    const sent = [];
    for (let i = 1; i <= 3; i++) sent.push(await send(a.url, ada, roomId, `from A ${i}`));
    await Promise.all([onA.until((r) => r.length >= 3), onB.until((r) => r.length >= 3)]);
    for (const sub of [onA, onB]) {
      expect(seqsOf(sub.results)).toEqual([1, 2, 3]);
      expect(idsOf(sub)).toEqual(sent.map((m) => m.id));
    }
  });

  it('delivers messages sent alternately and concurrently on A and B to subscribers on both, in strictly increasing seq, none missing or doubled', async () => {
    const users = await Promise.all([signUp(a.url), signUp(b.url), signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, users);
    const servers = [a, b];
    const subs = users.map((u, i) => subscribe(servers[i % 2], u, roomId));
    await waitFor(() => a.app.hubs.listeners(roomId) === 2 && b.app.hubs.listeners(roomId) === 2);

    const sent = [];
    for (let i = 0; i < 20; i++) sent.push(await send(servers[i % 2].url, users[i % 4], roomId, `alternate ${i}`));
    sent.push(
      ...(await Promise.all(range(0, 59).map((i) => send(servers[i % 2].url, users[(i + 1) % 4], roomId, `concurrent ${i}`)))),
    );
    const total = sent.length;
    expect(sent.map((m) => m.seq).sort((x, y) => x - y)).toEqual(range(1, total));

    await Promise.all(subs.map((s) => s.until((r) => r.length >= total, 20_000)));
    const idBySeq = new Map(sent.map((m) => [m.seq, m.id]));
    for (const sub of subs) {
      expect(seqsOf(sub.results)).toEqual(range(1, total));
      expect(idsOf(sub)).toEqual(range(1, total).map((seq) => idBySeq.get(seq)));
      expect(sub.results.every((r) => !r.errors)).toBe(true);
    }
  }, 60_000);

  it('lets a subscriber on B resume with after and get the rest of what A sent', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const first = subscribe(b, bob, roomId);
    await waitFor(() => b.app.hubs.listeners(roomId) === 1);
    for (let i = 1; i <= 3; i++) await send(a.url, ada, roomId, `seen ${i}`);
    await first.until((r) => r.length >= 3);
    const lastSeen = first.results[2].data!.messageAdded.cursor;
    first.stop();
    await waitFor(() => b.app.hubs.listeners(roomId) === 0);

    for (let i = 4; i <= 7; i++) await send(a.url, ada, roomId, `missed ${i}`);
    const resumed = subscribe(b, bob, roomId, lastSeen);
    // More arrive on A while B replays: the seam must hold.
    await Promise.all(range(8, 12).map((i) => send(a.url, ada, roomId, `during ${i}`)));
    await resumed.until((r) => r.length >= 9);
    expect(seqsOf(first.results)).toEqual([1, 2, 3]);
    expect(seqsOf(resumed.results)).toEqual(range(4, 12));
  });

  it('tells myEvents on B of a room joined on A, of messages sent on either, and of the removal made on A', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await createRoom(a.url, ada, 'PRIVATE');
    const client = wsClient(b.wsUrl, bob);
    clients.push(client);
    const feed = collect(client, `subscription { myEvents { __typename
      ... on AddedToRoom { room { id } } ... on RoomActivity { room { id unreadCount } message { body } }
      ... on Mentioned { message { body } } ... on RemovedFromRoom { roomId } } }`);
    await waitFor(() => b.app.services.activity.size === 1);
    await must(a.url, ADD_MEMBER, { r: roomId, u: bob.id }, ada.token);
    await feed.until((r) => r.length >= 1);
    await send(a.url, ada, roomId, `welcome @${bob.username}`);
    await send(b.url, bob, roomId, 'thanks');
    await must(a.url, REMOVE_MEMBER, { r: roomId, u: bob.id }, ada.token);
    await feed.until((r) => r.length >= 5);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'AddedToRoom', room: { id: roomId } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 1 }, message: { body: `welcome @${bob.username}` } },
      { __typename: 'Mentioned', message: { body: `welcome @${bob.username}` } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 0 }, message: { body: 'thanks' } },
      { __typename: 'RemovedFromRoom', roomId },
    ]);
  });

  it("routes a room's new messages to myEvents in seq order when their publishes arrive in another order", async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const feed = await myEvents(b, bob);
    const held: Array<() => Promise<void>> = [];
    const intercepted = interceptPublishes(a, (name) => name === 'activity', async (_payload, release) => void held.push(release));
    try {
      for (const body of ['one', 'two', 'three']) await send(a.url, ada, roomId, body);
    } finally {
      intercepted.restore();
    }
    expect(held).toHaveLength(3);
    for (const release of held.reverse()) await release(); // three, two, one: as writers on other instances may publish
    await feed.until((r) => r.length >= 3);
    expect(activities(feed)).toEqual([['one', 1], ['two', 2], ['three', 3]]);
  });

  it('fills into myEvents, from the database and in order, a message whose publish was lost', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const feed = await myEvents(b, bob);
    await send(a.url, ada, roomId, 'published 1');
    const intercepted = interceptPublishes(a, (name) => name === 'activity', lose);
    try {
      await send(a.url, ada, roomId, `lost 2 @${bob.username}`);
    } finally {
      intercepted.restore();
    }
    await send(a.url, ada, roomId, 'published 3');
    await feed.until((r) => r.length >= 4);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 1 }, message: { body: 'published 1' } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 2 }, message: { body: `lost 2 @${bob.username}` } },
      { __typename: 'Mentioned', message: { body: `lost 2 @${bob.username}` } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 3 }, message: { body: 'published 3' } },
    ]);
  });

  it('tells myEvents, after its pub/sub connection comes back, of a read position whose signal was lost', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const feed = await myEvents(b, bob);
    const unread = await send(a.url, ada, roomId, 'unread');
    await feed.until((r) => r.length >= 1);
    const lost = interceptPublishes(a, (name) => name === `user:${bob.id}`, lose);
    try {
      await must(a.url, `mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { id } }`, { r: roomId, c: unread.cursor }, bob.token);
    } finally {
      lost.restore();
    }
    await cutSubscriber(b); // it reconnects and re-reads
    await feed.until((r) => r.length >= 2);
    expect(feed.results.map((r) => r.data!.myEvents)[1]).toEqual({ __typename: 'ReadStateChanged', room: { id: roomId, unreadCount: 0 } });
  });

  it('after a pub/sub reconnect, tells a removal whose signal was lost before any message sent after it', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await createRoom(a.url, ada, 'PRIVATE');
    await must(a.url, ADD_MEMBER, { r: roomId, u: bob.id }, ada.token);
    const feed = await myEvents(b, bob);
    // While B's connection is down, as it were: the removal's signal and the next message's are lost.
    const lost = interceptPublishes(a, (name) => name === `user:${bob.id}` || name === 'activity', lose);
    try {
      await must(a.url, REMOVE_MEMBER, { r: roomId, u: bob.id }, ada.token);
      await send(a.url, ada, roomId, 'after the removal');
    } finally {
      lost.restore();
    }
    await cutSubscriber(b);
    await feed.until((r) => r.length >= 1);
    await send(a.url, ada, roomId, 'later still');
    await new Promise((resolve) => setTimeout(resolve, 300)); // room for a wrong delivery
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([{ __typename: 'RemovedFromRoom', roomId }]);
  });

  it('holds up to 10,000 events for a feed whose reader does not keep up, and past that ends it with SERVICE_UNAVAILABLE after those, never losing one unseen', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const wire = (seq: number): MessageWire => ({
      id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`, roomId, seq, authorId: ada.id, body: `m${seq}`, parentId: null, clientId: null,
      status: 'COMPLETE', statusReason: null, deltaCount: 0, createdAt: new Date().toISOString(), createdChange: seq, changeSeq: seq,
      editedAt: null, deletedAt: null, reactions: [], replyCount: 0, lastReplyAt: null, mentions: [],
    });
    /** A feed on B that takes the first of `count + 1` messages, then reads on once B has routed them all. */
    const overrun = async (count: number) => {
      const before = b.app.services.activity.size;
      const feed = b.app.services.activity.open(bob.id);
      const first = feed.next();
      await waitFor(() => b.app.services.activity.size > before);
      // B's router listens to the topic before this does: once this has the last one, the router has routed it.
      // (The topic is shared with the other test files' servers, running meanwhile: only this room counts.)
      let arrived = 0;
      const off = await b.app.pubsub.subscribe(activityTopic, ({ message }) => {
        if (message.roomId === roomId) arrived = message.seq;
      });
      for (let seq = 1; seq <= count + 1; seq++) void a.app.pubsub.publish(activityTopic, { message: wire(seq) });
      await waitFor(() => arrived === count + 1);
      await off();
      expect((await first).value).toMatchObject({ kind: 'activity', message: { seq: 1 } });
      const seqs: number[] = [];
      let ended: unknown;
      try {
        for (let next = await feed.next(); !next.done; next = await feed.next()) {
          seqs.push((next.value as { message: MessageWire }).message.seq);
          if (seqs.length === count) break; // all there: nothing more will come
        }
      } catch (err) {
        ended = err;
      }
      await feed.return?.();
      return { seqs, ended };
    };
    // 10,000 waiting: all delivered, in order. (Each feed starts the room afresh: the route ends with its last feed.)
    const full = await overrun(10_000);
    expect(full.ended).toBeUndefined();
    expect(full.seqs).toEqual(range(2, 10_001));
    // One more: the 10,000 that waited, then the feed ends with a retryable error.
    const over = await overrun(10_001);
    expect(over.seqs).toEqual(range(2, 10_001));
    expect(over.ended).toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
  }, 60_000);

  it('fills from the database the messages whose publish was lost, before the next one, on both instances', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const onA = subscribe(a, ada, roomId);
    const onB = subscribe(b, bob, roomId);
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);

    await send(a.url, ada, roomId, 'published 1');
    await Promise.all([onA.until((r) => r.length >= 1), onB.until((r) => r.length >= 1)]);

    const lostSignals: Promise<void>[] = [];
    // The messages' signals are lost (a new message is published once, on the activity topic).
    const intercepted = interceptPublishes(a, (name) => name === 'activity', () => {
      const failed = lose();
      lostSignals.push(failed);
      return failed;
    });
    try {
      const lost = [await send(a.url, ada, roomId, 'lost 2'), await send(a.url, ada, roomId, 'lost 3')];
      expect(lost.map((m) => m.seq)).toEqual([2, 3]); // the sends succeed although the publish failed
      expect(lostSignals).toHaveLength(2);
      for (const signal of lostSignals) await expect(signal).rejects.toThrow('down');
    } finally {
      intercepted.restore();
    }

    const filledBefore = await gapFills(b);
    await send(b.url, bob, roomId, 'published 4');
    await send(a.url, ada, roomId, 'published 5');
    await Promise.all([onA.until((r) => r.length >= 5), onB.until((r) => r.length >= 5)]);
    for (const sub of [onA, onB]) {
      expect(seqsOf(sub.results)).toEqual([1, 2, 3, 4, 5]);
      expect(sub.results.map((r) => r.data?.messageAdded.body)).toEqual(['published 1', 'lost 2', 'lost 3', 'published 4', 'published 5']);
    }
    expect((await gapFills(b)) - filledBefore).toBeGreaterThanOrEqual(2); // operators see the healing in /metrics
  });
});

/** chat_gap_filled_messages_total of an instance, read from /metrics. */
async function gapFills(server: TestServer): Promise<number> {
  const text = await (await fetch(server.url.replace('/graphql', '/metrics'))).text();
  return Number(/^chat_gap_filled_messages_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

describe('two instances with a short heal interval', () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    [a, b] = await Promise.all([startServer({ HEAL_INTERVAL_MS: '200' }), startServer({ HEAL_INTERVAL_MS: '200' })]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('tells myEvents, within the heal timer, of a lost last message and of a join and a removal whose signals were lost', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await createRoom(a.url, ada, 'PRIVATE');
    const feed = await myEvents(b, bob);
    const lostToUser = interceptPublishes(a, (name) => name === `user:${bob.id}`, lose);
    try {
      await must(a.url, ADD_MEMBER, { r: roomId, u: bob.id }, ada.token);
      await feed.until((r) => r.length >= 1);
      const lostActivity = interceptPublishes(a, (name) => name === 'activity', lose);
      try {
        await send(a.url, ada, roomId, 'lost and last');
      } finally {
        lostActivity.restore();
      }
      await feed.until((r) => r.length >= 2);
      await must(a.url, REMOVE_MEMBER, { r: roomId, u: bob.id }, ada.token);
      await feed.until((r) => r.length >= 3);
    } finally {
      lostToUser.restore();
    }
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'AddedToRoom', room: { id: roomId } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 1 }, message: { body: 'lost and last' } },
      { __typename: 'RemovedFromRoom', roomId },
    ]);
  });

  it('tells myEvents of a join whose signal was lost with the messages sent since it, in order, also beside a feed already in the room', async () => {
    const [ada, bob, cat] = await Promise.all([signUp(a.url), signUp(b.url), signUp(b.url)]);
    const roomId = await createRoom(a.url, ada, 'PRIVATE');
    await must(a.url, ADD_MEMBER, { r: roomId, u: cat.id }, ada.token);
    const catFeed = await myEvents(b, cat); // the room is routed on B already
    const bobFeed = await myEvents(b, bob);
    await send(a.url, ada, roomId, 'before bob');
    const lostToBob = interceptPublishes(a, (name) => name === `user:${bob.id}`, lose);
    try {
      await must(a.url, ADD_MEMBER, { r: roomId, u: bob.id }, ada.token);
      await send(a.url, ada, roomId, `one for @${bob.username}`);
      await send(a.url, ada, roomId, 'two');
      await bobFeed.until((r) => r.length >= 4); // the heal timer finds the join
    } finally {
      lostToBob.restore();
    }
    await send(a.url, ada, roomId, 'three');
    await bobFeed.until((r) => r.length >= 5);
    expect(bobFeed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'AddedToRoom', room: { id: roomId } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 1 }, message: { body: `one for @${bob.username}` } },
      { __typename: 'Mentioned', message: { body: `one for @${bob.username}` } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 2 }, message: { body: 'two' } },
      { __typename: 'RoomActivity', room: { id: roomId, unreadCount: 3 }, message: { body: 'three' } },
    ]);
    expect(activities(catFeed)).toEqual([['before bob', 1], [`one for @${bob.username}`, 2], ['two', 3], ['three', 4]]);
  });

  it('delivers a lost last message within the heal timer although nothing follows it', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const onA = subscribe(a, ada, roomId);
    const onB = subscribe(b, bob, roomId);
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);

    await send(a.url, ada, roomId, 'published 1');
    const publish = jest.spyOn(a.app.pubsub, 'publish').mockRejectedValueOnce(new Error('down'));
    let tail;
    try {
      tail = await send(a.url, ada, roomId, 'lost tail 2');
      await expect(publish.mock.results[0].value).rejects.toThrow('down');
    } finally {
      publish.mockRestore();
    }
    expect(tail.seq).toBe(2);

    // Well under the 5 s default interval: only the 200 ms timer can bring it.
    await Promise.all([onA.until((r) => r.length >= 2, 3000), onB.until((r) => r.length >= 2, 3000)]);
    for (const sub of [onA, onB]) {
      expect(seqsOf(sub.results)).toEqual([1, 2]);
      expect(sub.results[1].data?.messageAdded.id).toBe(tail.id);
    }
  });
});
