import { setTimeout as sleep } from 'node:timers/promises';
import { roomTopic } from '../../src/pubsub';
import { jest } from '@jest/globals';
import { collect, createRoom, codeOf, gql, holdRow, MESSAGE_ADDED, must, reachTheLock, send, signUp, startServer, waitFor, wsClient, type Collected, type TestServer } from '../support/harness';

let a: TestServer;
let b: TestServer;
beforeAll(async () => {
  [a, b] = await Promise.all([startServer({ HEAL_INTERVAL_MS: '300' }), startServer({ HEAL_INTERVAL_MS: '300' })]);
});
afterAll(() => Promise.all([a.stop(), b.stop()]));

const LEAVE = `mutation($r: ID!) { leaveRoom(roomId: $r) }`;
const REMOVE = `mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }`;
const JOIN = `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`;
const SET_ROLE = `mutation($r: ID!, $u: ID!, $role: Role!) { setMemberRole(roomId: $r, userId: $u, role: $role) { id } }`;

/** An owner's PUBLIC room on `server`, which bob has joined. */
async function roomWithBob(server: TestServer) {
  const [owner, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
  const roomId = await createRoom(server.url, owner);
  await must(server.url, JOIN, { r: roomId }, bob.token);
  return { owner, bob, roomId };
}

/** `roomWithBob` on `a`, bob's `messageAdded` running on `b`. */
async function bobSubscribedOnB() {
  const room = await roomWithBob(a);
  const client = wsClient(b.wsUrl, room.bob);
  const sub = collect(client, MESSAGE_ADDED, { roomId: room.roomId });
  await waitFor(() => b.app.hubs.listeners(room.roomId) === 1);
  return { ...room, client, sub };
}

/** What a `messageAdded` subscription received: each message's body, or the code it ended with. */
const outcomes = (sub: Collected<any>) => sub.results.map((r) => r.data?.messageAdded?.body ?? r.errors?.[0].extensions?.code);

describe('membership changes reach live subscriptions', () => {
  it('ends a member’s subscriptions on every instance with FORBIDDEN when they leave, and nothing later reaches them', async () => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const [ca, cb] = [wsClient(a.wsUrl, bob), wsClient(b.wsUrl, bob)];
    const [onA, onB] = [collect(ca, MESSAGE_ADDED, { roomId }), collect(cb, MESSAGE_ADDED, { roomId })];
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 1);
    await send(a.url, owner, roomId, 'before');
    await Promise.all([onA.until((r) => r.length === 1), onB.until((r) => r.length === 1)]);
    expect((await must(a.url, LEAVE, { r: roomId }, bob.token)).leaveRoom).toBe(true);
    await Promise.all([onA.done, onB.done]);
    await send(b.url, owner, roomId, 'after');
    for (const sub of [onA, onB]) expect(outcomes(sub)).toEqual(['before', 'FORBIDDEN']);
    expect(codeOf(await gql(a.url, `query($r: ID!) { messages(roomId: $r) { edges { cursor } } }`, { r: roomId }, bob.token))).toBe('FORBIDDEN');
    await Promise.all([ca.dispose(), cb.dispose()]);
  });

  it('ends a removed member’s subscriptions on every instance, and only theirs', async () => {
    const [owner, bob, carol] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url)]);
    const roomId = await createRoom(a.url, owner, 'PRIVATE');
    for (const u of [bob, carol]) await must(a.url, `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }`, { r: roomId, u: u.id }, owner.token);
    const clients = [wsClient(a.wsUrl, bob), wsClient(b.wsUrl, bob), wsClient(b.wsUrl, carol)];
    const [bobA, bobB, carolB] = clients.map((c) => collect(c, MESSAGE_ADDED, { roomId }));
    await waitFor(() => a.app.hubs.listeners(roomId) === 1 && b.app.hubs.listeners(roomId) === 2);
    await must(a.url, REMOVE, { r: roomId, u: bob.id }, owner.token);
    await Promise.all([bobA.done, bobB.done]);
    await send(a.url, owner, roomId, 'for carol');
    await carolB.until((r) => r.length === 1);
    expect(carolB.results[0].data?.messageAdded.body).toBe('for carol');
    expect(bobA.results.map((r) => r.errors?.[0].extensions?.code)).toEqual(['FORBIDDEN']);
    expect(bobB.results.map((r) => r.errors?.[0].extensions?.code)).toEqual(['FORBIDDEN']);
    await Promise.all(clients.map((c) => c.dispose()));
  });

  it('ends the subscription even when the removal signal is lost (the hub re-checks memberships)', async () => {
    const { bob, roomId, client, sub } = await bobSubscribedOnB();
    const publish = jest.spyOn(a.app.pubsub, 'publish').mockRejectedValueOnce(new Error('pub/sub down'));
    await must(a.url, LEAVE, { r: roomId }, bob.token);
    publish.mockRestore();
    await sub.done;
    expect(sub.results.map((r) => r.errors?.[0].extensions?.code)).toEqual(['FORBIDDEN']);
    await client.dispose();
  });

  it('ends a subscription whose member leaves after its access check and before it listens (that signal went unheard)', async () => {
    const c = await startServer({ HEAL_INTERVAL_MS: '60000' }); // no timed check to heal it meanwhile
    try {
      const { owner, bob, roomId } = await roomWithBob(c);
      // The subscription's hub is acquired only once the leave has been answered and signalled.
      let left!: () => void;
      const leave = new Promise<void>((resolve) => (left = resolve));
      const acquire = c.app.hubs.acquire.bind(c.app.hubs);
      let acquiring: Promise<unknown> | undefined;
      jest.spyOn(c.app.hubs, 'acquire').mockImplementationOnce((id) => (acquiring = leave.then(() => acquire(id))) as ReturnType<typeof acquire>);
      const client = wsClient(c.wsUrl, bob);
      const sub = collect(client, MESSAGE_ADDED, { roomId });
      await waitFor(() => acquiring !== undefined); // past its access check
      await must(c.url, LEAVE, { r: roomId }, bob.token);
      left();
      await acquiring;
      await send(c.url, owner, roomId, 'after');
      await sub.until((r) => r.length === 1);
      expect(outcomes(sub)).toEqual(['FORBIDDEN']);
      await client.dispose();
    } finally {
      await c.stop();
    }
  });

  it('answers a leave once its signal is out: a message sent right after the answer never reaches the member who left', async () => {
    const { owner, bob, roomId, client, sub } = await bobSubscribedOnB();
    // a's publishes leave late, as from a busy instance whose pub/sub connection has commands queued.
    const publish = a.app.pubsub.publish.bind(a.app.pubsub);
    const late = jest.spyOn(a.app.pubsub, 'publish').mockImplementation(async (topic, payload) => {
      await sleep(300);
      return publish(topic, payload);
    });
    await must(a.url, LEAVE, { r: roomId }, bob.token);
    late.mockRestore();
    await send(b.url, owner, roomId, 'sent once the leave was answered');
    await sub.done;
    expect(outcomes(sub)).toEqual(['FORBIDDEN']);
    await client.dispose();
  });

  it.each([
    ['the owner leaving', 'owner-leave', 'CONFLICT'],
    ['a non-member leaving', 'outsider-leave', 'FORBIDDEN'],
    ['a member removing someone', 'member-remove', 'FORBIDDEN'],
    ['the owner removing a non-member', 'remove-stranger', 'NOT_FOUND'],
    ['the owner removing themself', 'remove-self', 'CONFLICT'],
    ['a malformed user id', 'remove-malformed', 'NOT_FOUND'],
  ])('refuses %s', async (_name, scenario, code) => {
    const [owner, bob, eve] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url)]);
    const roomId = await createRoom(a.url, owner);
    await must(a.url, JOIN, { r: roomId }, bob.token);
    const result = {
      'owner-leave': () => gql(a.url, LEAVE, { r: roomId }, owner.token),
      'outsider-leave': () => gql(a.url, LEAVE, { r: roomId }, eve.token),
      'member-remove': () => gql(a.url, REMOVE, { r: roomId, u: owner.id }, bob.token),
      'remove-stranger': () => gql(a.url, REMOVE, { r: roomId, u: eve.id }, owner.token),
      'remove-self': () => gql(a.url, REMOVE, { r: roomId, u: owner.id }, owner.token),
      'remove-malformed': () => gql(a.url, REMOVE, { r: roomId, u: 'x' }, owner.token),
    }[scenario]!;
    expect(codeOf(await result())).toBe(code);
    const roles = await must(a.url, `query($r: ID!) { room(id: $r) { viewerRole } }`, { r: roomId }, bob.token);
    expect(roles.room.viewerRole).toBe('MEMBER');
  });
});

