import { PostgresQueryRunner } from 'typeorm/driver/postgres/PostgresQueryRunner';
import { ReactionEmoji1765400000000 } from '../../src/db/migrations/1765400000000-reaction-emoji';
import { codeOf, collect, createRoom, gql, must, send, signUp, useServer, unique, waitFor, wsClient, type TestUser } from '../support/harness';

// Messages that change (docs/guarantees.md, guarantees 8–10): editMessage, deleteMessage,
// addReaction/removeReaction, thread summaries, and roomEvents resuming every change by cursor.

const server = useServer();

const FIELDS = `id seq body editedAt deleted replyCount lastReplyAt reactions { emoji count viewerReacted } status`;
const EDIT = `mutation($input: EditMessageInput!) { editMessage(input: $input) { ${FIELDS} } }`;
const DELETE = `mutation($m: ID!) { deleteMessage(messageId: $m) { ${FIELDS} } }`;
const ADD = `mutation($input: ReactionInput!) { addReaction(input: $input) { ${FIELDS} } }`;
const REMOVE = `mutation($input: ReactionInput!) { removeReaction(input: $input) { ${FIELDS} } }`;
const ROOM_EVENTS = `subscription($roomId: ID!, $after: String) { roomEvents(roomId: $roomId, after: $after) { __typename
  ... on MessageAdded { cursor message { ${FIELDS} } }
  ... on MessageUpdated { cursor message { ${FIELDS} } } } }`;

const edit = (user: TestUser, messageId: string, body: string) => gql(server.url, EDIT, { input: { messageId, body } }, user.token);
const del = (user: TestUser, messageId: string) => gql(server.url, DELETE, { m: messageId }, user.token);
const react = (user: TestUser, messageId: string, emoji: string, on = true) => gql(server.url, on ? ADD : REMOVE, { input: { messageId, emoji } }, user.token);
const join = (user: TestUser, roomId: string) => must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, user.token);

/** A room with its OWNER and a plain member, and a message by the member. */
async function roomWithMember() {
  const [owner, member, outsider] = await Promise.all([signUp(server.url), signUp(server.url), signUp(server.url)]);
  const roomId = await createRoom(server.url, owner);
  await join(member, roomId);
  const message = await send(server.url, member, roomId, 'original text');
  return { owner, member, outsider, roomId, message };
}

/** The room's change number now. */
async function lastChange(roomId: string): Promise<number> {
  const [row] = await server.app.db.dataSource.query('SELECT last_change FROM rooms WHERE id = $1', [roomId]);
  return row.last_change;
}

/** Decodes an event cursor to its change number. */
/** What the instance reads on its own timers (the hubs' check, the session sweep), not for the operation a test counts. */
const BACKGROUND = /FROM rooms WHERE id = ANY\(\$1::uuid\[\]\)|FROM memberships WHERE \(room_id, user_id\) IN|FROM sessions WHERE id = ANY/;
/** The queries a spy saw, without the instance's background reads. */
const counted = (query: jest.SpyInstance) => query.mock.calls.filter(([sql]) => !BACKGROUND.test(typeof sql === 'string' ? sql : String((sql as { text?: string })?.text))).length;

const changeOf = (cursor: string) => Number(Buffer.from(cursor, 'base64url').toString('utf8').split(':')[2]);

describe('Message.version', () => {
  it('is the message\'s latest change number: each edit, reaction and deletion raises it, a change that changes nothing does not', async () => {
    const { member, roomId, message } = await roomWithMember();
    const VERSION = `query($r: ID!) { messages(roomId: $r, last: 1) { edges { node { version } } } }`;
    const version = async () => (await must(server.url, VERSION, { r: roomId }, member.token)).messages.edges[0].node.version as number;
    const versions = [await version()];
    expect(versions[0]).toBe(await lastChange(roomId));
    for (const change of [() => edit(member, message.id, 'v2'), () => edit(member, message.id, 'v2'), () => react(member, message.id, '👍'), () => del(member, message.id)]) {
      await change();
      versions.push(await version());
    }
    expect(versions.map((v) => v - versions[0])).toEqual([0, 1, 1, 2, 3]);
    expect(versions.at(-1)).toBe(await lastChange(roomId));
  });
});

