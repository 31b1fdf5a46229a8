import { codeOf, createRoom, gql, must, send, signUp, startServer, unique, type TestServer } from '../support/harness';
import { MessageStore } from '../../src/chat/message-store';
import type { AppError } from '../../src/errors';

let server: TestServer;
let url: string;
beforeAll(async () => {
  server = await startServer();
  url = server.url;
});
afterAll(() => server.stop());

const PAGE = `query($roomId: ID!, $first: Int, $after: String, $last: Int, $before: String, $threadId: ID) {
  messages(roomId: $roomId, first: $first, after: $after, last: $last, before: $before, threadId: $threadId) {
    edges { cursor node { id seq body cursor parent { id } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

describe('sendMessage', () => {
  it('numbers messages 1, 2, 3 per room and echoes the clientId', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const first = await send(url, ada, roomId, 'one', { clientId: 'a-1' });
    const second = await send(url, ada, roomId, 'two');
    expect([first.seq, second.seq]).toEqual([1, 2]);
    const data = await must(url, `query($id: ID!) { room(id: $id) { lastSeq } }`, { id: roomId }, ada.token);
    expect(data.room.lastSeq).toBe(2);
  });

  it('gives ten concurrent senders distinct, gapless seqs', async () => {
    const owner = await signUp(url);
    const roomId = await createRoom(url, owner);
    const users = await Promise.all(Array.from({ length: 10 }, () => signUp(url)));
    await Promise.all(users.map((u) => must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, u.token)));
    const sent = await Promise.all(users.flatMap((u) => Array.from({ length: 5 }, (_, i) => send(url, u, roomId, `m${i}`))));
    expect(sent.map((m) => m.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it('returns the first message for a repeated clientId, also when the retries race', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const clientId = unique('c');
    const results = await Promise.all(Array.from({ length: 8 }, () => send(url, ada, roomId, 'once', { clientId })));
    expect(new Set(results.map((m) => m.id)).size).toBe(1);
    const again = await send(url, ada, roomId, 'different body, same key', { clientId });
    expect(again.id).toBe(results[0].id);
    expect(again.body).toBe('once');
    const next = await send(url, ada, roomId, 'next');
    expect(next.seq).toBe(2); // the rolled-back duplicates left no gap
  });

  it('keeps clientIds apart per author and per room', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada);
    await must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const a = await send(url, ada, roomId, 'a', { clientId: 'same' });
    const b = await send(url, bob, roomId, 'b', { clientId: 'same' });
    const otherRoom = await createRoom(url, ada);
    const c = await send(url, ada, otherRoom, 'c', { clientId: 'same' });
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
  });

  it.each([
    ['a blank body', { body: '   \n ' }, 'body'],
    ['a body over 4,000 characters', { body: 'x'.repeat(4001) }, 'body'],
    ['a NUL character', { body: 'a\u0000b' }, 'body'],
    ['an empty clientId', { body: 'ok', clientId: '' }, 'clientId'],
    ['a clientId over 128 characters', { body: 'ok', clientId: 'c'.repeat(129) }, 'clientId'],
    ['a parentId that is not a message', { body: 'ok', parentId: 'not-an-id' }, 'parentId'],
    ['a parentId of an unknown message', { body: 'ok', parentId: '00000000-0000-4000-8000-000000000000' }, 'parentId'],
  ])('refuses %s with BAD_USER_INPUT and writes nothing', async (_name, input, field) => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const result = await gql(url, `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`, { input: { roomId, ...input } }, ada.token);
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0].extensions!.field).toBe(field);
    const data = await must(url, `query($id: ID!) { room(id: $id) { lastSeq } }`, { id: roomId }, ada.token);
    expect(data.room.lastSeq).toBe(0);
  });

  it('accepts a body of exactly 4,000 characters', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    expect((await send(url, ada, roomId, 'y'.repeat(4000))).body).toHaveLength(4000);
  });

  it('refuses a parent from another room', async () => {
    const ada = await signUp(url);
    const [roomA, roomB] = await Promise.all([createRoom(url, ada), createRoom(url, ada)]);
    const inA = await send(url, ada, roomA, 'in A');
    const result = await gql(url, `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`, { input: { roomId: roomB, body: 'x', parentId: inA.id } }, ada.token);
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
  });

  it('is UNAUTHENTICATED without a token and FORBIDDEN for a non-member', async () => {
    const [ada, eve] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada);
    const query = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`;
    expect(codeOf(await gql(url, query, { input: { roomId, body: 'hi' } }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(url, query, { input: { roomId, body: 'hi' } }, eve.token))).toBe('FORBIDDEN');
  });
});

