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
  unique,
  wsClient,
  type GqlResult,
  type TestServer,
  type TestUser,
} from '../support/harness';

let server: TestServer;
let url: string;
beforeAll(async () => {
  server = await startServer();
  url = server.url;
});
afterAll(() => server.stop());

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';
const ROOM_FIELDS = 'id name kind assistantEnabled viewerRole lastSeq';
const CREATE = `mutation($input: CreateRoomInput!) { createRoom(input: $input) { ${ROOM_FIELDS} } }`;
const JOIN = `mutation($roomId: ID!) { joinRoom(roomId: $roomId) { ${ROOM_FIELDS} } }`;
const ADD = `mutation($roomId: ID!, $userId: ID!) { addMember(roomId: $roomId, userId: $userId) { ${ROOM_FIELDS} } }`;
const ROOM = `query($id: ID!) { room(id: $id) { ${ROOM_FIELDS} } }`;
const ROOMS = `query($first: Int, $after: String) {
  rooms(first: $first, after: $after) {
    edges { cursor node { id name viewerRole lastSeq } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;
const MESSAGES = `query($roomId: ID!) { messages(roomId: $roomId) { edges { node { id } } } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq room { id viewerRole lastSeq } } }`;

const roomOf = async (user: TestUser, id: string) => (await must(url, ROOM, { id }, user.token)).room;
const roomIdsOf = async (user: TestUser) => (await must(url, ROOMS, { first: 100 }, user.token)).rooms.edges.map((e: any) => e.node.id);

function expectBadInput(result: GqlResult, field: string) {
  expect(codeOf(result)).toBe('BAD_USER_INPUT');
  expect(result.errors![0].extensions!.field).toBe(field);
  expect(result.data ?? null).toBeNull();
}

describe('createRoom', () => {
  it('creates a PUBLIC room with the creator as OWNER, the assistant off and no messages', async () => {
    const ada = await signUp(url);
    const name = unique('room');
    const { createRoom: room } = await must(url, CREATE, { input: { name, kind: 'PUBLIC' } }, ada.token);
    expect(room).toEqual({ id: expect.any(String), name, kind: 'PUBLIC', assistantEnabled: false, viewerRole: 'OWNER', lastSeq: 0 });
    expect(await roomOf(ada, room.id)).toEqual(room);
  });

  it('creates a PRIVATE room with the assistant enabled when asked', async () => {
    const ada = await signUp(url);
    const { createRoom: room } = await must(url, CREATE, { input: { name: unique('room'), kind: 'PRIVATE', assistantEnabled: true } }, ada.token);
    expect(room).toMatchObject({ kind: 'PRIVATE', assistantEnabled: true, viewerRole: 'OWNER' });
    expect(await roomOf(ada, room.id)).toEqual(room);
  });

  it('trims the name, and accepts exactly 100 characters after trimming', async () => {
    const ada = await signUp(url);
    const trimmed = await must(url, CREATE, { input: { name: '  Lobby \n', kind: 'PUBLIC' } }, ada.token);
    expect(trimmed.createRoom.name).toBe('Lobby');
    const long = await must(url, CREATE, { input: { name: `  ${'n'.repeat(100)}  `, kind: 'PUBLIC' } }, ada.token);
    expect(long.createRoom.name).toBe('n'.repeat(100));
  });

  it.each([
    ['a blank name', '  \t\n '],
    ['an empty name', ''],
    ['a name over 100 characters', 'n'.repeat(101)],
    ['a name with a NUL character', 'lob\u0000by'],
  ])('refuses %s with BAD_USER_INPUT on name and creates no room', async (_n, name) => {
    const ada = await signUp(url);
    expectBadInput(await gql(url, CREATE, { input: { name, kind: 'PUBLIC' } }, ada.token), 'name');
    expect(await roomIdsOf(ada)).toEqual([]);
  });

  it('refuses an unknown kind as a validation error and creates no room', async () => {
    const ada = await signUp(url);
    const asVariable = await gql(url, CREATE, { input: { name: 'x', kind: 'SECRET' } }, ada.token);
    expect(codeOf(asVariable)).toBe('BAD_USER_INPUT');
    expect(asVariable.status).toBe(400);
    const asLiteral = await gql(url, `mutation { createRoom(input: { name: "x", kind: SECRET }) { id } }`, {}, ada.token);
    expect(codeOf(asLiteral)).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(await roomIdsOf(ada)).toEqual([]);
  });

  it('refuses DIRECT, a kind of the schema that only openDirectRoom makes, saying so', async () => {
    const ada = await signUp(url);
    const result = await gql(url, `mutation { createRoom(input: { name: "dd", kind: DIRECT }) { id } }`, {}, ada.token);
    expectBadInput(result, 'kind');
    expect(result.errors![0].message).toBe('kind must be PUBLIC or PRIVATE (a direct room is opened with openDirectRoom)');
    expect(await roomIdsOf(ada)).toEqual([]);
  });

  it('is UNAUTHENTICATED without a token', async () => {
    const result = await gql(url, CREATE, { input: { name: unique('room'), kind: 'PUBLIC' } });
    expect(codeOf(result)).toBe('UNAUTHENTICATED');
  });
});

describe('joinRoom', () => {
  it('joins a PUBLIC room as MEMBER, and joining again is harmless', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PUBLIC');
    const first = await must(url, JOIN, { roomId }, bob.token);
    expect(first.joinRoom).toMatchObject({ id: roomId, viewerRole: 'MEMBER', lastSeq: 0 });
    const again = await must(url, JOIN, { roomId }, bob.token);
    expect(again.joinRoom).toEqual(first.joinRoom);
    expect(await roomIdsOf(bob)).toEqual([roomId]);
    await send(url, bob, roomId, 'hello');
  });

  it('leaves one membership when the same user joins ten times at once', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PUBLIC');
    const results = await Promise.all(Array.from({ length: 10 }, () => gql(url, JOIN, { roomId }, bob.token)));
    for (const result of results) expect(result.errors).toBeUndefined();
    expect(await roomIdsOf(bob)).toEqual([roomId]);
  });

  it('keeps the OWNER an OWNER when the owner joins their own room', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada, 'PUBLIC');
    expect((await must(url, JOIN, { roomId }, ada.token)).joinRoom.viewerRole).toBe('OWNER');
    expect(await roomIdsOf(ada)).toEqual([roomId]);
  });

  it('is FORBIDDEN for a PRIVATE room, an unknown room and a malformed id, with the identical error', async () => {
    const [ada, eve] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    const privateRoom = await gql(url, JOIN, { roomId }, eve.token);
    const unknown = await gql(url, JOIN, { roomId: UNKNOWN_ID }, eve.token);
    const malformed = await gql(url, JOIN, { roomId: 'not-a-room' }, eve.token);
    expect(codeOf(privateRoom)).toBe('FORBIDDEN');
    expect(privateRoom.data ?? null).toBeNull();
    expect(unknown).toEqual(privateRoom);
    expect(malformed).toEqual(privateRoom);
    // Nothing was written: eve is still not a member.
    expect(await roomOf(eve, roomId)).toBeNull();
    expect(await roomIdsOf(eve)).toEqual([]);
  });

  it('is UNAUTHENTICATED without a token', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada, 'PUBLIC');
    expect(codeOf(await gql(url, JOIN, { roomId }))).toBe('UNAUTHENTICATED');
  });
});

describe('addMember', () => {
  it('lets the OWNER bring a user into a PRIVATE room, who then reads and writes it', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    const added = await must(url, ADD, { roomId, userId: bob.id }, ada.token);
    expect(added.addMember).toMatchObject({ id: roomId, kind: 'PRIVATE', viewerRole: 'OWNER' });
    expect(await roomOf(bob, roomId)).toMatchObject({ id: roomId, viewerRole: 'MEMBER' });
    const sent = await must(url, SEND, { input: { roomId, body: 'thanks for the invite' } }, bob.token);
    expect(sent.sendMessage).toMatchObject({ seq: 1, room: { id: roomId, viewerRole: 'MEMBER', lastSeq: 1 } });
  });

  it('is harmless when repeated, and never demotes the OWNER', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    await must(url, ADD, { roomId, userId: bob.id }, ada.token);
    const again = await gql(url, ADD, { roomId, userId: bob.id }, ada.token);
    expect(again.errors).toBeUndefined();
    expect(await roomIdsOf(bob)).toEqual([roomId]);
    expect((await roomOf(bob, roomId)).viewerRole).toBe('MEMBER');
    const self = await gql(url, ADD, { roomId, userId: ada.id }, ada.token);
    expect(self.errors).toBeUndefined();
    expect((await roomOf(ada, roomId)).viewerRole).toBe('OWNER');
  });

  it('is FORBIDDEN for a MEMBER, and adds nobody', async () => {
    const [ada, bob, carol] = await Promise.all([signUp(url), signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    await must(url, ADD, { roomId, userId: bob.id }, ada.token);
    const result = await gql(url, ADD, { roomId, userId: carol.id }, bob.token);
    expect(codeOf(result)).toBe('FORBIDDEN');
    expect(result.data ?? null).toBeNull();
    expect(await roomOf(carol, roomId)).toBeNull();
  });

  it('is FORBIDDEN for an outsider exactly as for an unknown or malformed room, and adds nobody', async () => {
    const [ada, eve, carol] = await Promise.all([signUp(url), signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    const outsider = await gql(url, ADD, { roomId, userId: carol.id }, eve.token);
    const unknown = await gql(url, ADD, { roomId: UNKNOWN_ID, userId: carol.id }, eve.token);
    const malformed = await gql(url, ADD, { roomId: 'nope', userId: carol.id }, eve.token);
    expect(codeOf(outsider)).toBe('FORBIDDEN');
    expect(unknown).toEqual(outsider);
    expect(malformed).toEqual(outsider);
    // An outsider adding themself is no back door either.
    const selfInvite = await gql(url, ADD, { roomId, userId: eve.id }, eve.token);
    expect(selfInvite).toEqual(outsider);
    expect(await roomOf(carol, roomId)).toBeNull();
    expect(await roomOf(eve, roomId)).toBeNull();
  });

  it('is NOT_FOUND for an unknown or malformed user id, and writes nothing', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    for (const userId of [UNKNOWN_ID, 'not-a-user']) {
      const result = await gql(url, ADD, { roomId, userId }, ada.token);
      expect(codeOf(result)).toBe('NOT_FOUND');
      expect(result.data ?? null).toBeNull();
    }
    expect(await roomIdsOf(ada)).toEqual([roomId]);
  });

  it('is UNAUTHENTICATED without a token', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PRIVATE');
    expect(codeOf(await gql(url, ADD, { roomId, userId: bob.id }))).toBe('UNAUTHENTICATED');
    expect(await roomOf(bob, roomId)).toBeNull();
  });
});

describe('room(id)', () => {
  it('is null for a non-member, an unknown id, a malformed id and a signed-out viewer', async () => {
    const [ada, eve] = await Promise.all([signUp(url), signUp(url)]);
    const privateRoom = await createRoom(url, ada, 'PRIVATE');
    const publicRoom = await createRoom(url, ada, 'PUBLIC');
    for (const [id, token] of [
      [privateRoom, eve.token],
      [publicRoom, eve.token], // public, but not joined
      [UNKNOWN_ID, eve.token],
      ['not-a-room', eve.token],
      [privateRoom, undefined],
    ] as const) {
      const result = await gql(url, ROOM, { id }, token);
      expect(result.errors).toBeUndefined();
      expect(result.data.room).toBeNull();
    }
  });

  it('follows the messages: lastSeq counts them and viewerRole tells the viewer apart', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada, 'PUBLIC');
    await must(url, JOIN, { roomId }, bob.token);
    await send(url, ada, roomId, 'one');
    await send(url, bob, roomId, 'two');
    expect(await roomOf(ada, roomId)).toMatchObject({ lastSeq: 2, viewerRole: 'OWNER' });
    expect(await roomOf(bob, roomId)).toMatchObject({ lastSeq: 2, viewerRole: 'MEMBER' });
    const viaMessage = await must(url, SEND, { input: { roomId, body: 'three' } }, ada.token);
    expect(viaMessage.sendMessage.room).toEqual({ id: roomId, viewerRole: 'OWNER', lastSeq: 3 });
  });
});

describe('rooms (connection)', () => {
  let ada: TestUser;
  let joined: string[];
  beforeAll(async () => {
    const other = await signUp(url);
    ada = await signUp(url);
    const a1 = await createRoom(url, ada, 'PUBLIC', unique('a1'));
    const foreignPublic = await createRoom(url, other, 'PUBLIC', unique('o1'));
    await must(url, JOIN, { roomId: foreignPublic }, ada.token);
    const a2 = await createRoom(url, ada, 'PRIVATE', unique('a2'));
    const foreignPrivate = await createRoom(url, other, 'PRIVATE', unique('o2'));
    await must(url, ADD, { roomId: foreignPrivate, userId: ada.id }, other.token);
    const a3 = await createRoom(url, ada, 'PUBLIC', unique('a3'));
    await createRoom(url, other, 'PUBLIC'); // not ada's: never listed
    joined = [a1, foreignPublic, a2, foreignPrivate, a3];
  });

  it('lists the viewer’s rooms in the order joined, with their roles', async () => {
    const page = (await must(url, ROOMS, {}, ada.token)).rooms;
    expect(page.edges.map((e: any) => e.node.id)).toEqual(joined);
    expect(page.edges.map((e: any) => e.node.viewerRole)).toEqual(['OWNER', 'MEMBER', 'OWNER', 'MEMBER', 'OWNER']);
    expect(page.pageInfo).toEqual({
      hasNextPage: false,
      hasPreviousPage: false,
      startCursor: page.edges[0].cursor,
      endCursor: page.edges[4].cursor,
    });
  });

  it('pages with first/after, with a consistent pageInfo', async () => {
    const ids = (p: any) => p.edges.map((e: any) => e.node.id);
    const p1 = (await must(url, ROOMS, { first: 2 }, ada.token)).rooms;
    expect(ids(p1)).toEqual(joined.slice(0, 2));
    expect(p1.pageInfo).toEqual({ hasNextPage: true, hasPreviousPage: false, startCursor: p1.edges[0].cursor, endCursor: p1.edges[1].cursor });
    const p2 = (await must(url, ROOMS, { first: 2, after: p1.pageInfo.endCursor }, ada.token)).rooms;
    expect(ids(p2)).toEqual(joined.slice(2, 4));
    expect(p2.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: true });
    const p3 = (await must(url, ROOMS, { first: 2, after: p2.pageInfo.endCursor }, ada.token)).rooms;
    expect(ids(p3)).toEqual(joined.slice(4));
    expect(p3.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    const past = (await must(url, ROOMS, { first: 2, after: p3.pageInfo.endCursor }, ada.token)).rooms;
    expect(past.edges).toEqual([]);
    expect(past.pageInfo).toMatchObject({ hasNextPage: false, startCursor: null, endCursor: null });
  });

  it('accepts first: 100 and answers an empty page for a user without rooms', async () => {
    expect((await must(url, ROOMS, { first: 100 }, ada.token)).rooms.edges).toHaveLength(5);
    const newcomer = await signUp(url);
    expect((await must(url, ROOMS, {}, newcomer.token)).rooms).toEqual({
      edges: [],
      pageInfo: { hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null },
    });
  });

  it('returns 20 rooms when first is not given', async () => {
    const busy = await signUp(url);
    const ids = [];
    for (let i = 0; i < 21; i++) ids.push(await createRoom(url, busy));
    const page = (await must(url, ROOMS, {}, busy.token)).rooms;
    expect(page.edges.map((e: any) => e.node.id)).toEqual(ids.slice(0, 20));
    expect(page.pageInfo.hasNextPage).toBe(true);
  });

  it('shows the current lastSeq of each room', async () => {
    await send(url, ada, joined[4], 'one');
    await send(url, ada, joined[4], 'two');
    const page = (await must(url, ROOMS, {}, ada.token)).rooms;
    expect(page.edges.find((e: any) => e.node.id === joined[4]).node.lastSeq).toBe(2);
  });

  it.each([
    ['first: 0', { first: 0 }, 'first'],
    ['first: 101', { first: 101 }, 'first'],
    ['first: -1', { first: -1 }, 'first'],
    ['a garbage cursor', { after: 'garbage!' }, 'after'],
    ['a blank cursor', { after: ' ' }, 'after'],
    ['a message cursor', { after: Buffer.from(`m1:${UNKNOWN_ID}:1`).toString('base64url') }, 'after'],
    ['a room cursor beyond the integer range', { after: Buffer.from('r1:9999999999').toString('base64url') }, 'after'],
  ])('refuses %s with BAD_USER_INPUT', async (_n, args, field) => {
    expectBadInput(await gql(url, ROOMS, args, ada.token), field);
  });

  it('is UNAUTHENTICATED without a token', async () => {
    expect(codeOf(await gql(url, ROOMS))).toBe('UNAUTHENTICATED');
  });

  it('reads after: "" as no cursor (relayStylePagination\'s end of an empty page): the first page', async () => {
    expect((await must(url, ROOMS, { first: 2, after: '' }, ada.token)).rooms).toEqual((await must(url, ROOMS, { first: 2 }, ada.token)).rooms);
  });
});

describe('private rooms probed by outsiders', () => {
  let ada: TestUser;
  let eve: TestUser;
  let roomId: string;
  beforeAll(async () => {
    [ada, eve] = await Promise.all([signUp(url), signUp(url)]);
    roomId = await createRoom(url, ada, 'PRIVATE');
    await send(url, ada, roomId, 'secret');
  });

  it('answers messages with FORBIDDEN, identical for an existing private room and a missing one', async () => {
    const existing = await gql(url, MESSAGES, { roomId }, eve.token);
    const missing = await gql(url, MESSAGES, { roomId: UNKNOWN_ID }, eve.token);
    const malformed = await gql(url, MESSAGES, { roomId: 'nope' }, eve.token);
    expect(codeOf(existing)).toBe('FORBIDDEN');
    expect(existing.data ?? null).toBeNull();
    expect(missing).toEqual(existing);
    expect(malformed).toEqual(existing);
    expect(JSON.stringify(existing)).not.toContain('secret');
  });

  it('answers sendMessage with FORBIDDEN, identical for an existing private room and a missing one, and writes nothing', async () => {
    const existing = await gql(url, SEND, { input: { roomId, body: 'let me in' } }, eve.token);
    const missing = await gql(url, SEND, { input: { roomId: UNKNOWN_ID, body: 'let me in' } }, eve.token);
    const malformed = await gql(url, SEND, { input: { roomId: 'nope', body: 'let me in' } }, eve.token);
    expect(codeOf(existing)).toBe('FORBIDDEN');
    expect(missing).toEqual(existing);
    expect(malformed).toEqual(existing);
    expect((await roomOf(ada, roomId)).lastSeq).toBe(1);
  });

  it('answers a messageAdded subscription with FORBIDDEN, identical for an existing private room and a missing one', async () => {
    const client = wsClient(server.wsUrl, eve);
    try {
      const existing = collect(client, MESSAGE_ADDED, { roomId });
      const missing = collect(client, MESSAGE_ADDED, { roomId: UNKNOWN_ID });
      const malformed = collect(client, MESSAGE_ADDED, { roomId: 'nope' });
      await Promise.all([existing.done, missing.done, malformed.done]);
      expect(existing.results).toHaveLength(1);
      expect(existing.results[0].errors?.[0].extensions?.code).toBe('FORBIDDEN');
      expect(missing.results).toEqual(existing.results);
      expect(malformed.results).toEqual(existing.results);
    } finally {
      await client.dispose();
    }
  });

  it('lets the same outsider in once the OWNER adds them', async () => {
    const carol = await signUp(url);
    expect(codeOf(await gql(url, MESSAGES, { roomId }, carol.token))).toBe('FORBIDDEN');
    await must(url, ADD, { roomId, userId: carol.id }, ada.token);
    const page = await must(url, MESSAGES, { roomId }, carol.token);
    expect(page.messages.edges).toHaveLength(1);
  });
});