describe('editMessage', () => {
  it('lets the author change the body, sets editedAt, and takes one change; the same body again changes nothing', async () => {
    const { member, roomId, message } = await roomWithMember();
    const before = await lastChange(roomId);
    const edited = await edit(member, message.id, 'better text');
    expect(edited.errors).toBeUndefined();
    expect(edited.data.editMessage).toMatchObject({ id: message.id, seq: message.seq, body: 'better text', deleted: false });
    expect(Date.parse(edited.data.editMessage.editedAt)).not.toBeNaN();
    expect(await lastChange(roomId)).toBe(before + 1);
    const again = await edit(member, message.id, 'better text');
    expect(again.data.editMessage).toEqual(edited.data.editMessage);
    expect(await lastChange(roomId)).toBe(before + 1);
  });

  it('answers FORBIDDEN to the OWNER, another member, an outsider and an unknown or malformed id alike, and UNAUTHENTICATED without a token', async () => {
    const { owner, outsider, roomId, message } = await roomWithMember();
    const other = await signUp(server.url);
    await join(other, roomId);
    for (const user of [owner, other, outsider]) expect(codeOf(await edit(user, message.id, 'hijacked'))).toBe('FORBIDDEN');
    const foreign = await edit(outsider, message.id, 'x');
    const missing = await edit(outsider, '00000000-0000-4000-8000-000000000000', 'x');
    const malformed = await edit(outsider, 'not-an-id', 'x');
    expect(missing.errors).toEqual(foreign.errors);
    expect(malformed.errors).toEqual(foreign.errors);
    expect(codeOf(await gql(server.url, EDIT, { input: { messageId: message.id, body: 'x' } }))).toBe('UNAUTHENTICATED');
    const stored = await server.app.db.dataSource.query('SELECT body, edited_at FROM messages WHERE id = $1', [message.id]);
    expect(stored[0]).toEqual({ body: 'original text', edited_at: null });
  });

  it('applies the rules of a send to the new body, naming the field, and changes nothing', async () => {
    const { member, roomId, message } = await roomWithMember();
    const before = await lastChange(roomId);
    for (const body of ['', '   ', 'x'.repeat(4001), 'nul\u0000byte', 'lone \uD800 surrogate']) {
      const result = await edit(member, message.id, body);
      expect(codeOf(result)).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0].extensions?.field).toBe('body');
    }
    expect(codeOf(await edit(member, message.id, '😀'.repeat(4000)))).toBeUndefined(); // 4,000 characters as people count them
    expect(await lastChange(roomId)).toBe(before + 1);
  });

  it('refuses a deleted message with CONFLICT', async () => {
    const { member, message } = await roomWithMember();
    await del(member, message.id);
    expect(codeOf(await edit(member, message.id, 'back from the dead'))).toBe('CONFLICT');
  });
});

describe('deleteMessage', () => {
  it('leaves a tombstone that keeps its seq, erases the body in the database, and a second delete changes nothing', async () => {
    const { member, roomId, message } = await roomWithMember();
    await react(member, message.id, '👍');
    const before = await lastChange(roomId);
    const deleted = await del(member, message.id);
    expect(deleted.data.deleteMessage).toMatchObject({ id: message.id, seq: message.seq, body: '', deleted: true, reactions: [] });
    const [row] = await server.app.db.dataSource.query('SELECT body, deleted_at FROM messages WHERE id = $1', [message.id]);
    expect(row.body).toBe('');
    expect(row.deleted_at).not.toBeNull();
    const [{ count }] = await server.app.db.dataSource.query('SELECT count(*)::int AS count FROM reactions WHERE message_id = $1', [message.id]);
    expect(count).toBe(0);
    expect(await lastChange(roomId)).toBe(before + 1);
    expect((await del(member, message.id)).data.deleteMessage).toEqual(deleted.data.deleteMessage);
    expect(await lastChange(roomId)).toBe(before + 1);
    const page = await must(server.url, `query($r: ID!) { messages(roomId: $r) { edges { node { seq deleted body } } } }`, { r: roomId }, member.token);
    expect(page.messages.edges.map((e: any) => e.node)).toEqual([{ seq: 1, deleted: true, body: '' }]);
  });

  it('lets the author, the OWNER and an ADMIN delete, and answers FORBIDDEN to another member and an outsider', async () => {
    const { owner, member, outsider, roomId } = await roomWithMember();
    const [admin, other] = await Promise.all([signUp(server.url), signUp(server.url)]);
    await Promise.all([join(admin, roomId), join(other, roomId)]);
    await server.app.db.dataSource.query(`UPDATE memberships SET role = 'ADMIN' WHERE room_id = $1 AND user_id = $2`, [roomId, admin.id]);
    const byOwner = await send(server.url, member, roomId, 'one');
    const byAdmin = await send(server.url, member, roomId, 'two');
    const byAuthor = await send(server.url, member, roomId, 'three');
    const ownersOwn = await send(server.url, owner, roomId, 'the owner writes');
    for (const user of [other, outsider]) expect(codeOf(await del(user, byAuthor.id))).toBe('FORBIDDEN');
    expect(codeOf(await del(other, ownersOwn.id))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, DELETE, { m: byAuthor.id }))).toBe('UNAUTHENTICATED');
    expect((await del(owner, byOwner.id)).data.deleteMessage.deleted).toBe(true);
    expect((await del(admin, byAdmin.id)).data.deleteMessage.deleted).toBe(true);
    expect((await del(member, byAuthor.id)).data.deleteMessage.deleted).toBe(true);
    expect((await del(admin, ownersOwn.id)).data.deleteMessage.deleted).toBe(true);
  });

  it('keeps the replies of a deleted thread root, and recounts the root when a reply is deleted', async () => {
    const { member, roomId, message: root } = await roomWithMember();
    const r1 = await send(server.url, member, roomId, 'reply 1', { parentId: root.id });
    const r2 = await send(server.url, member, roomId, 'reply 2', { parentId: root.id });
    await del(member, r2.id);
    const thread = await must(
      server.url,
      `query($r: ID!, $t: ID!) { messages(roomId: $r, threadId: $t) { edges { node { id deleted replyCount lastReplyAt createdAt } } } }`,
      { r: roomId, t: root.id },
      member.token,
    );
    const [rootNode, r1Node] = thread.messages.edges.map((e: any) => e.node);
    expect(rootNode).toMatchObject({ id: root.id, replyCount: 1, lastReplyAt: r1Node.createdAt });
    await del(member, root.id);
    const after = await must(server.url, `query($r: ID!, $t: ID!) { messages(roomId: $r, threadId: $t) { edges { node { id deleted } } } }`, { r: roomId, t: root.id }, member.token);
    expect(after.messages.edges.map((e: any) => e.node)).toEqual([
      { id: root.id, deleted: true },
      { id: r1.id, deleted: false },
      { id: r2.id, deleted: true },
    ]);
  });
});

