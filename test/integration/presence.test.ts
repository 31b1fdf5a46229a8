// Typing and presence (API.md guarantee 11, docs/guarantees.md): setTyping's access rules, the
// throttle, expiry, both across two instances on one Redis, never replayed on resume, never on
// messageAdded, never in the database; and the same without Redis (in memory).
import type { Client } from 'graphql-ws';
import Redis from 'ioredis';
import { sql } from '../faults/support/backing';
import {
  codeOf,
  collect,
  createRoom,
  gql,
  MESSAGE_ADDED,
  must,
  send,
  signUp,
  startServer,
  waitFor,
  wsClient,
  type TestServer,
  type TestUser,
} from '../support/harness';
import { eventsOf, presenceOf, ROOM_EVENTS, SET_TYPING, typingOf } from '../support/ephemeral';

const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.dispose()));
});
function client(server: TestServer, user: TestUser): Client {
  const c = wsClient(server.wsUrl, user);
  clients.push(c);
  return c;
}

/** A public room owned by the first user, joined by the others. */
async function roomWith(url: string, users: TestUser[]): Promise<string> {
  const roomId = await createRoom(url, users[0]);
  await Promise.all(users.slice(1).map((u) => must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, u.token)));
  return roomId;
}

const setTyping = (server: TestServer, user: TestUser, roomId: string, typing: boolean) =>
  must(server.url, SET_TYPING, { roomId, typing }, user.token);
/** The room's change log head: ephemeral signals never move it. */
const lastChange = async (roomId: string) =>
  Number((await sql<{ last_change: number }>(process.env.TEST_DATABASE_URL!, 'SELECT last_change FROM rooms WHERE id = $1', [roomId]))[0].last_change);