describe('MemberChanged in the order the changes committed (docs/guarantees.md, guarantee 5)', () => {
  it("passes on no change older than one it passed, whichever instance's publish comes first", async () => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const carol = await signUp(a.url);
    await must(a.url, JOIN, { r: roomId }, carol.token);
    const client = wsClient(b.wsUrl, carol);
    const events = collect(client, `subscription($r: ID!) { roomEvents(roomId: $r) { ... on MemberChanged { role user { id } } } }`, { r: roomId });
    const roles = () => events.results.map((r) => r.data?.roomEvents).filter((e) => e?.user?.id === bob.id).map((e) => e.role);
    try {
      await waitFor(() => b.app.hubs.listeners(roomId) === 1);
      await must(a.url, SET_ROLE, { r: roomId, u: bob.id, role: 'ADMIN' }, owner.token);
      await must(b.url, SET_ROLE, { r: roomId, u: bob.id, role: 'MEMBER' }, owner.token);
      await waitFor(() => roles().length === 2);
      // The ADMIN change's signal, had it crossed the MEMBER one on its way: older, not passed on.
      await a.app.pubsub.publish(roomTopic(roomId), { kind: 'membership', userId: bob.id, role: 'ADMIN', change: 1 });
      await must(a.url, REMOVE, { r: roomId, u: bob.id }, owner.token);
      await waitFor(() => roles().length >= 3);
      await sleep(200);
      expect(roles()).toEqual(['ADMIN', 'MEMBER', null]);
    } finally {
      events.stop();
      await client.dispose();
    }
  });
});