describe('reactions', () => {
  it('groups reactions by emoji with counts, tells each viewer whether they reacted, and removes them', async () => {
    const { owner, member, roomId, message } = await roomWithMember();
    await react(member, message.id, '👍');
    await react(owner, message.id, '👍');
    const added = await react(owner, message.id, ':shipit:');
    expect(added.data.addReaction.reactions).toEqual([
      { emoji: '👍', count: 2, viewerReacted: true },
      { emoji: ':shipit:', count: 1, viewerReacted: true },
    ]);
    const asMember = await must(server.url, `query($r: ID!) { messages(roomId: $r) { edges { node { reactions { emoji count viewerReacted } } } } }`, { r: roomId }, member.token);
    expect(asMember.messages.edges[0].node.reactions).toEqual([
      { emoji: '👍', count: 2, viewerReacted: true },
      { emoji: ':shipit:', count: 1, viewerReacted: false },
    ]);
    const removed = await react(owner, message.id, '👍', false);
    expect(removed.data.removeReaction.reactions).toEqual([
      { emoji: '👍', count: 1, viewerReacted: false },
      { emoji: ':shipit:', count: 1, viewerReacted: true },
    ]);
  });

  it('is idempotent: a repeated or racing reaction is one row and one change; removing an absent one changes nothing', async () => {
    const { member, roomId, message } = await roomWithMember();
    const before = await lastChange(roomId);
    const results = await Promise.all(Array.from({ length: 10 }, () => react(member, message.id, '🎉')));
    for (const r of results) expect(r.errors).toBeUndefined();
    expect(await lastChange(roomId)).toBe(before + 1);
    expect(results[9].data.addReaction.reactions).toEqual([{ emoji: '🎉', count: 1, viewerReacted: true }]);
    await Promise.all(Array.from({ length: 5 }, () => react(member, message.id, '🎉', false)));
    expect(await lastChange(roomId)).toBe(before + 2);
    expect((await react(member, message.id, '🎉', false)).data.removeReaction.reactions).toEqual([]);
    expect(await lastChange(roomId)).toBe(before + 2);
  });

  it('counts exactly when many members react at once', async () => {
    const { owner, roomId, message } = await roomWithMember();
    const users = await Promise.all(Array.from({ length: 12 }, () => signUp(server.url)));
    await Promise.all(users.map((u) => join(u, roomId)));
    await Promise.all(users.map((u) => react(u, message.id, '❤️')));
    const seen = await must(server.url, `query($r: ID!) { messages(roomId: $r) { edges { node { reactions { emoji count viewerReacted } } } } }`, { r: roomId }, owner.token);
    expect(seen.messages.edges[0].node.reactions).toEqual([{ emoji: '❤️', count: 12, viewerReacted: false }]);
  });

  it('takes an emoji with or without its emoji presentation selector as one reaction (❤ and ❤️), shown fully qualified', async () => {
    const { owner, member, message } = await roomWithMember();
    await react(member, message.id, '\u2764'); // ❤, as some keyboards and bots send it
    const both = await react(owner, message.id, '\u2764\uFE0F'); // ❤️
    expect(both.data.addReaction.reactions).toEqual([{ emoji: '\u2764\uFE0F', count: 2, viewerReacted: true }]);
    const removed = await react(member, message.id, '\u2764\uFE0F', false);
    expect(removed.data.removeReaction.reactions).toEqual([{ emoji: '\u2764\uFE0F', count: 1, viewerReacted: false }]);
    expect((await react(owner, message.id, '\u2764', false)).data.removeReaction.reactions).toEqual([]);
  });

  it('is idempotent across an emoji\'s forms: ❤️ after ❤ by the same member is no change', async () => {
    const { member, roomId, message } = await roomWithMember();
    await react(member, message.id, '\u2764');
    const before = await lastChange(roomId);
    const again = await react(member, message.id, '\u2764\uFE0F');
    expect(again.data.addReaction.reactions).toEqual([{ emoji: '\u2764\uFE0F', count: 1, viewerReacted: true }]);
    expect(await lastChange(roomId)).toBe(before);
  });

  it('merges the reactions kept before emoji were taken fully qualified once its migration runs; running it again changes nothing', async () => {
    const { owner, member, roomId, message } = await roomWithMember();
    const third = await signUp(server.url);
    await join(third, roomId);
    const db = server.app.db.dataSource;
    // As kept before: ❤ and ❤️ apart, the member with both; a reaction already qualified; a short name.
    await db.query(
      `INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES
         ($1, $2, '\u2764', now() - interval '3 minutes'), ($1, $2, '\u2764\uFE0F', now() - interval '1 minute'),
         ($1, $3, '\u2764', now() - interval '2 minutes'), ($1, $4, '\u{1F44D}', now() - interval '30 seconds'), ($1, $4, ':shipit:', now())`,
      [message.id, member.id, owner.id, third.id],
    );
    const query = `query($r: ID!) { messages(roomId: $r) { edges { node { reactions { emoji count viewerReacted } } } } }`;
    const reactionsSeen = async () => (await must(server.url, query, { r: roomId }, member.token)).messages.edges[0].node.reactions;
    const runner = db.createQueryRunner();
    try {
      await new ReactionEmoji1765400000000().up(runner);
      const merged = [
        { emoji: '\u2764\uFE0F', count: 2, viewerReacted: true },
        { emoji: '\u{1F44D}', count: 1, viewerReacted: false },
        { emoji: ':shipit:', count: 1, viewerReacted: false },
      ];
      expect(await reactionsSeen()).toEqual(merged);
      const [kept] = await db.query(`SELECT count(*)::int AS n, min(created_at) < now() - interval '150 seconds' AS first FROM reactions WHERE message_id = $1 AND user_id = $2`, [message.id, member.id]);
      expect(kept).toEqual({ n: 1, first: true }); // one, dated from the first
      await new ReactionEmoji1765400000000().up(runner);
      expect(await reactionsSeen()).toEqual(merged);
    } finally {
      await runner.release();
    }
    await react(member, message.id, '\u2764', false);
    expect(await reactionsSeen()).toEqual([
      { emoji: '\u2764\uFE0F', count: 1, viewerReacted: false },
      { emoji: '\u{1F44D}', count: 1, viewerReacted: false },
      { emoji: ':shipit:', count: 1, viewerReacted: false },
    ]);
  });

  it('accepts one emoji or a :short_name:, and refuses anything else naming the field', async () => {
    const { member, roomId, message } = await roomWithMember();
    for (const emoji of ['🇫🇷', '👩🏽‍💻', '1️⃣', ':party_parrot:', ':+1:']) expect(codeOf(await react(member, message.id, emoji))).toBeUndefined();
    const before = await lastChange(roomId);
    for (const emoji of ['', 'a', '👍👍', 'x👍', ':Upper:', '::', ':' + 'a'.repeat(33) + ':', 'thumbsup', '<script>', '👍\u0000', '\u20E3', 'a\u20E3']) {
      const result = await react(member, message.id, emoji);
      expect([emoji, codeOf(result), result.errors?.[0].extensions?.field]).toEqual([emoji, 'BAD_USER_INPUT', 'emoji']);
    }
    expect(await lastChange(roomId)).toBe(before);
  });

  it('takes at most 50 different emoji per message', async () => {
    const { member, message } = await roomWithMember();
    for (let i = 0; i < 50; i++) expect(codeOf(await react(member, message.id, `:e${i}:`))).toBeUndefined();
    const over = await react(member, message.id, ':one_too_many:');
    expect([codeOf(over), over.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'emoji']);
    expect(codeOf(await react(member, message.id, ':e7:'))).toBeUndefined(); // an existing emoji still takes more people
  });

  it('refuses a reaction on a deleted message with CONFLICT and FORBIDDEN to outsiders', async () => {
    const { member, outsider, message } = await roomWithMember();
    expect(codeOf(await react(outsider, message.id, '👍'))).toBe('FORBIDDEN');
    await del(member, message.id);
    expect(codeOf(await react(member, message.id, '👍'))).toBe('CONFLICT');
    expect(codeOf(await react(member, message.id, '👍', false))).toBeUndefined();
  });
});