describe('typing and presence on two instances sharing PostgreSQL and Redis', () => {
  let a: TestServer;
  let b: TestServer;
  let redis: Redis;
  beforeAll(async () => {
    [a, b] = await Promise.all([startServer({ TYPING_TTL_MS: '1000' }), startServer({ TYPING_TTL_MS: '1000' })]);
    redis = new Redis(process.env.TEST_REDIS_URL!);
  });
  afterAll(async () => {
    redis?.disconnect();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('answers setTyping with FORBIDDEN for a non-member, a missing and a malformed room alike, UNAUTHENTICATED without a token, and stores nothing', async () => {
    const [ada, eve] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await createRoom(a.url, ada);
    const answers = await Promise.all(
      [roomId, '00000000-0000-4000-8000-000000000000', 'not-a-room', ''].map((r) => gql(a.url, SET_TYPING, { roomId: r, typing: true }, eve.token)),
    );
    expect(answers.map(codeOf)).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);
    expect(new Set(answers.map((r) => r.errors?.[0].message)).size).toBe(1);
    expect(codeOf(await gql(a.url, SET_TYPING, { roomId, typing: false }, eve.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(a.url, SET_TYPING, { roomId, typing: true }))).toBe('UNAUTHENTICATED');
    expect(await redis.zscore('typing:deadlines', `${roomId}:${eve.id}`)).toBeNull();

    expect(codeOf(await gql(a.url, SET_TYPING, { roomId, typing: 'yes' }, ada.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(a.url, `mutation($r: ID!) { setTyping(roomId: $r) }`, { r: roomId }, ada.token))).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(await redis.zscore('typing:deadlines', `${roomId}:${ada.id}`)).toBeNull();
  });

  it('shows typing started on A to roomEvents subscribers on B once however often it is repeated, then its end; never to messageAdded, never in the database', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const onB = client(b, bob);
    const events = collect(onB, ROOM_EVENTS, { roomId });
    const added = collect(onB, MESSAGE_ADDED, { roomId });
    await waitFor(() => b.app.hubs.listeners(roomId) === 2);
    const before = await lastChange(roomId);

    for (let i = 0; i < 5; i++) await setTyping(a, ada, roomId, true);
    await events.until(() => typingOf(events, ada).length >= 1);
    await setTyping(a, ada, roomId, false);
    await events.until(() => typingOf(events, ada).length >= 2);
    expect(await lastChange(roomId)).toBe(before);

    const marker = await send(a.url, ada, roomId, 'after typing');
    await events.until((r) => r.some((x) => x.data?.roomEvents.message?.id === marker.id));
    await added.until((r) => r.length >= 1);
    expect(typingOf(events, ada)).toEqual([true, false]);
    expect(events.results.find((r) => r.data?.roomEvents.__typename === 'TypingChanged')?.data?.roomEvents).toEqual({
      __typename: 'TypingChanged',
      roomId,
      typing: true,
      user: { id: ada.id, username: ada.username },
    });
    expect(added.results.map((r) => r.data?.messageAdded.id)).toEqual([marker.id]); // nothing ephemeral before it
    expect(events.results.every((r) => !r.errors)).toBe(true);
  });

  it('ends typing by itself a few seconds after the last setTyping(true), on every instance', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const onA = collect(client(a, ada), ROOM_EVENTS, { roomId });
    const onB = collect(client(b, bob), ROOM_EVENTS, { roomId });
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);

    await setTyping(a, ada, roomId, true);
    await Promise.all([onA.until(() => typingOf(onA, ada).length >= 2), onB.until(() => typingOf(onB, ada).length >= 2)]);
    expect(typingOf(onA, ada)).toEqual([true, false]);
    expect(typingOf(onB, ada)).toEqual([true, false]);
  });

  it('ends the typing of a member who is removed or leaves with the change, after MemberChanged, on every instance', async () => {
    const [ada, bob, cal, dee] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob, cal, dee]);
    const withMembers = ROOM_EVENTS.replace('... on TypingChanged', '... on MemberChanged { role user { id } } ... on TypingChanged');
    const onB = collect(client(b, dee), withMembers, { roomId });
    await waitFor(() => b.app.hubs.listeners(roomId) === 1);
    const changesOf = (user: TestUser) =>
      eventsOf(onB)
        .filter((e) => e?.user?.id === user.id && e.__typename !== 'PresenceChanged')
        .map((e) => (e.__typename === 'TypingChanged' ? `typing ${e.typing}` : `role ${(e as { role?: string }).role ?? null}`));

    await setTyping(a, bob, roomId, true);
    await setTyping(a, cal, roomId, true);
    await onB.until(() => typingOf(onB, bob).length >= 1 && typingOf(onB, cal).length >= 1);
    await must(a.url, `mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }`, { r: roomId, u: bob.id }, ada.token);
    await must(a.url, `mutation($r: ID!) { leaveRoom(roomId: $r) }`, { r: roomId }, cal.token);
    // Answered with their typing over (it would have lasted TYPING_TTL_MS otherwise).
    expect(await redis.zscore('typing:deadlines', `${roomId}:${bob.id}`)).toBeNull();
    expect(await redis.zscore('typing:deadlines', `${roomId}:${cal.id}`)).toBeNull();
    await onB.until(() => typingOf(onB, bob).length >= 2 && typingOf(onB, cal).length >= 2);
    expect(changesOf(bob)).toEqual(['typing true', 'role null', 'typing false']);
    expect(changesOf(cal)).toEqual(['typing true', 'role null', 'typing false']);
  });

  it("shows a user online from their first socket on any instance until their last closes, and answers online() from both", async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(b.url)]);
    const roomId = await roomWith(a.url, [ada, bob]);
    const watcher = collect(client(b, bob), ROOM_EVENTS, { roomId });
    await waitFor(() => b.app.hubs.listeners(roomId) === 1);

    const adaOnA = client(a, ada);
    collect(adaOnA, ROOM_EVENTS, { roomId });
    await watcher.until(() => presenceOf(watcher, ada).length >= 1);
    const adaOnB = client(b, ada);
    collect(adaOnB, ROOM_EVENTS, { roomId });
    await waitFor(() => b.app.hubs.listeners(roomId) === 2);
    for (const server of [a, b]) expect(await server.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([ada.id, bob.id]));

    await adaOnA.dispose();
    await waitFor(async () => (await redis.zcard(`presence:holders:${ada.id}`)) === 1); // A let go; B still holds her
    for (const server of [a, b]) expect(await server.app.services.presence.online([ada.id])).toEqual(new Set([ada.id]));

    await adaOnB.dispose();
    await watcher.until(() => presenceOf(watcher, ada).length >= 2);
    expect(presenceOf(watcher, ada)).toEqual([true, false]);
    expect(eventsOf(watcher).find((e) => e.__typename === 'PresenceChanged' && e.user?.id === ada.id)).toEqual({
      __typename: 'PresenceChanged',
      roomId,
      online: true,
      user: { id: ada.id },
    });
    for (const server of [a, b]) expect(await server.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([bob.id]));
  });

  it('answers Member.online for a page of members in one presence lookup, on any instance', async () => {
    const [ada, bob, cy] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url)]);
    const roomId = await roomWith(a.url, [ada, bob, cy]);
    collect(client(b, ada), ROOM_EVENTS, { roomId }); // ada's socket is on B
    await waitFor(async () => (await a.app.services.presence.online([ada.id])).has(ada.id));
    const lookups = jest.spyOn(a.app.services.presence, 'online');
    try {
      const data = await must(a.url, `query($id: ID!) { room(id: $id) { members(first: 10) { edges { node { online user { id } } } } } }`, { id: roomId }, bob.token);
      const online = Object.fromEntries(data.room.members.edges.map((e: any) => [e.node.user.id, e.node.online]));
      expect(online).toEqual({ [ada.id]: true, [bob.id]: false, [cy.id]: false });
      expect(lookups).toHaveBeenCalledTimes(1);
    } finally {
      lookups.mockRestore();
    }
  });

  it('does not replay typing or presence when roomEvents resumes', async () => {
    const [ada, bob, cy] = await Promise.all([signUp(a.url), signUp(b.url), signUp(a.url)]);
    const roomId = await roomWith(a.url, [ada, bob, cy]);
    const bobClient = client(b, bob);
    const live = collect(bobClient, ROOM_EVENTS, { roomId });
    await waitFor(() => b.app.hubs.listeners(roomId) === 1);
    const first = await send(a.url, ada, roomId, 'before the ephemeral ones');

    await setTyping(a, ada, roomId, true);
    await setTyping(a, ada, roomId, false);
    const cyClient = client(a, cy);
    collect(cyClient, ROOM_EVENTS, { roomId });
    await live.until(() => typingOf(live, ada).length >= 2 && presenceOf(live, cy).length >= 1);

    // On the same socket (so bob's own presence does not flip), from the cursor before them all.
    const resumed = collect(bobClient, ROOM_EVENTS, { roomId, after: first.cursor ?? null });
    await waitFor(() => b.app.hubs.listeners(roomId) === 2);
    const marker = await send(a.url, ada, roomId, 'marker');
    await resumed.until((r) => r.some((x) => x.data?.roomEvents.message?.id === marker.id));
    expect(eventsOf(resumed).map((e) => e.__typename)).toEqual(['MessageAdded']);
  });
});

describe('typing and presence without Redis (in memory, one instance)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ REDIS_URL: undefined, TYPING_TTL_MS: '1000' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('shows presence, typing and its expiry', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await roomWith(server.url, [ada, bob]);
    const watcher = collect(client(server, bob), ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const adaClient = client(server, ada);
    collect(adaClient, ROOM_EVENTS, { roomId });
    await watcher.until(() => presenceOf(watcher, ada).length >= 1);
    expect(await server.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([ada.id, bob.id]));

    for (let i = 0; i < 3; i++) await setTyping(server, ada, roomId, true);
    await watcher.until(() => typingOf(watcher, ada).length >= 2); // ended by itself
    await adaClient.dispose();
    await watcher.until(() => presenceOf(watcher, ada).length >= 2);
    expect(typingOf(watcher, ada)).toEqual([true, false]);
    expect(presenceOf(watcher, ada)).toEqual([true, false]);
    expect(await server.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([bob.id]));
  });
});