describe('the answer of a membership change its maker left the room right after', () => {
  it.each([
    ['setMemberRole', 'setRole'],
    ['addMember', 'addMember'],
  ] as const)('answers %s with the room, not FORBIDDEN, when the change committed and its maker left before the answer was read', async (mutation, method) => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const carol = await signUp(a.url);
    // setMemberRole: the OWNER hands over and, as ADMIN then, leaves on another device; addMember: an ADMIN adds carol and leaves.
    const maker = mutation === 'setMemberRole' ? owner : bob;
    if (mutation === 'addMember') await must(a.url, SET_ROLE, { r: roomId, u: bob.id, role: 'ADMIN' }, owner.token);
    const members = a.app.services.members;
    const made = members[method].bind(members) as (...args: unknown[]) => Promise<void>;
    const spy = jest.spyOn(members, method).mockImplementation(async (...args: unknown[]) => {
      await made(...args);
      await must(b.url, LEAVE, { r: roomId }, maker.token); // committed before the answer is read
    });
    try {
      const answer =
        mutation === 'setMemberRole'
          ? await gql(a.url, `mutation($r: ID!, $u: ID!) { setMemberRole(roomId: $r, userId: $u, role: OWNER) { id viewerRole unreadCount } }`, { r: roomId, u: bob.id }, maker.token)
          : await gql(a.url, `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id viewerRole unreadCount } }`, { r: roomId, u: carol.id }, maker.token);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(answer.errors).toBeUndefined();
      expect(answer.data).toEqual({ [mutation]: { id: roomId, viewerRole: null, unreadCount: 0 } });
    } finally {
      spy.mockRestore();
    }
    const [{ role }] = await a.app.db.dataSource.query(`SELECT role FROM memberships WHERE room_id = $1 AND user_id = $2`, [roomId, mutation === 'setMemberRole' ? bob.id : carol.id]);
    expect(role).toBe(mutation === 'setMemberRole' ? 'OWNER' : 'MEMBER');
    // What only members may read is still refused to the one who left.
    expect(codeOf(await gql(a.url, `query($r: ID!) { room(id: $r) { id } messages(roomId: $r) { edges { cursor } } }`, { r: roomId }, maker.token))).toBe('FORBIDDEN');
  });
});