describe('thread summaries', () => {
  it('keeps replyCount and lastReplyAt exact under concurrent replies and deletions', async () => {
    const { owner, member, roomId, message: root } = await roomWithMember();
    const first = await Promise.all(Array.from({ length: 10 }, (_, i) => send(server.url, i % 2 ? owner : member, roomId, `r${i}`, { parentId: root.id })));
    const more = Promise.all(Array.from({ length: 10 }, (_, i) => send(server.url, member, roomId, `s${i}`, { parentId: root.id })));
    await Promise.all([more, ...first.slice(0, 6).map((r) => del(owner, r.id))]);
    const thread = await must(server.url, `query($r: ID!, $t: ID!) { messages(roomId: $r, threadId: $t, first: 50) { edges { node { id deleted replyCount lastReplyAt createdAt } } } }`, { r: roomId, t: root.id }, member.token);
    const [rootNode, ...replies] = thread.messages.edges.map((e: any) => e.node);
    const alive = replies.filter((r: any) => !r.deleted);
    expect(rootNode.replyCount).toBe(alive.length);
    expect(rootNode.replyCount).toBe(14);
    expect(rootNode.lastReplyAt).toBe(alive.map((r: any) => r.createdAt).sort().at(-1));
  });
});

describe('roomEvents and the change log', () => {
  it('delivers an edit, a reaction, a deletion and a thread reply once each, with increasing event cursors', async () => {
    const { owner, member, roomId, message } = await roomWithMember();
    const client = wsClient(server.wsUrl, owner);
    const sub = collect(client, ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await edit(member, message.id, 'edited');
    await react(owner, message.id, '👍');
    await react(owner, message.id, '👍'); // a repeat: no event
    const reply = await send(server.url, owner, roomId, 'a reply', { parentId: message.id });
    await del(member, message.id);
    await sub.until((r) => r.length >= 5);
    const events = sub.results.map((r) => r.data!.roomEvents);
    expect(events.map((e) => [e.__typename, e.message.id])).toEqual([
      ['MessageUpdated', message.id],
      ['MessageUpdated', message.id],
      ['MessageAdded', reply.id],
      ['MessageUpdated', message.id],
      ['MessageUpdated', message.id],
    ]);
    expect(events[0].message).toMatchObject({ body: 'edited' });
    expect(events[1].message.reactions).toEqual([{ emoji: '👍', count: 1, viewerReacted: true }]);
    expect(events[3].message).toMatchObject({ replyCount: 1 });
    expect(events[4].message).toMatchObject({ deleted: true, body: '' });
    const changes = events.map((e) => changeOf(e.cursor));
    expect(changes).toEqual([...changes].sort((a, b) => a - b));
    expect(new Set(changes).size).toBe(5);
    sub.stop();
    await client.dispose();
  });

  it('gives each subscriber its own viewerReacted while executing the event for a shared document', async () => {
    const { owner, member, roomId, message } = await roomWithMember();
    const [a, b] = [wsClient(server.wsUrl, owner), wsClient(server.wsUrl, member)];
    const subA = collect(a, ROOM_EVENTS, { roomId });
    const subB = collect(b, ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    await react(member, message.id, '👍');
    await Promise.all([subA.until((r) => r.length >= 1), subB.until((r) => r.length >= 1)]);
    expect(subA.results[0].data!.roomEvents.message.reactions).toEqual([{ emoji: '👍', count: 1, viewerReacted: false }]);
    expect(subB.results[0].data!.roomEvents.message.reactions).toEqual([{ emoji: '👍', count: 1, viewerReacted: true }]);
    await Promise.all([a.dispose(), b.dispose()]);
  });

  it('resumes from an event cursor with every change since, including an edit of a message 1,000 messages older', async () => {
    const { member, roomId, message: old } = await roomWithMember();
    await server.app.db.dataSource.query(
      `WITH next AS (UPDATE rooms SET last_seq = last_seq + 1000, last_change = last_change + 1000 WHERE id = $1 RETURNING last_seq, last_change)
       INSERT INTO messages (room_id, seq, created_change, change_seq, author_id, body)
       SELECT $1, next.last_seq - 1000 + g, next.last_change - 1000 + g, next.last_change - 1000 + g, $2, 'filler ' || g FROM next, generate_series(1, 1000) g`,
      [roomId, member.id],
    );
    const client = wsClient(server.wsUrl, member);
    const live = collect(client, ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const cursorMessage = await send(server.url, member, roomId, 'the newest one I saw');
    await live.until((r) => r.length >= 1);
    const eventCursor = live.results[0].data!.roomEvents.cursor;
    live.stop();
    await client.dispose();

    await edit(member, old.id, 'edited long after');
    const added = await send(server.url, member, roomId, 'while away');
    await edit(member, added.id, 'and edited while away');
    await react(member, cursorMessage.id, '✅');

    const resumed = [eventCursor, cursorMessage.cursor].map((after) => {
      const c = wsClient(server.wsUrl, member);
      return { c, sub: collect(c, ROOM_EVENTS, { roomId, after }) };
    });
    for (const { sub } of resumed) {
      await sub.until((r) => r.length >= 3);
      expect(sub.results.slice(0, 3).map((r) => [r.data!.roomEvents.__typename, r.data!.roomEvents.message.id, r.data!.roomEvents.message.body])).toEqual([
        ['MessageUpdated', old.id, 'edited long after'],
        ['MessageAdded', added.id, 'and edited while away'], // added since: once, in its current state
        ['MessageUpdated', cursorMessage.id, 'the newest one I saw'],
      ]);
    }
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    const after = await send(server.url, member, roomId, 'live after resuming');
    for (const { c, sub } of resumed) {
      await sub.until((r) => r.length >= 4);
      expect(sub.results).toHaveLength(4);
      expect(sub.results[3].data!.roomEvents).toMatchObject({ __typename: 'MessageAdded', message: { id: after.id } });
      await c.dispose();
    }
  });

  it('resumes from a cursor taken in a replay that carried 150 messages ahead of an old edited one: nothing comes twice as added', async () => {
    const { member, roomId, message: first } = await roomWithMember();
    const second = await send(server.url, member, roomId, 'the old one');
    await server.app.db.dataSource.query(
      `WITH next AS (UPDATE rooms SET last_seq = last_seq + 150, last_change = last_change + 150 WHERE id = $1 RETURNING last_seq, last_change)
       INSERT INTO messages (room_id, seq, created_change, change_seq, author_id, body)
       SELECT $1, next.last_seq - 150 + g, next.last_change - 150 + g, next.last_change - 150 + g, $2, 'filler ' || g FROM next, generate_series(1, 150) g`,
      [roomId, member.id],
    );
    await edit(member, second.id, 'the old one, edited'); // the replay after the first message carries 150 messages before it
    const client = wsClient(server.wsUrl, member);
    const replay = collect(client, ROOM_EVENTS, { roomId, after: first.cursor });
    await replay.until((r) => r.length >= 151);
    const events = replay.results.map((r) => r.data!.roomEvents);
    expect(events.map((e) => e.__typename)).toEqual(Array(151).fill('MessageAdded'));
    expect(events[150].message.id).toBe(second.id);
    const midway = events[149].cursor; // the newest filler: the old message is not carried yet
    replay.stop();
    const fifty = events[47].message; // seq 50
    await edit(member, fifty.id, 'filler 48, edited');
    const resumed = collect(client, ROOM_EVENTS, { roomId, after: midway });
    await resumed.until((r) => r.length >= 2);
    expect(resumed.results.map((r) => [r.data!.roomEvents.__typename, r.data!.roomEvents.message.id])).toEqual([
      ['MessageAdded', second.id], // not carried before the cursor
      ['MessageUpdated', fifty.id], // carried before the cursor
    ]);
    await client.dispose();
  });

  it('refuses a cursor of another room, a forged one past the end, and garbage, as BAD_USER_INPUT on after', async () => {
    const { member, roomId } = await roomWithMember();
    const otherRoom = await createRoom(server.url, member);
    const client = wsClient(server.wsUrl, member);
    const forged = (tag: string, room: string, n: number) => Buffer.from(`${tag}:${room}:${n}`).toString('base64url');
    for (const after of [forged('e1', otherRoom, 1), forged('e1', roomId, 99), forged('m1', roomId, 99), forged('x1', roomId, 1), 'garbage', ' ']) {
      const sub = collect(client, ROOM_EVENTS, { roomId, after });
      await sub.done.catch(() => undefined);
      expect([after, sub.results[0]?.errors?.[0].extensions]).toMatchObject([after, { code: 'BAD_USER_INPUT', field: 'after' }]);
    }
    // The empty string (relayStylePagination's endCursor of an empty page) is the room's start.
    const fromStart = collect(client, ROOM_EVENTS, { roomId, after: '' });
    await fromStart.until((r) => r.length === 1);
    expect(fromStart.results.map((r) => [r.data?.roomEvents.__typename, r.data?.roomEvents.message.body])).toEqual([['MessageAdded', 'original text']]);
    await client.dispose();
  });
});

describe('read state', () => {
  const ROOM = `query($id: ID!) { room(id: $id) { lastSeq lastReadSeq unreadCount lastMessage { id body } } }`;
  const MARK = `mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { lastReadSeq unreadCount } }`;

  it('counts unread messages exactly, moves forward only, and moves when the viewer sends', async () => {
    const { owner, member, roomId, message } = await roomWithMember();
    const sent = [message];
    for (let i = 0; i < 4; i++) sent.push(await send(server.url, owner, roomId, `o${i}`));
    expect((await must(server.url, ROOM, { id: roomId }, member.token)).room).toEqual({
      lastSeq: 5,
      lastReadSeq: 1,
      unreadCount: 4,
      lastMessage: { id: sent[4].id, body: 'o3' },
    });
    expect((await must(server.url, MARK, { r: roomId, c: sent[3].cursor }, member.token)).markRead).toEqual({ lastReadSeq: 4, unreadCount: 1 });
    expect((await must(server.url, MARK, { r: roomId, c: sent[1].cursor }, member.token)).markRead).toEqual({ lastReadSeq: 4, unreadCount: 1 });
    expect((await must(server.url, MARK, { r: roomId, c: sent[3].cursor }, member.token)).markRead).toEqual({ lastReadSeq: 4, unreadCount: 1 });
    await send(server.url, member, roomId, 'I write, so I have read');
    expect((await must(server.url, ROOM, { id: roomId }, member.token)).room).toMatchObject({ lastSeq: 6, lastReadSeq: 6, unreadCount: 0 });
    await del(owner, sent[4].id);
    expect((await must(server.url, ROOM, { id: roomId }, owner.token)).room).toMatchObject({ lastReadSeq: 5, unreadCount: 1 }); // a tombstone still counts
  });

  it('gives a new member no backlog of unread messages', async () => {
    const { owner, roomId } = await roomWithMember();
    await send(server.url, owner, roomId, 'before you came');
    const late = await signUp(server.url);
    await join(late, roomId);
    expect((await must(server.url, ROOM, { id: roomId }, late.token)).room).toMatchObject({ lastSeq: 2, lastReadSeq: 2, unreadCount: 0 });
  });

  it('accepts an event cursor, and refuses bad cursors with BAD_USER_INPUT on cursor and outsiders with FORBIDDEN', async () => {
    const { owner, member, outsider, roomId, message } = await roomWithMember();
    const otherRoom = await createRoom(server.url, member);
    const other = await send(server.url, member, otherRoom, 'elsewhere');
    // Past the room's end: a message cursor past its newest message, event cursors past its newest change or message (as `roomEvents(after:)` refuses them).
    const past = [`m1:${roomId}:99`, `e1:${roomId}:999999:1`, `e1:${roomId}:1:99`].map((c) => Buffer.from(c).toString('base64url'));
    for (const c of [other.cursor, 'garbage', ...past]) {
      const result = await gql(server.url, MARK, { r: roomId, c }, member.token);
      expect([c, codeOf(result), result.errors?.[0].extensions?.field]).toEqual([c, 'BAD_USER_INPUT', 'cursor']);
    }
    expect(codeOf(await gql(server.url, MARK, { r: roomId, c: message.cursor }, outsider.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(server.url, MARK, { r: roomId, c: message.cursor }))).toBe('UNAUTHENTICATED');
    const client = wsClient(server.wsUrl, owner);
    const sub = collect(client, ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await send(server.url, member, roomId, 'news');
    await sub.until((r) => r.length >= 1);
    const marked = await must(server.url, MARK, { r: roomId, c: sub.results[0].data!.roomEvents.cursor }, owner.token);
    expect(marked.markRead).toEqual({ lastReadSeq: 2, unreadCount: 0 });
    await client.dispose();
  });

  it('stays exact under concurrent sends and reads', async () => {
    const { owner, member, roomId } = await roomWithMember();
    const others = await Promise.all(Array.from({ length: 4 }, () => signUp(server.url)));
    await Promise.all(others.map((u) => join(u, roomId)));
    const sent = await Promise.all(others.flatMap((u) => Array.from({ length: 10 }, (_, i) => send(server.url, u, roomId, `${u.username} ${i}`))));
    const marks = sent.filter((_, i) => i % 7 === 0).map((m) => gql(server.url, MARK, { r: roomId, c: m.cursor }, member.token));
    await Promise.all([...marks, ...Array.from({ length: 10 }, (_, i) => send(server.url, owner, roomId, `more ${i}`))]);
    const highest = Math.max(1, ...sent.filter((_, i) => i % 7 === 0).map((m) => m.seq));
    const room = (await must(server.url, ROOM, { id: roomId }, member.token)).room;
    expect(room.lastSeq).toBe(51);
    expect(room.lastReadSeq).toBe(highest);
    expect(room.unreadCount).toBe(51 - highest);
  });

  it('answers lastSeq, lastReadSeq, unreadCount and lastMessage from one moment, also while messages pour in', async () => {
    const { owner, member, roomId } = await roomWithMember();
    const ROOM_STATE = `query($id: ID!) { room(id: $id) { lastSeq lastReadSeq unreadCount lastMessage { seq } } }`;
    let sending = true;
    const senders = [owner, member].map(async (user) => {
      for (let i = 0; i < 25; i++) await send(server.url, user, roomId, `${user.username} ${i}`);
    });
    const done = Promise.all(senders).then(() => (sending = false));
    const answers = [];
    while (sending) answers.push((await must(server.url, ROOM_STATE, { id: roomId }, member.token)).room);
    await done;
    expect(answers.length).toBeGreaterThan(0);
    for (const room of answers) {
      expect([room.unreadCount, room.lastMessage?.seq ?? 0]).toEqual([room.lastSeq - room.lastReadSeq, room.lastSeq]);
    }
  });

  it('lists 100 rooms with unread counts and last messages in a constant number of queries', async () => {
    const viewer = await signUp(server.url);
    const writer = await signUp(server.url);
    const roomIds: string[] = [];
    for (let i = 0; i < 100; i++) {
      const roomId = await createRoom(server.url, writer, 'PUBLIC', unique('list'));
      await join(viewer, roomId);
      await send(server.url, writer, roomId, `hello ${i}`);
      roomIds.push(roomId);
    }
    const query = jest.spyOn(PostgresQueryRunner.prototype, 'query');
    try {
      const LIST = `query { rooms(first: 100) { edges { node { id unreadCount lastReadSeq viewerRole lastMessage { body author { username } } } } } }`;
      const data = await must(server.url, LIST, {}, viewer.token);
      expect(data.rooms.edges).toHaveLength(100);
      expect(data.rooms.edges.every((e: any) => e.node.unreadCount === 1 && e.node.lastMessage.author.username === writer.username)).toBe(true);
      expect(counted(query)).toBeLessThanOrEqual(5);
    } finally {
      query.mockRestore();
    }
  });

  it('replays 200 messages to a subscription that reads the database per event in a few queries per group, in order, each event current', async () => {
    const writer = await signUp(server.url);
    const roomId = await createRoom(server.url, writer);
    const first = await send(server.url, writer, roomId, 'anchor');
    for (let i = 1; i <= 200; i++) await send(server.url, writer, roomId, `behind ${i}`);
    const SUB = `subscription($r: ID!, $after: String) { messageAdded(roomId: $r, after: $after) { seq body author { username } room { lastSeq unreadCount } } }`;
    const client = wsClient(server.wsUrl, writer);
    const query = jest.spyOn(PostgresQueryRunner.prototype, 'query');
    try {
      const sub = collect(client, SUB, { r: roomId, after: first.cursor });
      await sub.until((r) => r.length >= 200);
      // The subscribe (session, membership, hub), the replay's reads (200 a page), and per group of
      // 32 executions one query per kind (author, room, membership): not one round trip per event.
      expect(counted(query)).toBeLessThanOrEqual(32);
      const events = sub.results.map((r) => r.data!.messageAdded);
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 200 }, (_, i) => first.seq + 1 + i));
      expect(events.every((e) => e.author.username === writer.username && e.room.lastSeq === first.seq + 200 && e.room.unreadCount === 0)).toBe(true);
    } finally {
      query.mockRestore();
      await client.dispose();
    }
  });

  it('replays to subscriptions resuming together (a reconnect storm) with each window read once and each event executed once for all of them', async () => {
    const writer = await signUp(server.url);
    const roomId = await createRoom(server.url, writer);
    const first = await send(server.url, writer, roomId, 'anchor');
    const behind = [];
    for (let i = 1; i <= 230; i++) behind.push(await send(server.url, writer, roomId, `behind ${i}`));
    const sent = behind.map((m) => m.seq);
    const viewers = [writer, ...(await Promise.all(Array.from({ length: 5 }, () => signUp(server.url))))];
    for (const viewer of viewers.slice(1)) await join(viewer, roomId);
    // Six resume from the anchor, two from three messages later: a few apart, as after a restart.
    const cursors = [...viewers.map(() => first.cursor), behind[2].cursor, behind[2].cursor];
    const SUB = `subscription($r: ID!, $after: String) { messageAdded(roomId: $r, after: $after) { seq body author { username } } }`;
    const clients = cursors.map((_, i) => wsClient(server.wsUrl, viewers[i % viewers.length]));
    const query = jest.spyOn(PostgresQueryRunner.prototype, 'query');
    try {
      const subs = cursors.map((after, i) => collect(clients[i], SUB, { r: roomId, after }));
      await Promise.all(subs.map((sub, i) => sub.until((r) => r.length >= (i < 6 ? 230 : 227), 30_000)));
      const sql = query.mock.calls.map(([text]) => (typeof text === 'string' ? text : String((text as { text?: string })?.text)));
      // The room's messages by seq in windows of 200 numbers, once for all eight: (0, 200], (200, 231]
      // (a subscription that asks once a window's read has begun is served it after a check).
      expect(sql.filter((text) => /"m"\."seq" > \$/.test(text))).toHaveLength(2);
      // The authors, one load per group of 32 executions: 8 to 16 for the 230 events (the groups of feeds
      // a few messages apart begin at different events), not 8 per subscription (64).
      const authorLoads = sql.filter((text) => /FROM "users"/.test(text)).length;
      expect(authorLoads).toBeGreaterThan(0);
      expect(authorLoads).toBeLessThanOrEqual(24);
      subs.forEach((sub, i) => {
        const events = sub.results.map((r) => r.data!.messageAdded);
        expect(events.map((e) => e.seq)).toEqual(i < 6 ? sent : sent.slice(3));
        expect(events.every((e) => e.author.username === writer.username && e.body.startsWith('behind '))).toBe(true);
      });
    } finally {
      query.mockRestore();
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });

  it('gives a subscription that resumes right after a deletion the tombstone, never the text, though another replayed the same messages just before', async () => {
    const { owner, member, roomId } = await roomWithMember();
    const anchor = await send(server.url, member, roomId, 'anchor');
    const secret = await send(server.url, member, roomId, 'a secret to delete');
    await send(server.url, member, roomId, 'after it');
    const SUB = `subscription($r: ID!, $after: String) { messageAdded(roomId: $r, after: $after) { seq body deleted } }`;
    const [first, second] = [wsClient(server.wsUrl, owner), wsClient(server.wsUrl, member)];
    const query = jest.spyOn(PostgresQueryRunner.prototype, 'query');
    try {
      const before = collect(first, SUB, { r: roomId, after: anchor.cursor });
      await before.until((r) => r.length >= 2);
      expect(before.results[0].data!.messageAdded).toEqual({ seq: secret.seq, body: 'a secret to delete', deleted: false });
      expect((await del(member, secret.id)).errors).toBeUndefined();
      const after = collect(second, SUB, { r: roomId, after: anchor.cursor });
      await after.until((r) => r.length >= 2);
      expect(after.results[0].data!.messageAdded).toEqual({ seq: secret.seq, body: '', deleted: true });
      // The window the first replay read was checked for changes before the second could be served it.
      const sql = query.mock.calls.map(([text]) => String(text));
      expect(sql.some((text) => /change_seq > \$2 AND seq = ANY/.test(text))).toBe(true);
    } finally {
      query.mockRestore();
      await Promise.all([first.dispose(), second.dispose()]);
    }
  });

  it('executes a subscription event for 20 viewers with per-viewer room fields in a constant number of queries, each viewer seeing its own', async () => {
    const writer = await signUp(server.url);
    const roomId = await createRoom(server.url, writer);
    const viewers: TestUser[] = [];
    for (let i = 0; i < 20; i++) {
      const viewer = await signUp(server.url);
      await join(viewer, roomId);
      await send(server.url, writer, roomId, `before ${i}`); // viewer i joined when the room had i messages: a read position of its own
      viewers.push(viewer);
    }
    const SUB = `subscription($r: ID!) { messageAdded(roomId: $r) { seq author { username } room { lastSeq lastReadSeq unreadCount viewerRole } } }`;
    const clients = viewers.map((v) => wsClient(server.wsUrl, v));
    const subs = clients.map((c) => collect(c, SUB, { r: roomId }));
    await waitFor(() => server.app.hubs.listeners(roomId) === 20);
    await send(server.url, writer, roomId, 'warm-up'); // the first event learns that the selection reads the viewer
    await Promise.all(subs.map((s) => s.until((r) => r.length >= 1)));
    const query = jest.spyOn(PostgresQueryRunner.prototype, 'query');
    try {
      const sent = await send(server.url, writer, roomId, 'counted');
      await Promise.all(subs.map((s) => s.until((r) => r.length >= 2)));
      // The send (session check and insert), then one query per kind for the 20 executions: the
      // author, the rooms, the 20 memberships. Not two per viewer.
      expect(counted(query)).toBeLessThanOrEqual(8);
      subs.forEach((s, i) => {
        const event = s.results[1].data!.messageAdded;
        expect(event).toEqual({
          seq: sent.seq,
          author: { username: writer.username },
          room: { lastSeq: sent.seq, lastReadSeq: i, unreadCount: sent.seq - i, viewerRole: 'MEMBER' }, // it joined when the room had i messages
        });
      });
    } finally {
      query.mockRestore();
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });
});
