import jwt from 'jsonwebtoken';
import { TEST_SECRET, collect, must, createRoom, MESSAGE_ADDED, send, seqsOf, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { rawSocket, type Frame, type RawSocket } from '../support/transports';
import { ROOM_EVENTS } from '../support/ephemeral';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

describe('messageAdded', () => {
  it('delivers live messages in seq order, each once', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const client = wsClient(server.wsUrl, ada);
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    for (let i = 1; i <= 20; i++) await send(server.url, ada, roomId, `m${i}`);
    await sub.until((r) => r.length >= 20);
    expect(seqsOf(sub.results)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    sub.stop();
    await client.dispose();
  });

  it('replays after the cursor, then goes live, without a gap or duplicate at the seam', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const early = [];
    for (let i = 1; i <= 30; i++) early.push(await send(server.url, ada, roomId, `early ${i}`));
    const client = wsClient(server.wsUrl, ada);
    const sub = collect(client, MESSAGE_ADDED, { roomId, after: early[9].cursor });
    // Send while the replay runs, so live events arrive during it.
    const live = Promise.all(Array.from({ length: 20 }, (_, i) => send(server.url, ada, roomId, `live ${i}`)));
    await live;
    await sub.until((r) => r.length >= 40);
    expect(seqsOf(sub.results)).toEqual(Array.from({ length: 40 }, (_, i) => i + 11));
    sub.stop();
    await client.dispose();
  });

  it('resumes across a reconnect from the last cursor it saw', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const c1 = wsClient(server.wsUrl, ada);
    const first = collect(c1, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    for (let i = 1; i <= 3; i++) await send(server.url, ada, roomId, `a${i}`);
    await first.until((r) => r.length === 3);
    const last = first.results[2].data!.messageAdded;
    await c1.dispose();
    for (let i = 4; i <= 6; i++) await send(server.url, ada, roomId, `b${i}`);
    const c2 = wsClient(server.wsUrl, ada);
    const second = collect(c2, MESSAGE_ADDED, { roomId, after: last.cursor });
    await second.until((r) => r.length === 3);
    await send(server.url, ada, roomId, 'live again');
    await second.until((r) => r.length === 4);
    expect(seqsOf([...first.results, ...second.results])).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await c2.dispose();
  });

  it('is FORBIDDEN for a non-member and for an unknown room alike', async () => {
    const [ada, eve] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada, 'PRIVATE');
    const client = wsClient(server.wsUrl, eve);
    const foreign = collect(client, MESSAGE_ADDED, { roomId });
    const missing = collect(client, MESSAGE_ADDED, { roomId: '00000000-0000-4000-8000-000000000000' });
    await Promise.all([foreign.done, missing.done]);
    expect(foreign.results[0].errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(missing.results[0].errors).toEqual(foreign.results[0].errors);
    await client.dispose();
  });

  it('refuses a bad cursor with BAD_USER_INPUT', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const client = wsClient(server.wsUrl, ada);
    const sub = collect(client, MESSAGE_ADDED, { roomId, after: 'not-a-cursor' });
    await sub.done;
    expect(sub.results[0].errors?.[0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'after' });
    await client.dispose();
  });

  it.each([
    ['a message cursor', (roomId: string) => `m1:${roomId}:2`, 'after is beyond the newest message of this room'],
    ['an event cursor past the newest change', (roomId: string) => `e1:${roomId}:99:1`, 'after is beyond the newest change of this room'],
    ['an event cursor whose messages go past the newest one', (roomId: string) => `e1:${roomId}:1:2`, 'after is beyond the newest change of this room'],
    ['an event cursor with an early run past the newest message', (roomId: string) => `e1:${roomId}:1:0.2-9`, 'after is beyond the newest change of this room'],
  ])('refuses %s beyond the room’s end with BAD_USER_INPUT, in both orders (it would wait silently)', async (_name, cursor, message) => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const sent = await send(server.url, ada, roomId, 'one');
    const client = wsClient(server.wsUrl, ada);
    const forged = Buffer.from(cursor(roomId)).toString('base64url');
    const subs = [collect(client, MESSAGE_ADDED, { roomId, after: forged }), collect(client, ROOM_EVENTS, { roomId, after: forged })];
    for (const sub of subs) {
      await sub.done;
      expect(sub.results[0].errors?.[0]).toMatchObject({ message, extensions: { code: 'BAD_USER_INPUT', field: 'after' } });
    }
    // At the edge: the newest message's own cursors are taken.
    const atEnd = [collect(client, MESSAGE_ADDED, { roomId, after: sent.cursor }), collect(client, ROOM_EVENTS, { roomId, after: Buffer.from(`e1:${roomId}:1:1`).toString('base64url') })];
    await send(server.url, ada, roomId, 'two');
    for (const sub of atEnd) {
      await waitFor(() => sub.results.some((r) => r.errors || JSON.stringify(r.data).includes('"two"')));
      expect(sub.results.filter((r) => r.errors)).toEqual([]);
    }
    await client.dispose();
  });

  it.each([
    ['no token', null],
    ['a malformed token', { authorization: 'Bearer not.a.jwt' }],
    ['a token signed with another key', { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl' }],
    ['a token without Bearer', { authorization: 'abc' }],
  ])('closes a WebSocket with %s with 4403', async (_name, params) => {
    const client = wsClient(server.wsUrl, params);
    const sub = collect(client, MESSAGE_ADDED, { roomId: '00000000-0000-4000-8000-000000000000' });
    const closed = await sub.done.then(() => undefined, (e) => e);
    expect(closed?.code).toBe(4403);
    await client.dispose();
  });
});