describe('a change racing a removal or a role change (docs/guarantees.md, guarantee 6)', () => {
  const SEND = `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`;
  const REACT = `mutation($i: ReactionInput!) { addReaction(input: $i) { id } }`;
  const EDIT = `mutation($i: EditMessageInput!) { editMessage(input: $i) { id } }`;
  const DELETE = `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`;
  const ADD = `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }`;
  const RENAME = `mutation($i: UpdateRoomInput!) { updateRoom(input: $i) { id } }`;
  const membership = 'SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2 FOR UPDATE';

  it('answers a removal only once what the member had begun is made: nothing of theirs commits after that answer', async () => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const [own, mine] = [await send(a.url, owner, roomId, 'the owner’s'), await send(a.url, bob, roomId, 'bob’s')];
    const release = await holdRow('SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE', [roomId]); // a busy room: every change waits for its row
    const begun = [
      gql(a.url, SEND, { i: { roomId, body: 'sent as he is removed' } }, bob.token),
      gql(b.url, REACT, { i: { messageId: own.id, emoji: '👍' } }, bob.token),
      gql(b.url, EDIT, { i: { messageId: mine.id, body: 'edited as he is removed' } }, bob.token),
    ];
    await reachTheLock();
    let removed = false;
    const removal = must(a.url, REMOVE, { r: roomId, u: bob.id }, owner.token).then(() => (removed = true));
    await reachTheLock();
    expect(removed).toBe(false); // it waits for bob's changes under way, which wait for the room
    await release();
    await removal;
    for (const result of await Promise.all(begun)) expect(result.errors).toBeUndefined(); // made before the removal's answer
  });

  it('refuses what a member began before a removal or a demotion that committed while it waited', async () => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const carol = await signUp(a.url);
    await must(a.url, SET_ROLE, { r: roomId, u: bob.id, role: 'ADMIN' }, owner.token);
    const own = await send(a.url, owner, roomId, 'the owner’s');
    // Bob's changes pass their first checks, then wait for his membership, which is demoted meanwhile.
    let release = await holdRow(membership, [roomId, bob.id]);
    const asAdmin = [
      gql(a.url, DELETE, { m: own.id }, bob.token),
      gql(b.url, ADD, { r: roomId, u: carol.id }, bob.token),
      gql(a.url, RENAME, { i: { roomId, name: 'renamed by a demoted admin' } }, bob.token),
    ];
    await reachTheLock();
    await release([`UPDATE memberships SET role = 'MEMBER' WHERE room_id = $1 AND user_id = $2`, [roomId, bob.id]]);
    expect((await Promise.all(asAdmin)).map(codeOf)).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN']);
    // Then removed while his send and reaction wait.
    release = await holdRow(membership, [roomId, bob.id]);
    const asMember = [gql(a.url, SEND, { i: { roomId, body: 'sent by a removed member' } }, bob.token), gql(b.url, REACT, { i: { messageId: own.id, emoji: '👍' } }, bob.token)];
    await reachTheLock();
    await release(['DELETE FROM memberships WHERE room_id = $1 AND user_id = $2', [roomId, bob.id]]);
    expect((await Promise.all(asMember)).map(codeOf)).toEqual(['FORBIDDEN', 'FORBIDDEN']);
    const now = await must(
      a.url,
      `query($r: ID!) { messages(roomId: $r) { edges { node { body deleted reactions { emoji } } } } room(id: $r) { name members { edges { node { user { id } } } } } }`,
      { r: roomId },
      owner.token,
    );
    expect(now.messages.edges.map((e: any) => e.node)).toEqual([{ body: 'the owner’s', deleted: false, reactions: [] }]);
    expect(now.room.name).not.toBe('renamed by a demoted admin');
    expect(now.room.members.edges.map((e: any) => e.node.user.id)).toEqual([owner.id]); // carol never came in, bob is gone
  });

  it('answers CONFLICT to a reaction on a message deleted while the reaction waited, and stores none', async () => {
    const { owner, bob, roomId } = await roomWithBob(a);
    const own = await send(a.url, owner, roomId, 'soon deleted');
    const release = await holdRow('SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE', [roomId]);
    const reacting = gql(b.url, REACT, { i: { messageId: own.id, emoji: '👍' } }, bob.token);
    await reachTheLock();
    await release([`UPDATE messages SET deleted_at = now(), body = '' WHERE id = $1`, [own.id]]);
    expect(codeOf(await reacting)).toBe('CONFLICT');
  });
});