describe('replies and threads', () => {
  it('attaches a reply to the thread root, also when replying to a reply', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const root = await send(url, ada, roomId, 'root');
    await send(url, ada, roomId, 'unrelated');
    const reply = await send(url, ada, roomId, 'reply', { parentId: root.id });
    const nested = await send(url, ada, roomId, 'reply to reply', { parentId: reply.id });
    const page = await must(url, PAGE, { roomId, threadId: root.id }, ada.token);
    expect(page.messages.edges.map((e: any) => e.node.body)).toEqual(['root', 'reply', 'reply to reply']);
    expect(page.messages.edges.map((e: any) => e.node.parent?.id ?? null)).toEqual([null, root.id, root.id]);
    expect(nested.seq).toBe(4);
  });

  it('reads the whole thread when threadId names one of its replies, as a reply to a reply goes to it', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const root = await send(url, ada, roomId, 'root');
    const reply = await send(url, ada, roomId, 'reply', { parentId: root.id });
    await send(url, ada, roomId, 'unrelated');
    const page = await must(url, PAGE, { roomId, threadId: reply.id }, ada.token);
    expect(page.messages.edges.map((e: any) => e.node.body)).toEqual(['root', 'reply']);
  });

  it('refuses a malformed threadId, and one naming a message of another room', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const result = await gql(url, PAGE, { roomId, threadId: 'nope' }, ada.token);
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
    const elsewhere = await send(url, ada, await createRoom(url, ada), 'in another room');
    const foreign = await gql(url, PAGE, { roomId, threadId: elsewhere.id }, ada.token);
    expect(foreign.errors?.[0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'threadId' });
  });
});

