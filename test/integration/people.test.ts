import { readFileSync } from 'node:fs';
import path from 'node:path';
import { allows, permissionTable, PERMISSIONS, type RoomAction } from '../../src/chat/access';
import type { Role } from '../../src/db/entities/membership';
import { userTopic, type MessageWire, type UserSignal } from '../../src/pubsub';
import type { UserMembership } from '../../src/chat/room-store';
import { codeOf, collect, createRoom, gql, must, send, signUp, useServer, unique, waitFor, wsClient, type TestUser } from '../support/harness';

// People and rooms (issue 11): the directory, direct rooms, roles and their permission matrix,
// mentions, full-text search and the viewer's own feed.

const server = useServer();

const JOIN = `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`;
const ADD = `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }`;
const MARK_READ = `mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { id } }`;
const REMOVE = `mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }`;
const SET_ROLE = `mutation($r: ID!, $u: ID!, $role: Role!) { setMemberRole(roomId: $r, userId: $u, role: $role) { id viewerRole } }`;
const UPDATE = `mutation($input: UpdateRoomInput!) { updateRoom(input: $input) { id name assistantEnabled } }`;
const OPEN_DM = `mutation($u: ID!) { openDirectRoom(userId: $u) { id kind name viewerRole memberCount } }`;
const LEAVE = `mutation($r: ID!) { leaveRoom(roomId: $r) }`;
const join = (user: TestUser, roomId: string) => must(server.url, JOIN, { r: roomId }, user.token);

async function setRole(owner: TestUser, roomId: string, user: TestUser, role: Role) {
  await must(server.url, SET_ROLE, { r: roomId, u: user.id, role }, owner.token);
}