describe('an operation id used again', () => {
  /** Writes the frames in one write, so that the server reads them in one turn of its event loop. */
  const together = (raw: RawSocket, frames: Frame[]) => {
    const tcp = (raw.socket as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    tcp.cork();
    for (const frame of frames) raw.send(frame);
    tcp.uncork();
  };
  const subscribe = (id: string, roomId: string, after?: string) => ({ id, type: 'subscribe', payload: { query: MESSAGE_ADDED, variables: { roomId, after } } });

  it('starts a new subscription when it comes right after the complete of the one it names', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const raw = await rawSocket(server.wsUrl, ada.token);
    raw.send(subscribe('x', roomId));
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const first = await send(server.url, ada, roomId, 'first');
    await raw.next((f) => f.id === 'x' && f.type === 'next' && f.payload.data.messageAdded.seq === 1);

    // The new one resumes after the first message, so it gets the second wherever it is sent; the
    // socket's next message waits behind it, and neither waits out the longest wait (5 s).
    together(raw, [{ id: 'x', type: 'complete' }, subscribe('x', roomId, first.cursor), { id: 'q', type: 'subscribe', payload: { query: '{ me { id } }' } }]);
    await send(server.url, ada, roomId, 'second');
    await raw.next((f) => f.id === 'x' && f.type === 'next' && f.payload.data.messageAdded.seq === 2, 3000);
    await raw.next((f) => f.id === 'q' && f.type === 'next', 3000);
    expect(raw.frames.filter((f) => f.id === 'x' && f.type === 'complete')).toEqual([]); // the new one was not told it completed
    expect(server.app.hubs.listeners(roomId)).toBe(1);

    together(raw, [{ id: 'x', type: 'complete' }]);
    await waitFor(() => server.app.hubs.listeners(roomId) === 0); // and it ends as any other
    raw.close();
  });

  it('runs one subscription when a subscribe, its complete and a subscribe reusing the id come in one read', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const raw = await rawSocket(server.wsUrl, ada.token);
    together(raw, [subscribe('s', roomId), { id: 's', type: 'complete' }, subscribe('s', roomId)]);
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await send(server.url, ada, roomId, 'once');
    await raw.next((f) => f.id === 's' && f.type === 'next');
    await send(server.url, ada, roomId, 'twice');
    await raw.next((f) => f.id === 's' && f.type === 'next' && f.payload.data.messageAdded.seq === 2);
    expect(raw.frames.filter((f) => f.id === 's' && f.type === 'next').map((f) => f.payload.data.messageAdded.seq)).toEqual([1, 2]);
    expect(server.app.hubs.listeners(roomId)).toBe(1);
    raw.close();
    await waitFor(() => server.app.hubs.listeners(roomId) === 0); // nothing left behind
  });

  it('still closes the socket with 4409 for an id that is running', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const raw = await rawSocket(server.wsUrl, ada.token);
    together(raw, [subscribe('y', roomId), subscribe('y', roomId)]);
    expect(await raw.whenClosed).toBe(4409);
  });

  it('does not hold a subscribe whose id the client completed while nothing ran under it', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const raw = await rawSocket(server.wsUrl, ada.token);
    const started = Date.now();
    together(raw, [{ id: 'z', type: 'complete' }, subscribe('z', roomId)]);
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    expect(Date.now() - started).toBeLessThan(900); // not the wait for a running one's end (1 s)
    raw.close();
  });
});