describe('messages (history pages)', () => {
  let ada: Awaited<ReturnType<typeof signUp>>;
  let roomId: string;
  beforeAll(async () => {
    ada = await signUp(url);
    roomId = await createRoom(url, ada);
    for (let i = 1; i <= 7; i++) await send(url, ada, roomId, `m${i}`);
  });

  const seqs = (page: any) => page.messages.edges.map((e: any) => e.node.seq);

  it('pages forwards with first/after, the edge cursor equal to the message cursor', async () => {
    const p1 = await must(url, PAGE, { roomId, first: 3 }, ada.token);
    expect(seqs(p1)).toEqual([1, 2, 3]);
    expect(p1.messages.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    for (const e of p1.messages.edges) expect(e.cursor).toBe(e.node.cursor);
    const p2 = await must(url, PAGE, { roomId, first: 3, after: p1.messages.pageInfo.endCursor }, ada.token);
    expect(seqs(p2)).toEqual([4, 5, 6]);
    expect(p2.messages.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: true });
    const p3 = await must(url, PAGE, { roomId, first: 3, after: p2.messages.pageInfo.endCursor }, ada.token);
    expect(seqs(p3)).toEqual([7]);
    expect(p3.messages.pageInfo.hasNextPage).toBe(false);
  });

  it('reads the empty string as no cursor (relayStylePagination\'s end of an empty page): after "" from the start, before "" from the end', async () => {
    expect(seqs(await must(url, PAGE, { roomId, first: 2, after: '' }, ada.token))).toEqual([1, 2]);
    expect(seqs(await must(url, PAGE, { roomId, last: 2, before: '' }, ada.token))).toEqual([6, 7]);
    expect(codeOf(await gql(url, PAGE, { roomId, first: 2, after: ' ' }, ada.token))).toBe('BAD_USER_INPUT');
  });

  it('pages backwards with last/before, oldest first within the page', async () => {
    const p1 = await must(url, PAGE, { roomId, last: 3 }, ada.token);
    expect(seqs(p1)).toEqual([5, 6, 7]);
    expect(p1.messages.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    const p2 = await must(url, PAGE, { roomId, last: 3, before: p1.messages.pageInfo.startCursor }, ada.token);
    expect(seqs(p2)).toEqual([2, 3, 4]);
    expect(p2.messages.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: true });
    const p3 = await must(url, PAGE, { roomId, last: 3, before: p2.messages.pageInfo.startCursor }, ada.token);
    expect(seqs(p3)).toEqual([1]);
    expect(p3.messages.pageInfo.hasPreviousPage).toBe(false);
  });

  it('returns the newest messages by default', async () => {
    expect(seqs(await must(url, PAGE, { roomId }, ada.token))).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it.each([
    ['first: 0', { first: 0 }, 'first'],
    ['first: 201', { first: 201 }, 'first'],
    ['last: -1', { last: -1 }, 'last'],
    ['first and last', { first: 1, last: 1 }, 'last'],
    ['a garbage cursor', { after: 'garbage!' }, 'after'],
    ['a room cursor as before', { before: Buffer.from('r1:1').toString('base64url') }, 'before'],
  ])('refuses %s with BAD_USER_INPUT', async (_n, args, field) => {
    const result = await gql(url, PAGE, { roomId, ...args }, ada.token);
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
    expect(result.errors![0].extensions!.field).toBe(field);
  });

  it('refuses a cursor of another room', async () => {
    const other = await createRoom(url, ada);
    const m = await send(url, ada, other, 'x');
    const result = await gql(url, PAGE, { roomId, after: m.cursor }, ada.token);
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
  });

  it('is FORBIDDEN for a non-member and for an unknown room alike', async () => {
    const eve = await signUp(url);
    const foreign = await gql(url, PAGE, { roomId }, eve.token);
    const missing = await gql(url, PAGE, { roomId: '00000000-0000-4000-8000-000000000000' }, eve.token);
    expect(codeOf(foreign)).toBe('FORBIDDEN');
    expect(missing.errors).toEqual(foreign.errors);
  });
});

describe('what a send returns', () => {
  it('is the message and its thread root exactly as a later read of them, every column and timestamp', async () => {
    const [ada, bob] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada);
    await must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const root = await send(url, ada, roomId, 'the root');
    const spy = jest.spyOn(server.app.messageStore, 'insert');
    try {
      await must(url, `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`, { input: { roomId, body: `a reply to @${bob.username}`, parentId: root.id, clientId: 'c-1' } }, ada.token);
      const returned = await spy.mock.results[0].value;
      expect(returned).toHaveLength(2); // the reply and its root's new state
      for (const message of returned) {
        const read = await server.app.messageStore.current(message.id);
        expect({ ...message, streamOwner: undefined }).toEqual({ ...read, streamOwner: undefined });
        for (const key of ['createdAt', 'updatedAt', 'lastReplyAt'] as const) if (read[key]) expect(message[key]).toBeInstanceOf(Date);
      }
      expect(returned[0]).toMatchObject({ parentId: root.id, clientId: 'c-1', mentions: [bob.id], reactions: [] });
      expect(returned[1]).toMatchObject({ id: root.id, replyCount: 1 });
    } finally {
      spy.mockRestore();
    }
  });
});

describe('persist, then publish (API.md guarantee 3)', () => {
  it('publishes nothing for a send that fails: bad input, a non-member, or a failed commit', async () => {
    const [ada, eve] = await Promise.all([signUp(url), signUp(url)]);
    const roomId = await createRoom(url, ada);
    const publish = jest.spyOn(server.app.pubsub, 'publish');
    const insert = jest.spyOn(server.app.messageStore, 'insert');
    try {
      const query = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`;
      expect(codeOf(await gql(url, query, { input: { roomId, body: ' ' } }, ada.token))).toBe('BAD_USER_INPUT');
      expect(codeOf(await gql(url, query, { input: { roomId, body: 'hi' } }, eve.token))).toBe('FORBIDDEN');
      insert.mockRejectedValueOnce(new Error('the commit failed'));
      expect(codeOf(await gql(url, query, { input: { roomId, body: 'hi' } }, ada.token))).toBe('INTERNAL_SERVER_ERROR');
      expect(publish).not.toHaveBeenCalled();
      const sent = await send(url, ada, roomId, 'now it commits');
      expect(sent.seq).toBe(1);
      // Published once, where every instance's room hubs and viewers' own feeds take it from.
      expect(publish.mock.calls.map(([topic]) => topic.name)).toEqual(['activity']);
      await must(url, `mutation($i: EditMessageInput!) { editMessage(input: $i) { id } }`, { i: { messageId: sent.id, body: 'edited' } }, ada.token);
      expect(publish.mock.calls.map(([topic]) => topic.name)).toEqual(['activity', `room:${roomId}`]); // a later change: on its room's topic
    } finally {
      publish.mockRestore();
      insert.mockRestore();
    }
  });

  it("inserts nothing for a send whose statement begins past its deadline (the server has answered it SERVICE_UNAVAILABLE by then), and sends until it", async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const { dataSource } = server.app.db;
    // Deadlines on the database's own clock: one past, one a few seconds ahead.
    const [{ past, ahead }] = (await dataSource.query(`SELECT (clock_timestamp() - interval '1 second')::text AS past, (clock_timestamp() + interval '5 seconds')::text AS ahead`)) as Array<{ past: string; ahead: string }>;
    let deadline = past;
    let lateSends = 0;
    const store = new MessageStore(dataSource, server.app.pubsub, server.app.log, undefined, () => deadline, () => lateSends++);
    const fields = { roomId, authorId: ada.id, body: 'late', parentId: null, clientId: 'late-1' };
    const late = await store.insert(dataSource.manager, fields, { asMember: true }).then(() => undefined, (e: unknown) => e);
    expect((late as AppError).code).toBe('SERVICE_UNAVAILABLE');
    expect(lateSends).toBe(1);
    expect(await dataSource.query(`SELECT seq FROM messages WHERE room_id = $1`, [roomId])).toEqual([]); // nothing, not even a seq taken
    deadline = ahead;
    const [sent] = await store.insert(dataSource.manager, fields, { asMember: true });
    expect(sent.seq).toBe(1);
  });

  it('inserts nothing for a send whose statement began in time but waited for its room past the deadline (a lock held through a freeze)', async () => {
    const ada = await signUp(url);
    const roomId = await createRoom(url, ada);
    const { dataSource } = server.app.db;
    const holder = dataSource.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    await holder.query('UPDATE rooms SET name = name WHERE id = $1', [roomId]); // as a send frozen mid-statement holds it
    const [{ deadline }] = (await dataSource.query(`SELECT (clock_timestamp() + interval '500 milliseconds')::text AS deadline`)) as Array<{ deadline: string }>;
    const store = new MessageStore(dataSource, server.app.pubsub, server.app.log, undefined, () => deadline);
    const sending = store.insert(dataSource.manager, { roomId, authorId: ada.id, body: 'waited', parentId: null, clientId: 'waited-1' }, { asMember: true }).then(() => undefined, (e: unknown) => e);
    await new Promise((r) => setTimeout(r, 1000)); // past the deadline, still waiting for the room
    await holder.commitTransaction();
    await holder.release();
    expect(((await sending) as AppError | undefined)?.code).toBe('SERVICE_UNAVAILABLE'); // before: stored, its statement had begun in time
    expect(await dataSource.query(`SELECT seq FROM messages WHERE room_id = $1`, [roomId])).toEqual([]);
  });
});