describe('users', () => {
  const USERS = `query($q: String!, $first: Int) { users(query: $q, first: $first) { id username displayName isAssistant } }`;

  it('finds people by the start of their username or display name, in any case, an exact username first', async () => {
    const stem = unique('find').toLowerCase();
    const exact = await signUp(server.url, stem);
    const longer = await signUp(server.url, `${stem}_longer`);
    const byName = await must(server.url, `mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }`, {
      i: { username: unique('other'), password: 'correct horse battery', displayName: `${stem.toUpperCase()} Lovelace` },
    });
    const found = (await must(server.url, USERS, { q: stem.toUpperCase() }, exact.token)).users;
    expect(found.map((u: any) => u.id)).toEqual([exact.id, longer.id, byName.signUp.user.id]);
    const middle = (await must(server.url, USERS, { q: 'ovelace' }, exact.token)).users;
    expect(middle.map((u: any) => u.id)).not.toContain(byName.signUp.user.id); // a prefix, not anywhere
    expect((await must(server.url, USERS, { q: stem, first: 1 }, exact.token)).users).toHaveLength(1);
  });

  it('never lists the assistant, takes % and _ literally, and refuses bad input and anonymous callers', async () => {
    const ada = await signUp(server.url);
    expect((await must(server.url, USERS, { q: 'assistant' }, ada.token)).users.some((u: any) => u.isAssistant)).toBe(false);
    expect((await must(server.url, USERS, { q: '%' }, ada.token)).users).toEqual([]);
    for (const [q, first, field] of [['', 20, 'query'], ['   ', 20, 'query'], ['x'.repeat(101), 20, 'query'], ['a', 0, 'first'], ['a', 51, 'first']] as const) {
      const result = await gql(server.url, USERS, { q, first }, ada.token);
      expect([codeOf(result), result.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', field]);
    }
    expect(codeOf(await gql(server.url, USERS, { q: 'a' }))).toBe('UNAUTHENTICATED');
  });
});

describe('publicRooms and members', () => {
  const DIRECTORY = `query($q: String, $first: Int, $after: String) { publicRooms(query: $q, first: $first, after: $after) {
    edges { cursor node { id name kind viewerRole lastSeq lastReadSeq unreadCount lastMessage { id } memberCount } } pageInfo { hasNextPage endCursor } } }`;

  it('lists PUBLIC rooms whose name contains the query, member or not, page by page, showing no messages to outsiders', async () => {
    const [owner, visitor] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const tag = unique('dir');
    const names = [`b ${tag}`, `a ${tag}`, `C ${tag}`];
    const ids = [];
    for (const name of names) ids.push(await createRoom(server.url, owner, 'PUBLIC', name));
    await createRoom(server.url, owner, 'PRIVATE', `hidden ${tag}`);
    await send(server.url, owner, ids[0], 'inside');
    const first = (await must(server.url, DIRECTORY, { q: tag.toUpperCase(), first: 2 }, visitor.token)).publicRooms;
    expect(first.edges.map((e: any) => e.node.name)).toEqual([`a ${tag}`, `b ${tag}`]);
    expect(first.pageInfo.hasNextPage).toBe(true);
    // Nothing for an outsider to read: unreadCount is lastSeq - lastReadSeq for them too.
    expect(first.edges[1].node).toMatchObject({ kind: 'PUBLIC', viewerRole: null, lastSeq: 1, lastReadSeq: 1, unreadCount: 0, lastMessage: null, memberCount: 1 });
    const rest = (await must(server.url, DIRECTORY, { q: tag, first: 2, after: first.pageInfo.endCursor }, visitor.token)).publicRooms;
    expect(rest.edges.map((e: any) => e.node.name)).toEqual([`C ${tag}`]);
    expect(rest.pageInfo.hasNextPage).toBe(false);
    // Garbage, and cursors shaped as ours whose parts the database could not compare (not a UUID, a NUL in the name).
    const forged = [['d1', 'x', '-'.repeat(36)], ['d1', 'x\u0000', '00000000-0000-0000-0000-000000000000']].map((c) => Buffer.from(JSON.stringify(c)).toString('base64url'));
    for (const after of ['garbage', ...forged]) {
      const result = await gql(server.url, DIRECTORY, { after }, visitor.token);
      expect([after, codeOf(result), result.errors?.[0].extensions?.field]).toEqual([after, 'BAD_USER_INPUT', 'after']);
    }
    expect(codeOf(await gql(server.url, DIRECTORY, {}))).toBe('UNAUTHENTICATED');
  });

  it('finds people and rooms named with letters outside ASCII as written, and pages such rooms without skipping or repeating one', async () => {
    // The test database lowers ASCII letters only (the C locale): "any case" is the database's.
    const [owner, visitor] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const tag = unique('intl');
    const emile = await must(server.url, `mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }`, {
      i: { username: unique('emile'), password: 'correct horse battery', displayName: `Émile ${tag}` },
    });
    const USERS = `query($q: String!) { users(query: $q) { id } }`;
    expect((await must(server.url, USERS, { q: `Émile ${tag}` }, visitor.token)).users.map((u: any) => u.id)).toEqual([emile.signUp.user.id]);
    const names = [`Ärger ${tag}`, `zebra ${tag}`, `ärger ${tag}`, `Öl ${tag}`, `apfel ${tag}`];
    for (const name of names) await createRoom(server.url, owner, 'PUBLIC', name);
    expect((await must(server.url, DIRECTORY, { q: `Ärger ${tag}` }, visitor.token)).publicRooms.edges.map((e: any) => e.node.name)).toEqual([`Ärger ${tag}`]);
    const whole = (await must(server.url, DIRECTORY, { q: tag, first: 50 }, visitor.token)).publicRooms.edges.map((e: any) => e.node.name);
    expect([...whole].sort()).toEqual([...names].sort());
    const paged: string[] = [];
    let after: string | null = null;
    do {
      const page: any = (await must(server.url, DIRECTORY, { q: tag, first: 2, after }, visitor.token)).publicRooms;
      paged.push(...page.edges.map((e: any) => e.node.name));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } while (after && paged.length <= names.length);
    expect(paged).toEqual(whole);
  });

  it('lists members with roles in the order they came, to members and, for PUBLIC rooms, to anyone signed in', async () => {
    const [owner, bob, carol, eve] = await Promise.all([signUp(server.url), signUp(server.url), signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, owner);
    await join(bob, roomId);
    await join(carol, roomId);
    await setRole(owner, roomId, carol, 'ADMIN');
    const MEMBERS = `query($q: String) { publicRooms(query: $q) { edges { node { memberCount members(first: 2) { edges { node { role user { id } } } pageInfo { hasNextPage endCursor } } } } } }`;
    const room = (await must(server.url, MEMBERS, { q: (await roomName(owner, roomId)) }, eve.token)).publicRooms.edges[0].node;
    expect(room.memberCount).toBe(3);
    expect(room.members.edges.map((e: any) => [e.node.user.id, e.node.role])).toEqual([[owner.id, 'OWNER'], [bob.id, 'MEMBER']]);
    expect(room.members.pageInfo.hasNextPage).toBe(true);
    const privateRoom = await createRoom(server.url, owner, 'PRIVATE');
    const asMember = await must(server.url, `query($id: ID!) { room(id: $id) { members { edges { node { role } } } } }`, { id: privateRoom }, owner.token);
    expect(asMember.room.members.edges).toEqual([{ node: { role: 'OWNER' } }]);
    // A page's cursor goes on in its own room's list only.
    const PAGE = `query($id: ID!, $after: String) { room(id: $id) { members(first: 2, after: $after) { edges { node { user { id } } } } } }`;
    const next = await must(server.url, PAGE, { id: roomId, after: room.members.pageInfo.endCursor }, owner.token);
    expect(next.room.members.edges.map((e: any) => e.node.user.id)).toEqual([carol.id]);
    const elsewhere = await gql(server.url, PAGE, { id: privateRoom, after: room.members.pageInfo.endCursor }, owner.token);
    expect(elsewhere.errors?.[0]).toMatchObject({ message: 'after is a cursor of another room', extensions: { code: 'BAD_USER_INPUT', field: 'after' } });
  });

  async function roomName(user: TestUser, roomId: string): Promise<string> {
    return (await must(server.url, `query($id: ID!) { room(id: $id) { name } }`, { id: roomId }, user.token)).room.name;
  }
});

describe('direct rooms', () => {
  it('opens one DIRECT room per pair, the same one again and when both open it at once', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const opened = await Promise.all(Array.from({ length: 10 }, (_, i) => must(server.url, OPEN_DM, { u: i % 2 ? ada.id : bob.id }, (i % 2 ? bob : ada).token)));
    const ids = new Set(opened.map((o) => o.openDirectRoom.id));
    expect(ids.size).toBe(1);
    const [roomId] = ids;
    const [count] = await server.app.db.dataSource.query(`SELECT count(*)::int AS n FROM rooms WHERE kind = 'DIRECT' AND direct_key = $1`, [[ada.id, bob.id].sort().join(':')]);
    expect(count.n).toBe(1);
    const asAda = (await must(server.url, OPEN_DM, { u: bob.id }, ada.token)).openDirectRoom;
    expect(asAda).toEqual({ id: roomId, kind: 'DIRECT', name: bob.username, viewerRole: 'MEMBER', memberCount: 2 });
    expect((await must(server.url, OPEN_DM, { u: ada.id.toUpperCase() }, bob.token)).openDirectRoom).toMatchObject({ id: roomId, name: ada.username });
    await send(server.url, ada, roomId, 'just between us');
  });

  it('lets nobody else in, cannot be left or renamed, and refuses oneself, the assistant and unknown users', async () => {
    const [ada, bob, eve] = await Promise.all([signUp(server.url), signUp(server.url), signUp(server.url)]);
    const roomId = (await must(server.url, OPEN_DM, { u: bob.id }, ada.token)).openDirectRoom.id;
    expect(codeOf(await gql(server.url, JOIN, { r: roomId }, eve.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, ADD, { r: roomId, u: eve.id }, ada.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, REMOVE, { r: roomId, u: bob.id }, ada.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, LEAVE, { r: roomId }, ada.token))).toBe('CONFLICT');
    expect(codeOf(await gql(server.url, UPDATE, { input: { roomId, name: 'ours' } }, ada.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, `query($r: ID!) { messages(roomId: $r) { edges { cursor } } }`, { r: roomId }, eve.token))).toBe('FORBIDDEN');
    const [assistant] = await server.app.db.dataSource.query('SELECT id FROM users WHERE is_assistant');
    for (const [u, code] of [[ada.id, 'BAD_USER_INPUT'], [assistant.id, 'BAD_USER_INPUT'], ['00000000-0000-4000-8000-000000000000', 'NOT_FOUND'], ['nope', 'NOT_FOUND']]) {
      const result = await gql(server.url, OPEN_DM, { u }, ada.token);
      expect([u, codeOf(result)]).toEqual([u, code]);
    }
    expect(codeOf(await gql(server.url, OPEN_DM, { u: bob.id }))).toBe('UNAUTHENTICATED');
  });
});

describe('roles', () => {
  let cast: { owner: TestUser; admin: TestUser; member: TestUser; others: TestUser[] };
  beforeAll(async () => {
    const [owner, admin, member, ...others] = await Promise.all(Array.from({ length: 9 }, () => signUp(server.url)));
    cast = { owner, admin, member, others };
  });

  /** A room with an OWNER, an ADMIN, a MEMBER and two more MEMBERs (one an ADMIN target), each with a message. */
  async function stage() {
    const { owner, admin, member, others } = cast;
    const roomId = await createRoom(server.url, owner, 'PUBLIC', unique('roles'));
    for (const user of [admin, member, ...others.slice(0, 2)]) await join(user, roomId);
    await setRole(owner, roomId, admin, 'ADMIN');
    await setRole(owner, roomId, others[1], 'ADMIN');
    const byOther = await send(server.url, others[0], roomId, 'written by someone else');
    const [assistant] = await server.app.db.dataSource.query('SELECT id FROM users WHERE is_assistant');
    const [reply] = await server.app.messageStore.insert(server.app.db.dataSource.manager, {
      roomId,
      authorId: assistant.id,
      body: 'a reply someone else asked for',
      parentId: byOther.id,
      clientId: null,
      status: 'COMPLETE',
      askedMessageId: byOther.id,
      askedBy: others[0].id,
    });
    return { roomId, byOther, reply };
  }

  /** Each action of the matrix as the API call that needs it. */
  const attempts: Record<RoomAction, (actor: TestUser, s: Awaited<ReturnType<typeof stage>>) => Promise<any>> = {
    rename: (actor, s) => gql(server.url, UPDATE, { input: { roomId: s.roomId, name: 'renamed' } }, actor.token),
    configureAssistant: (actor, s) => gql(server.url, UPDATE, { input: { roomId: s.roomId, assistantEnabled: true } }, actor.token),
    addMembers: (actor, s) => gql(server.url, ADD, { r: s.roomId, u: cast.others[4].id }, actor.token),
    removeMembers: (actor, s) => gql(server.url, REMOVE, { r: s.roomId, u: cast.others[0].id }, actor.token),
    removeAdmins: (actor, s) => gql(server.url, REMOVE, { r: s.roomId, u: cast.others[1].id }, actor.token),
    deleteOthersMessages: (actor, s) => gql(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: s.byOther.id }, actor.token),
    cancelOthersReplies: (actor, s) => gql(server.url, `mutation($m: ID!) { cancelAssistant(messageId: $m) { id } }`, { m: s.reply.id }, actor.token),
    changeRoles: (actor, s) => gql(server.url, SET_ROLE, { r: s.roomId, u: cast.others[0].id, role: 'ADMIN' }, actor.token),
  };
  const cases = (Object.keys(PERMISSIONS) as RoomAction[]).flatMap((action) =>
    (['OWNER', 'ADMIN', 'MEMBER'] as Role[]).map((role) => [action, role, allows(role, action)] as const),
  );

  it('is the table the README shows', () => {
    expect(readFileSync(path.join(__dirname, '../../README.md'), 'utf8')).toContain(permissionTable());
  });

  it.each(cases)('%s by %s: allowed is %s, as the matrix in chat/access.ts says', async (action, role, allowed) => {
    const s = await stage();
    const actor = { OWNER: cast.owner, ADMIN: cast.admin, MEMBER: cast.member }[role];
    const result = await attempts[action](actor, s);
    expect(codeOf(result)).toBe(allowed ? undefined : 'FORBIDDEN');
  });

  it('hands OWNER over (the old OWNER becomes ADMIN), tells subscribers, and keeps the OWNER from leaving before it does', async () => {
    const [owner, heir] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, owner);
    await join(heir, roomId);
    const client = wsClient(server.wsUrl, heir);
    const events = collect(client, `subscription($r: ID!) { roomEvents(roomId: $r) { __typename ... on MemberChanged { roomId role user { id } } } }`, { r: roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    expect(codeOf(await gql(server.url, LEAVE, { r: roomId }, owner.token))).toBe('CONFLICT');
    expect(codeOf(await gql(server.url, SET_ROLE, { r: roomId, u: owner.id, role: 'MEMBER' }, owner.token))).toBe('CONFLICT');
    expect(codeOf(await gql(server.url, SET_ROLE, { r: roomId, u: cast.others[5].id, role: 'ADMIN' }, owner.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(server.url, SET_ROLE, { r: roomId, u: heir.id, role: 'KING' }, owner.token))).toBe('BAD_USER_INPUT');
    expect((await must(server.url, SET_ROLE, { r: roomId, u: heir.id, role: 'OWNER' }, owner.token)).setMemberRole.viewerRole).toBe('ADMIN');
    await events.until((r) => r.length >= 2);
    expect(events.results.map((r) => r.data!.roomEvents)).toEqual([
      { __typename: 'MemberChanged', roomId, role: 'OWNER', user: { id: heir.id } },
      { __typename: 'MemberChanged', roomId, role: 'ADMIN', user: { id: owner.id } },
    ]);
    expect(await must(server.url, LEAVE, { r: roomId }, owner.token)).toEqual({ leaveRoom: true });
    await events.until((r) => r.length >= 3);
    expect(events.results[2].data!.roomEvents).toEqual({ __typename: 'MemberChanged', roomId, role: null, user: { id: owner.id } });
    await client.dispose();
  });

  it('takes a role the member has already as no change: no MemberChanged', async () => {
    const [owner, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, owner);
    await join(bob, roomId);
    const client = wsClient(server.wsUrl, owner);
    const events = collect(client, `subscription($r: ID!) { roomEvents(roomId: $r) { __typename ... on MemberChanged { role } } }`, { r: roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await setRole(owner, roomId, bob, 'MEMBER');
    await setRole(owner, roomId, bob, 'ADMIN');
    await setRole(owner, roomId, bob, 'ADMIN');
    await setRole(owner, roomId, bob, 'MEMBER');
    await events.until((r) => r.length >= 2);
    await send(server.url, owner, roomId, 'after the role changes'); // a marker: whatever came before it has come
    await events.until((r) => r.length >= 3);
    expect(events.results.map((r) => r.data!.roomEvents.role ?? r.data!.roomEvents.__typename)).toEqual(['ADMIN', 'MEMBER', 'MessageAdded']);
    await client.dispose();
  });

  it('never leaves a room without its OWNER, nor lets an ADMIN remove an ADMIN, when a role change and a removal race', async () => {
    const roles = async (roomId: string, user: TestUser) =>
      (await must(server.url, `query($r: ID!) { room(id: $r) { members(first: 10) { edges { node { role } } } } }`, { r: roomId }, user.token)).room.members.edges.map((e: any) => e.node.role).sort();
    for (let round = 0; round < 6; round++) {
      const [owner, admin, x] = await Promise.all([signUp(server.url), signUp(server.url), signUp(server.url)]);
      const roomId = await createRoom(server.url, owner);
      await Promise.all([join(admin, roomId), join(x, roomId)]);
      await setRole(owner, roomId, admin, 'ADMIN');
      const promoted = round % 2 === 0 ? 'OWNER' : 'ADMIN';
      const [promotion, removal] = await Promise.all([
        gql(server.url, SET_ROLE, { r: roomId, u: x.id, role: promoted }, owner.token),
        gql(server.url, REMOVE, { r: roomId, u: x.id }, admin.token),
      ]);
      // One of the two went first: a MEMBER removed (the promotion finds no one), or the promotion
      // made (the ADMIN may not remove an ADMIN, nor anyone the OWNER).
      const outcome = [codeOf(promotion) ?? 'ok', codeOf(removal) ?? 'ok'];
      if (outcome[1] === 'ok') {
        expect(outcome).toEqual(['NOT_FOUND', 'ok']);
        expect(await roles(roomId, owner)).toEqual(['ADMIN', 'OWNER']);
      } else {
        expect(outcome).toEqual(['ok', promoted === 'OWNER' ? 'CONFLICT' : 'FORBIDDEN']);
        expect(await roles(roomId, x)).toEqual(['ADMIN', 'ADMIN', 'OWNER']); // one OWNER, whoever it is
      }
    }
  });
});

describe('mentions', () => {
  const ROOM = `query($id: ID!) { room(id: $id) { mentionCount unreadCount } }`;

  it('stores @username of members only, counts unread mentions exactly, and forgets them when read or deleted', async () => {
    const [ada, bob, outsider] = await Promise.all([signUp(server.url), signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await join(bob, roomId);
    const MENTIONS = `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id cursor mentions { id } } }`;
    const sent = async (body: string) => (await must(server.url, MENTIONS, { i: { roomId, body } }, ada.token)).sendMessage;
    const first = await sent(`hi @${bob.username.toUpperCase()} and @${outsider.username} and @${ada.username}`);
    expect(first.mentions).toEqual([{ id: bob.id }]);
    expect((await sent(`mail ${bob.username}@example.com, not a mention`)).mentions).toEqual([]);
    const second = await sent(`@${bob.username}, again`);
    expect((await must(server.url, ROOM, { id: roomId }, bob.token)).room).toEqual({ mentionCount: 2, unreadCount: 3 });
    await must(server.url, MARK_READ, { r: roomId, c: first.cursor }, bob.token);
    expect((await must(server.url, ROOM, { id: roomId }, bob.token)).room).toEqual({ mentionCount: 1, unreadCount: 2 });
    await must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: second.id }, ada.token);
    expect((await must(server.url, ROOM, { id: roomId }, bob.token)).room).toEqual({ mentionCount: 0, unreadCount: 2 });
    const edited = await must(server.url, `mutation($i: EditMessageInput!) { editMessage(input: $i) { mentions { id } } }`, { i: { messageId: first.id, body: 'no one now' } }, ada.token);
    expect(edited.editMessage.mentions).toEqual([]);
  });
});

describe('searchMessages', () => {
  const SEARCH = `query($q: String!, $r: ID, $first: Int, $after: String) { searchMessages(query: $q, roomId: $r, first: $first, after: $after) {
    edges { cursor node { id body cursor room { id } } } pageInfo { hasNextPage hasPreviousPage endCursor } } }`;
  const search = async (user: TestUser, q: string, extra: Record<string, unknown> = {}) =>
    (await must(server.url, SEARCH, { q, ...extra }, user.token)).searchMessages.edges.map((e: any) => e.node.body);

  it('finds words in the viewer’s rooms only, best match first, never a deleted message, with web-search syntax', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const word = unique('zebra').replace('_', '');
    const mine = await createRoom(server.url, ada);
    const theirs = await createRoom(server.url, bob, 'PRIVATE');
    await send(server.url, ada, mine, `a ${word} passed by`);
    await send(server.url, ada, mine, `${word} ${word} ${word}, so many ${word}s running`);
    const gone = await send(server.url, ada, mine, `the deleted ${word}`);
    await send(server.url, bob, theirs, `a private ${word}`);
    await must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: gone.id }, ada.token);
    expect(await search(ada, word)).toEqual([`${word} ${word} ${word}, so many ${word}s running`, `a ${word} passed by`]);
    expect(await search(ada, `${word} -passed`)).toEqual([`${word} ${word} ${word}, so many ${word}s running`]);
    expect(await search(ada, `"${word} passed"`)).toEqual([`a ${word} passed by`]);
    expect(await search(ada, `${word} run`)).toEqual([`${word} ${word} ${word}, so many ${word}s running`]); // stemmed
    expect(await search(bob, word)).toEqual([`a private ${word}`]);
    await join(bob, mine);
    expect(await search(bob, word, { r: mine })).toHaveLength(2);
    expect(codeOf(await gql(server.url, SEARCH, { q: word, r: theirs }, ada.token))).toBe('FORBIDDEN');
  });

  it('pages results and refuses bad input', async () => {
    const ada = await signUp(server.url);
    const word = unique('quokka').replace('_', '');
    const roomId = await createRoom(server.url, ada);
    for (let i = 0; i < 5; i++) await send(server.url, ada, roomId, `${word} number ${i}`);
    const page1 = (await must(server.url, SEARCH, { q: word, first: 2 }, ada.token)).searchMessages;
    const page2 = (await must(server.url, SEARCH, { q: word, first: 2, after: page1.pageInfo.endCursor }, ada.token)).searchMessages;
    const page3 = (await must(server.url, SEARCH, { q: word, first: 2, after: page2.pageInfo.endCursor }, ada.token)).searchMessages;
    const all = [...page1.edges, ...page2.edges, ...page3.edges].map((e: any) => e.node.id);
    expect(new Set(all).size).toBe(5);
    // Each edge's cursor is its message's own, as in every MessageConnection.
    for (const edge of [...page1.edges, ...page2.edges, ...page3.edges]) expect(edge.cursor).toBe(edge.node.cursor);
    expect([page1.pageInfo.hasNextPage, page3.pageInfo.hasNextPage, page2.pageInfo.hasPreviousPage]).toEqual([true, false, true]);
    // New matches between pages (ranked as high, newer) neither repeat a result nor push one out.
    const first = (await must(server.url, SEARCH, { q: word, first: 2 }, ada.token)).searchMessages;
    for (let i = 5; i < 8; i++) await send(server.url, ada, roomId, `${word} number ${i}`);
    const rest = (await must(server.url, SEARCH, { q: word, first: 10, after: first.pageInfo.endCursor }, ada.token)).searchMessages;
    expect([...first.edges, ...rest.edges].map((e: any) => e.node.id)).toEqual(all);
    // A result deleted, or edited out of the search, has no place to start after; nor has a message of a room the viewer is not in.
    const [gone, edited] = rest.edges.slice(-2).map((e: any) => e.node);
    await must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: gone.id }, ada.token);
    await must(server.url, `mutation($m: ID!) { editMessage(input: { messageId: $m, body: "nothing to find" }) { id } }`, { m: edited.id }, ada.token);
    const bob = await signUp(server.url);
    const elsewhere = await createRoom(server.url, bob, 'PRIVATE');
    const hidden = await send(server.url, bob, elsewhere, `${word} hidden`);
    for (const cursor of [gone.cursor, edited.cursor, hidden.cursor]) {
      const result = await gql(server.url, SEARCH, { q: word, after: cursor }, ada.token);
      expect(result.errors?.[0]).toMatchObject({ message: 'after is not a result of this search (deleted or edited since): search again', extensions: { code: 'BAD_USER_INPUT', field: 'after' } });
    }
    const roomCursor = Buffer.from('r1:2').toString('base64url');
    const otherRoom = await gql(server.url, SEARCH, { q: word, r: roomId, after: Buffer.from(`m1:${elsewhere}:1`).toString('base64url') }, ada.token);
    expect(otherRoom.errors?.[0].message).toBe('after is a cursor of another room');
    for (const [vars, field] of [[{ q: '' }, 'query'], [{ q: 'x'.repeat(101) }, 'query'], [{ q: word, first: 51 }, 'first'], [{ q: word, after: 'garbage' }, 'after'], [{ q: word, after: roomCursor }, 'after'], [{ q: word, after: Buffer.from('m1:x:2').toString('base64url') }, 'after'], [{ q: word, after: Buffer.from(`m1:${roomId}:99999999999`).toString('base64url') }, 'after']] as const) {
      const result = await gql(server.url, SEARCH, vars, ada.token);
      expect([codeOf(result), result.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', field]);
    }
    expect(codeOf(await gql(server.url, SEARCH, { q: word }))).toBe('UNAUTHENTICATED');
  });
});

describe('myEvents', () => {
  const MY_EVENTS = `subscription { myEvents { __typename
    ... on RoomActivity { room { id unreadCount } message { body } }
    ... on Mentioned { message { body } }
    ... on AddedToRoom { room { id kind } }
    ... on RemovedFromRoom { roomId }
    ... on ReadStateChanged { room { id lastReadSeq unreadCount } } } }`;

  /** Ada's room with Bob in it, and Bob's myEvents selecting `query`, open. */
  const bobsFeed = async (query: string) => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await join(bob, roomId);
    const client = wsClient(server.wsUrl, bob);
    const feed = collect(client, query);
    await waitFor(() => server.app.services.activity.size === 1);
    return { ada, bob, roomId, client, feed };
  };

  /**
   * Holds the room's new messages from this instance's feeds (only this room's: the test Redis
   * carries the activity of every suite's servers): `held(count)` waits until `count` have come,
   * `routeHeld()` hands them on, in order.
   */
  const holdActivity = (roomId: string) => {
    const router = server.app.services.activity as unknown as { route(message: MessageWire): void };
    const held: MessageWire[] = [];
    const pass = router.route.bind(router);
    const route = jest.spyOn(router, 'route').mockImplementation((message) => (message.roomId === roomId ? void held.push(message) : pass(message)));
    return {
      held: (count: number) => waitFor(() => held.length === count, 10_000, () => JSON.stringify(held.map((m) => m.seq))),
      routeHeld: () => {
        route.mockRestore();
        for (const message of held) router.route(message);
      },
    };
  };

  /** The activity router's internals these tests drive: its checks (a reconnect's with `everything`), the signals it is told. */
  type Router = {
    onUserSignal(feed: unknown, signal: UserSignal): void;
    check(everything?: boolean): Promise<void>;
    store: { userMemberships(userIds: string[]): Promise<unknown[]> };
    timer?: NodeJS.Timeout;
    checking: boolean;
    healIntervalMs: number;
  };

  /** Runs `steps` with no timed check of the router's own: they run the checks themselves. */
  const withoutTimedChecks = async (steps: (router: Router) => Promise<void>) => {
    const router = server.app.services.activity as unknown as Router;
    clearInterval(router.timer);
    await waitFor(() => !router.checking);
    try {
      await steps(router);
    } finally {
      router.timer = setInterval(() => void router.check(), router.healIntervalMs);
      router.timer.unref();
    }
  };

  /** Deletes `messageId` as `by`, the signal of the mentions it changes lost (as pub/sub loses what comes while it reconnects). */
  const deleteUnheard = async (router: Router, by: TestUser, messageId: string) => {
    const pass = router.onUserSignal.bind(router);
    const lost = jest.spyOn(router, 'onUserSignal').mockImplementation((f, signal) => (signal.kind === 'read' && signal.mentionsAt !== undefined ? undefined : pass(f, signal)));
    try {
      await must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: messageId }, by.token);
      await new Promise((resolve) => setTimeout(resolve, 300)); // the signal has come and gone
    } finally {
      lost.mockRestore();
    }
  };

  it('tells the viewer of activity, mentions, rooms joined and left, and reads on another device, on one subscription', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const rooms = await Promise.all(Array.from({ length: 3 }, () => createRoom(server.url, ada)));
    for (const roomId of rooms) await join(bob, roomId);
    const client = wsClient(server.wsUrl, bob);
    const feed = collect(client, MY_EVENTS);
    await waitFor(() => server.app.services.activity.size === 1);
    await send(server.url, ada, rooms[2], 'news in the third room');
    await send(server.url, ada, rooms[0], `@${bob.username} look`);
    const dm = (await must(server.url, OPEN_DM, { u: bob.id }, ada.token)).openDirectRoom.id;
    await send(server.url, ada, dm, 'psst');
    const read = await send(server.url, ada, rooms[2], 'second news');
    await must(server.url, MARK_READ, { r: rooms[2], c: read.cursor }, bob.token);
    await must(server.url, REMOVE, { r: rooms[1], u: bob.id }, ada.token);
    await send(server.url, ada, rooms[1], 'after bob left');
    await feed.until((r) => r.length >= 8);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RoomActivity', room: { id: rooms[2], unreadCount: 1 }, message: { body: 'news in the third room' } },
      { __typename: 'RoomActivity', room: { id: rooms[0], unreadCount: 1 }, message: { body: `@${bob.username} look` } },
      { __typename: 'Mentioned', message: { body: `@${bob.username} look` } },
      { __typename: 'AddedToRoom', room: { id: dm, kind: 'DIRECT' } },
      { __typename: 'RoomActivity', room: { id: dm, unreadCount: 1 }, message: { body: 'psst' } },
      { __typename: 'RoomActivity', room: { id: rooms[2], unreadCount: 2 }, message: { body: 'second news' } },
      { __typename: 'ReadStateChanged', room: { id: rooms[2], lastReadSeq: 2, unreadCount: 0 } },
      { __typename: 'RemovedFromRoom', roomId: rooms[1] },
    ]);
    await send(server.url, ada, rooms[0], 'one more, to show nothing came from the room bob left');
    await feed.until((r) => r.length >= 9);
    expect(feed.results).toHaveLength(9);
    await client.dispose();
  });

  it('never moves a room\'s read state back: a read elsewhere ahead of the messages this feed delivered', async () => {
    const READ_STATES = `subscription { myEvents { __typename
      ... on RoomActivity { room { lastSeq lastReadSeq unreadCount } message { seq } }
      ... on ReadStateChanged { room { lastSeq lastReadSeq unreadCount } } } }`;
    const { ada, bob, roomId, client, feed } = await bobsFeed(READ_STATES);
    await send(server.url, ada, roomId, 'one');
    await feed.until((r) => r.length === 1);
    // Messages 2 and 3 reach this instance's feeds only after bob has read them on another device.
    const activity = holdActivity(roomId);
    await send(server.url, ada, roomId, 'two');
    const three = await send(server.url, ada, roomId, 'three');
    await activity.held(2);
    await must(server.url, MARK_READ, { r: roomId, c: three.cursor }, bob.token);
    await feed.until((r) => r.length === 2);
    activity.routeHeld();
    await feed.until((r) => r.length === 4);
    const read = { lastSeq: 3, lastReadSeq: 3, unreadCount: 0 };
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RoomActivity', room: { lastSeq: 1, lastReadSeq: 0, unreadCount: 1 }, message: { seq: 1 } },
      { __typename: 'ReadStateChanged', room: read },
      { __typename: 'RoomActivity', room: read, message: { seq: 2 } },
      { __typename: 'RoomActivity', room: read, message: { seq: 3 } },
    ]);
    await client.dispose();
  });

  it('counts mentionCount within the read state an event shows: no mention past its lastSeq', async () => {
    const { ada, bob, roomId, client, feed } = await bobsFeed(`subscription { myEvents { ... on RoomActivity { room { lastSeq unreadCount mentionCount } message { seq } } } }`);
    // Both messages are stored before the first one's event is told.
    const activity = holdActivity(roomId);
    await send(server.url, ada, roomId, 'plain');
    await send(server.url, ada, roomId, `@${bob.username} look`);
    await activity.held(2);
    activity.routeHeld();
    await feed.until((r) => r.length === 2);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { room: { lastSeq: 1, unreadCount: 1, mentionCount: 0 }, message: { seq: 1 } },
      { room: { lastSeq: 2, unreadCount: 2, mentionCount: 1 }, message: { seq: 2 } },
    ]);
    await client.dispose();
  });

  it('tells the room again (ReadStateChanged) when an edit or a deletion changes its unread mentions, and not for a message read', async () => {
    const { ada, bob, roomId, client, feed } = await bobsFeed(
      `subscription { myEvents { __typename ... on RoomActivity { message { seq } } ... on ReadStateChanged { room { lastSeq lastReadSeq mentionCount } } } }`,
    );
    const edit = (id: string, body: string) => must(server.url, `mutation($i: EditMessageInput!) { editMessage(input: $i) { id } }`, { i: { messageId: id, body } }, ada.token);
    const remove = (id: string) => must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: id }, ada.token);
    const read = await send(server.url, ada, roomId, `@${bob.username} one`);
    await must(server.url, MARK_READ, { r: roomId, c: read.cursor }, bob.token);
    const [two, three] = [await send(server.url, ada, roomId, `@${bob.username} two`), await send(server.url, ada, roomId, 'three')];
    await feed.until((r) => r.length === 6);
    await edit(read.id, 'one, mentioning no one'); // read already: bob's count stays
    await remove(two.id);
    await edit(three.id, `three, now for @${bob.username}`);
    await edit(three.id, 'three again'); // text only
    await send(server.url, ada, roomId, 'four');
    await feed.until((r) => r.length === 10);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RoomActivity', message: { seq: 1 } },
      { __typename: 'Mentioned' },
      { __typename: 'ReadStateChanged', room: { lastSeq: 1, lastReadSeq: 1, mentionCount: 0 } },
      { __typename: 'RoomActivity', message: { seq: 2 } },
      { __typename: 'Mentioned' },
      { __typename: 'RoomActivity', message: { seq: 3 } },
      { __typename: 'ReadStateChanged', room: { lastSeq: 3, lastReadSeq: 1, mentionCount: 0 } }, // two deleted
      { __typename: 'ReadStateChanged', room: { lastSeq: 3, lastReadSeq: 1, mentionCount: 1 } }, // three mentions bob (no Mentioned: an edit)
      { __typename: 'ReadStateChanged', room: { lastSeq: 3, lastReadSeq: 1, mentionCount: 0 } }, // and no longer
      { __typename: 'RoomActivity', message: { seq: 4 } },
    ]);
    await client.dispose();
  });

  it('tells each room with unread messages again after a pub/sub reconnect, whose signal of a changed mention count may have been lost', async () => {
    const { ada, bob, roomId, client, feed } = await bobsFeed(
      `subscription { myEvents { __typename ... on RoomActivity { message { seq } } ... on ReadStateChanged { room { id lastSeq lastReadSeq mentionCount } } } }`,
    );
    const [other, read] = await Promise.all([createRoom(server.url, ada), createRoom(server.url, ada)]);
    await Promise.all([join(bob, other), join(bob, read)]);
    await feed.until((r) => r.length === 2); // the two rooms joined
    const mention = await send(server.url, ada, roomId, `@${bob.username} look`);
    await send(server.url, ada, other, 'unread, no mention');
    const seen = await send(server.url, ada, read, 'read');
    await must(server.url, MARK_READ, { r: read, c: seen.cursor }, bob.token);
    await feed.until((r) => r.length === 7); // three activities, a Mentioned, the read
    await withoutTimedChecks(async (router) => {
      await deleteUnheard(router, ada, mention.id);
      expect(feed.results).toHaveLength(7);
      await router.check(true); // what a pub/sub reconnect runs
      await feed.until((r) => r.length === 9);
    });
    const told = feed.results.slice(7).map((r) => r.data!.myEvents.room);
    expect(told.sort((a: { id: string }, b: { id: string }) => (a.id === roomId ? -1 : b.id === roomId ? 1 : 0))).toEqual([
      { id: roomId, lastSeq: 1, lastReadSeq: 0, mentionCount: 0 },
      { id: other, lastSeq: 1, lastReadSeq: 0, mentionCount: 0 },
    ]);
    await client.dispose();
  });

  it('tells the rooms with unread messages at the next check to a feed a signal changed while the reconnect\'s check read its rooms', async () => {
    const { ada, bob, roomId, client, feed } = await bobsFeed(
      `subscription { myEvents { __typename ... on RoomActivity { message { seq } } ... on ReadStateChanged { room { id lastSeq lastReadSeq mentionCount } } } }`,
    );
    const other = await createRoom(server.url, ada);
    await join(bob, other);
    await feed.until((r) => r.length === 1); // the room joined
    const mention = await send(server.url, ada, roomId, `@${bob.username} look`);
    const seen = await send(server.url, ada, other, 'read on another device during the check');
    await feed.until((r) => r.length === 4);
    await withoutTimedChecks(async (router) => {
      await deleteUnheard(router, ada, mention.id);
      // While the reconnect's check reads bob's rooms, bob reads the other room elsewhere: its signal changes the feed.
      const read = router.store.userMemberships.bind(router.store);
      const during = jest.spyOn(router.store, 'userMemberships').mockImplementationOnce(async (userIds) => {
        await must(server.url, MARK_READ, { r: other, c: seen.cursor }, bob.token);
        await feed.until((r) => r.length === 5);
        return read(userIds);
      });
      try {
        await router.check(true);
      } finally {
        during.mockRestore();
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(feed.results.map((r) => r.data!.myEvents.room?.id)).toEqual([undefined, undefined, undefined, undefined, other]); // not yet told
      await router.check(); // the next timed check
      await feed.until((r) => r.length === 6);
      expect(feed.results[5].data!.myEvents.room).toEqual({ id: roomId, lastSeq: 1, lastReadSeq: 0, mentionCount: 0 });
      await router.check();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(feed.results).toHaveLength(6); // once
    });
    await client.dispose();
  });

  it('does not follow a room left while the feed starts (the leave signalled during its read of the viewer\'s rooms)', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const [left, kept] = await Promise.all([createRoom(server.url, ada), createRoom(server.url, ada)]);
    for (const roomId of [left, kept]) await join(bob, roomId);
    const signals: UserSignal[] = [];
    const off = await server.app.pubsub.subscribe(userTopic(bob.id), (signal) => signals.push(signal));
    // The feed's read of bob's rooms answers only once his leave has been signalled to this instance.
    const store = (server.app.services.activity as unknown as { store: { userMemberships(ids: string[]): Promise<UserMembership[]> } }).store;
    const userMemberships = store.userMemberships.bind(store);
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const read = jest.spyOn(store, 'userMemberships').mockImplementationOnce(async (ids) => {
      const rows = await userMemberships(ids);
      await answered;
      return rows;
    });
    const client = wsClient(server.wsUrl, bob);
    const feed = collect(client, MY_EVENTS);
    await waitFor(() => read.mock.calls.length === 1);
    await must(server.url, LEAVE, { r: left }, bob.token);
    await waitFor(() => signals.some((s) => s.kind === 'removed'));
    answer();
    await waitFor(() => server.app.services.activity.size === 1);
    await send(server.url, ada, left, 'after bob left');
    await send(server.url, ada, kept, 'in the room bob kept');
    await feed.until((r) => r.length === 2);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RemovedFromRoom', roomId: left },
      { __typename: 'RoomActivity', room: { id: kept, unreadCount: 1 }, message: { body: 'in the room bob kept' } },
    ]);
    await off();
    await client.dispose();
  });

  it('answers BAD_REQUEST over HTTP: subscriptions run over WebSocket', async () => {
    expect(codeOf(await gql(server.url, MY_EVENTS))).toBe('BAD_REQUEST');
  });
});