describe('connection_init forms', () => {
  it('also accepts the token as headers.Authorization, as graphql-tools executors send it', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const client = wsClient(server.wsUrl, { headers: { Authorization: `Bearer ${ada.token}` } });
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await send(server.url, ada, roomId, 'hi');
    await sub.until((r) => r.length === 1);
    await client.dispose();
  });
});

describe('token expiry', () => {
  it('closes a WebSocket with 4403 when its token expires', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const { sid } = jwt.decode(ada.token) as { sid: string };
    const token = jwt.sign({ sid }, TEST_SECRET, { algorithm: 'HS256', issuer: 'chat-api', subject: ada.id, expiresIn: 2 });
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${token}` });
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const closed = await sub.done.then(() => undefined, (e) => e);
    expect(closed?.code).toBe(4403);
    await client.dispose();
  });
});

describe('roomEvents', () => {
  it('delivers MessageAdded events, resumable with after', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const m1 = await send(server.url, ada, roomId, 'one');
    await send(server.url, ada, roomId, 'two');
    const client = wsClient(server.wsUrl, ada);
    const sub = collect(client, `subscription($roomId: ID!, $after: String) {
      roomEvents(roomId: $roomId, after: $after) {
        __typename
        ... on MessageAdded { message { seq body } }
        ... on MessageUpdated { message { seq } }
        ... on AssistantDelta { messageId index text }
      }
    }`, { roomId, after: m1.cursor });
    await send(server.url, ada, roomId, 'three');
    await sub.until((r) => r.length >= 2);
    expect(sub.results.map((r) => [r.data?.roomEvents.__typename, r.data?.roomEvents.message.seq])).toEqual([
      ['MessageAdded', 2],
      ['MessageAdded', 3],
    ]);
    await client.dispose();
  });
});

describe('shared execution', () => {
  it('gives each subscriber its own viewerRole while sharing everything else', async () => {
    const [owner, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, owner);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const query = `subscription($roomId: ID!) { messageAdded(roomId: $roomId) { seq room { viewerRole } } }`;
    const clients = [wsClient(server.wsUrl, owner), wsClient(server.wsUrl, bob)];
    const [forOwner, forBob] = clients.map((c) => collect(c, query, { roomId }));
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    await send(server.url, owner, roomId, 'hello');
    await Promise.all([forOwner.until((r) => r.length === 1), forBob.until((r) => r.length === 1)]);
    expect(forOwner.results[0].data?.messageAdded.room.viewerRole).toBe('OWNER');
    expect(forBob.results[0].data?.messageAdded.room.viewerRole).toBe('MEMBER');
    await Promise.all(clients.map((c) => c.dispose()));
  });

  it('reads each author from the database once, not with every message, for subscribers who select the author', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const query = `subscription($roomId: ID!) { messageAdded(roomId: $roomId) { seq author { id username displayName isAssistant } } }`;
    const clients = [wsClient(server.wsUrl, ada), wsClient(server.wsUrl, bob)];
    const subs = clients.map((c) => collect(c, query, { roomId }));
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    const getRepository = jest.spyOn(server.app.db.dataSource, 'getRepository');
    try {
      const authors = Array.from({ length: 10 }, (_, i) => (i % 2 ? bob : ada));
      for (const [i, author] of authors.entries()) await send(server.url, author, roomId, `m${i}`);
      await Promise.all(subs.map((sub) => sub.until((r) => r.length === authors.length)));
      const expected = authors.map((u) => ({ id: u.id, username: u.username, displayName: u.username, isAssistant: false }));
      for (const sub of subs) expect(sub.results.map((r) => r.data?.messageAdded.author)).toEqual(expected);
      const userReads = getRepository.mock.calls.filter(([entity]) => (entity as { name?: string }).name === 'UserEntity');
      expect(userReads.length).toBeLessThanOrEqual(2); // once per author at most (each event's execution has fresh loaders)
    } finally {
      getRepository.mockRestore();
      await Promise.all(clients.map((c) => c.dispose()));
    }
  });
});
