// End to end with a client we did not write: Apollo Client 4 over HttpLink and GraphQLWsLink
// (DESIGN.md, Tests). Queries and mutations go over HTTP, subscriptions over graphql-ws; the
// roomEvents of a room keep the normalized cache's messages current, also across a resume.
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql, type NormalizedCacheObject } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { isSubscriptionOperation } from '@apollo/client/utilities';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { createRoom, must, send, signUp, startServer, waitFor, type TestServer, type TestUser } from '../support/harness';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

/** An Apollo Client signed in as `user`, with its graphql-ws client (to dispose of separately). */
interface Session {
  client: ApolloClient;
  ws: WsClient;
  close(): Promise<void>;
}

const sessions = new Set<Session>();
afterEach(async () => {
  await Promise.all([...sessions].map((s) => s.close()));
});

/** The unions of the schema, so the cache can match fragments on their members. */
const possibleTypes = {
  RoomEvent: ['MessageAdded', 'MessageUpdated', 'AssistantDelta', 'MemberChanged', 'TypingChanged', 'PresenceChanged'],
  MyEvent: ['RoomActivity', 'Mentioned', 'AddedToRoom', 'RemovedFromRoom', 'ReadStateChanged'],
};

function connect(user: TestUser, restore?: NormalizedCacheObject): Session {
  const authorization = `Bearer ${user.token}`;
  const ws = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization }, retryAttempts: 0 });
  const link = ApolloLink.split(
    ({ query }) => isSubscriptionOperation(query),
    new GraphQLWsLink(ws),
    new HttpLink({ uri: server.url, headers: { authorization } }),
  );
  const cache = new InMemoryCache({ possibleTypes });
  if (restore) cache.restore(restore);
  const client = new ApolloClient({ link, cache });
  const session: Session = {
    client,
    ws,
    async close() {
      sessions.delete(session);
      client.stop();
      await ws.dispose();
    },
  };
  sessions.add(session);
  return session;
}

const ME = gql`query Me { me { id username displayName isAssistant } }`;
const ROOM = gql`query Room($id: ID!) { room(id: $id) { id name kind viewerRole lastSeq } }`;
const MESSAGES = gql`query Messages($roomId: ID!, $first: Int) {
  messages(roomId: $roomId, first: $first) { edges { cursor node { id seq body } } pageInfo { hasNextPage endCursor } }
}`;
const CREATE_ROOM = gql`mutation CreateRoom($input: CreateRoomInput!) { createRoom(input: $input) { id name kind viewerRole } }`;
const JOIN = gql`mutation Join($roomId: ID!) { joinRoom(roomId: $roomId) { id viewerRole } }`;
const SEND = gql`mutation Send($input: SendMessageInput!) { sendMessage(input: $input) { id seq cursor body clientId author { id username } } }`;
const MESSAGE_ADDED = gql`subscription MessageAdded($roomId: ID!, $after: String) {
  messageAdded(roomId: $roomId, after: $after) { id seq cursor body author { username } }
}`;

interface Added {
  messageAdded: { id: string; seq: number; cursor: string; body: string; author: { username: string } };
}

/** An Apollo subscription whose results are collected as they arrive. */
function subscribe(session: Session, variables: Record<string, unknown>) {
  const results: Array<{ data?: Added; error?: unknown }> = [];
  let completed = false;
  const subscription = session.client
    .subscribe<Added>({ query: MESSAGE_ADDED, variables, fetchPolicy: 'no-cache' })
    .subscribe({
      next: (r) => results.push(r as { data?: Added; error?: unknown }),
      error: (error) => results.push({ error }),
      complete: () => (completed = true),
    });
  const messages = () => results.filter((r) => r.data).map((r) => r.data!.messageAdded);
  return {
    results,
    messages,
    seqs: () => messages().map((m) => m.seq),
    isComplete: () => completed,
    until: (n: number) => waitFor(() => messages().length >= n, 10_000, () => JSON.stringify(results).slice(0, 2000)),
    stop: () => subscription.unsubscribe(),
  };
}

/** Two users in one public room, each with an Apollo session. */
async function pair() {
  const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
  const roomId = await createRoom(server.url, ada);
  await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
  return { ada, bob, roomId, adaSession: connect(ada), bobSession: connect(bob) };
}

describe('Apollo Client 4', () => {
  it('runs queries and mutations over HTTP with the bearer token', async () => {
    const ada = await signUp(server.url);
    const { client } = connect(ada);

    const me = await client.query({ query: ME, fetchPolicy: 'network-only' });
    expect(me.data).toMatchObject({ me: { id: ada.id, username: ada.username, isAssistant: false } });

    const created = await client.mutate({ mutation: CREATE_ROOM, variables: { input: { name: 'apollo room', kind: 'PUBLIC' } } });
    const room = (created.data as any).createRoom;
    expect(room).toMatchObject({ name: 'apollo room', kind: 'PUBLIC', viewerRole: 'OWNER' });

    const sent = await client.mutate({ mutation: SEND, variables: { input: { roomId: room.id, body: 'hello', clientId: 'k-1' } } });
    expect((sent.data as any).sendMessage).toMatchObject({ seq: 1, body: 'hello', clientId: 'k-1', author: { id: ada.id } });

    const fetched = await client.query({ query: ROOM, variables: { id: room.id }, fetchPolicy: 'network-only' });
    expect((fetched.data as any).room).toMatchObject({ id: room.id, lastSeq: 1, viewerRole: 'OWNER' });
    const page = await client.query({ query: MESSAGES, variables: { roomId: room.id, first: 10 }, fetchPolicy: 'network-only' });
    expect((page.data as any).messages.edges.map((e: any) => e.node.body)).toEqual(['hello']);
  });

  it('receives over GraphQLWsLink the messages another user sends', async () => {
    const { bob, roomId, adaSession, bobSession } = await pair();
    const sub = subscribe(adaSession, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);

    for (let i = 1; i <= 3; i++) {
      await bobSession.client.mutate({ mutation: SEND, variables: { input: { roomId, body: `from bob ${i}` } } });
    }
    await sub.until(3);
    expect(sub.messages().map((m) => [m.seq, m.body, m.author.username])).toEqual([
      [1, 'from bob 1', bob.username],
      [2, 'from bob 2', bob.username],
      [3, 'from bob 3', bob.username],
    ]);
    expect(sub.results.every((r) => !r.error)).toBe(true);
    sub.stop();
  });

  it('resumes from the last received cursor after its WebSocket client was disposed, with no gap and no duplicate', async () => {
    const { ada, roomId, bobSession } = await pair();
    const send = (body: string) => bobSession.client.mutate({ mutation: SEND, variables: { input: { roomId, body } } });

    const first = connect(ada);
    const before = subscribe(first, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    for (let i = 1; i <= 3; i++) await send(`before ${i}`);
    await before.until(3);
    const last = before.messages()[before.messages().length - 1];
    before.stop();
    await first.close();
    await waitFor(() => server.app.hubs.listeners(roomId) === 0);

    for (let i = 1; i <= 4; i++) await send(`meanwhile ${i}`);

    const second = connect(ada);
    const after = subscribe(second, { roomId, after: last.cursor });
    await after.until(4); // the replay
    for (let i = 1; i <= 3; i++) await send(`live ${i}`);
    await after.until(7);

    expect(before.seqs()).toEqual([1, 2, 3]);
    expect(after.seqs()).toEqual([4, 5, 6, 7, 8, 9, 10]);
    expect(after.messages().map((m) => m.body)).toEqual([
      'meanwhile 1', 'meanwhile 2', 'meanwhile 3', 'meanwhile 4', 'live 1', 'live 2', 'live 3',
    ]);
    after.stop();
  });

  it('surfaces FORBIDDEN in extensions.code for a private room, over HTTP and over WebSocket', async () => {
    const [ada, eve] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada, 'PRIVATE');
    const session = connect(eve);

    const codeOf = (error: unknown) => {
      expect(CombinedGraphQLErrors.is(error)).toBe(true);
      return (error as CombinedGraphQLErrors).errors[0]?.extensions?.code;
    };

    const read = await session.client.query({ query: MESSAGES, variables: { roomId }, fetchPolicy: 'network-only' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(codeOf(read)).toBe('FORBIDDEN');

    const sent = await session.client.mutate({ mutation: SEND, variables: { input: { roomId, body: 'let me in' } } }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(codeOf(sent)).toBe('FORBIDDEN');

    const joined = await session.client.mutate({ mutation: JOIN, variables: { roomId } }).then(() => undefined, (error: unknown) => error);
    expect(codeOf(joined)).toBe('FORBIDDEN');

    // A room that is not visible is null, not an error (API.md: room(id)).
    const room = await session.client.query({ query: ROOM, variables: { id: roomId }, fetchPolicy: 'network-only' });
    expect((room.data as any).room).toBeNull();

    const sub = subscribe(session, { roomId });
    await waitFor(() => sub.results.some((r) => r.error), 10_000, () => JSON.stringify(sub.results));
    expect(codeOf(sub.results.find((r) => r.error)!.error)).toBe('FORBIDDEN');
    expect(sub.messages()).toEqual([]);
    sub.stop();

    const data = await must(server.url, `query($id: ID!) { room(id: $id) { lastSeq } }`, { id: roomId }, ada.token);
    expect(data.room.lastSeq).toBe(0); // the refused send wrote nothing
  });
});

const MESSAGE_STATE = gql`fragment MessageState on Message {
  id seq body editedAt deleted reactions { emoji count viewerReacted }
}`;
const HISTORY = gql`query History($roomId: ID!) {
  messages(roomId: $roomId, first: 50) { edges { cursor node { ...MessageState } } }
} ${MESSAGE_STATE}`;
const ROOM_EVENTS = gql`subscription RoomEvents($roomId: ID!, $after: String) {
  roomEvents(roomId: $roomId, after: $after) {
    __typename
    ... on MessageAdded { cursor message { ...MessageState } }
    ... on MessageUpdated { cursor message { ...MessageState } }
  }
} ${MESSAGE_STATE}`;
const EDIT = `mutation($input: EditMessageInput!) { editMessage(input: $input) { id } }`;
const ADD_REACTION = `mutation($input: ReactionInput!) { addReaction(input: $input) { id } }`;
const REMOVE_REACTION = `mutation($input: ReactionInput!) { removeReaction(input: $input) { id } }`;
const DELETE = `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`;

interface MessageState {
  id: string;
  seq: number;
  body: string;
  editedAt: string | null;
  deleted: boolean;
  reactions: Array<{ emoji: string; count: number; viewerReacted: boolean }>;
}
type RoomEvent = { __typename: 'MessageAdded' | 'MessageUpdated'; cursor: string; message: MessageState };

/** A roomEvents subscription through Apollo (results written to its cache), its events collected. */
function roomEvents(session: Session, variables: { roomId: string; after?: string }) {
  const events: RoomEvent[] = [];
  const errors: unknown[] = [];
  const subscription = session.client.subscribe<{ roomEvents: RoomEvent }>({ query: ROOM_EVENTS, variables }).subscribe({
    next: (r) => {
      if (!r.data) return void errors.push(r.error);
      const e = r.data.roomEvents as { __typename: string };
      if (e.__typename === 'MessageAdded' || e.__typename === 'MessageUpdated') events.push(e as RoomEvent); // not typing or presence
    },
    error: (error) => errors.push(error),
  });
  return { events, errors, stop: () => subscription.unsubscribe() };
}

/** The Message in a session's normalized cache. */
const cached = (session: Session, id: string) =>
  session.client.readFragment<MessageState>({ id: session.client.cache.identify({ __typename: 'Message', id }), fragment: MESSAGE_STATE });

describe('Apollo Client 4 and roomEvents', () => {
  it('updates the cached messages in place with an edit, reactions and a deletion, and after being recreated resumes with the last event cursor and brings the changes made meanwhile', async () => {
    const { ada, bob, roomId } = await pair();
    const [first, second] = [await send(server.url, bob, roomId, 'first'), await send(server.url, bob, roomId, 'second')];
    // Changes come from elsewhere (plain HTTP), so only the subscription can bring them to Ada's cache.
    const change = (query: string, variables: Record<string, unknown>, user: TestUser) => must(server.url, query, variables, user.token);

    const away = connect(ada);
    const pages: Array<Array<{ node: MessageState }>> = [];
    const watching = away.client
      .watchQuery<{ messages: { edges: Array<{ node: MessageState }> } }>({ query: HISTORY, variables: { roomId } })
      .subscribe({ next: (r) => r.data?.messages && pages.push(r.data.messages.edges as Array<{ node: MessageState }>) });
    await waitFor(() => pages.length > 0);
    const live = roomEvents(away, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);

    await change(EDIT, { input: { messageId: first.id, body: 'first, edited' } }, bob);
    await waitFor(() => cached(away, first.id)?.body === 'first, edited', 10_000, () => JSON.stringify(cached(away, first.id)));
    expect(cached(away, first.id)).toMatchObject({ seq: 1, deleted: false, editedAt: expect.any(String) });

    await change(ADD_REACTION, { input: { messageId: first.id, emoji: '👍' } }, bob);
    await change(ADD_REACTION, { input: { messageId: first.id, emoji: '👍' } }, ada);
    await change(ADD_REACTION, { input: { messageId: first.id, emoji: ':tada:' } }, bob);
    await waitFor(() => cached(away, first.id)?.reactions.length === 2, 10_000, () => JSON.stringify(cached(away, first.id)));
    expect(cached(away, first.id)!.reactions).toEqual([
      { __typename: 'Reaction', emoji: '👍', count: 2, viewerReacted: true },
      { __typename: 'Reaction', emoji: ':tada:', count: 1, viewerReacted: false },
    ]);

    await change(DELETE, { m: second.id }, bob);
    await waitFor(() => cached(away, second.id)?.deleted === true, 10_000, () => JSON.stringify(cached(away, second.id)));
    expect(cached(away, second.id)).toMatchObject({ body: '', reactions: [] });

    // The watched history page shows it all in place: same messages, same order, new states.
    await waitFor(() => pages.at(-1)?.[1]?.node.deleted === true && pages.at(-1)?.[0]?.node.reactions.length === 2);
    expect(pages.at(-1)!.map((e) => [e.node.id, e.node.body, e.node.deleted, e.node.reactions.map((r) => `${r.emoji}×${r.count}`)])).toEqual([
      [first.id, 'first, edited', false, ['👍×2', ':tada:×1']],
      [second.id, '', true, []],
    ]);
    expect(live.events.map((e) => [e.__typename, e.message.id])).toEqual([
      ['MessageUpdated', first.id],
      ['MessageUpdated', first.id],
      ['MessageUpdated', first.id],
      ['MessageUpdated', first.id],
      ['MessageUpdated', second.id],
    ]);
    expect(live.errors).toEqual([]);

    // Ada goes away, keeping her cache (as an app persists it) and the cursor of the last event.
    const lastCursor = live.events.at(-1)!.cursor;
    const persisted = (away.client.cache as InMemoryCache).extract();
    watching.unsubscribe();
    live.stop();
    await away.close();
    await waitFor(() => server.app.hubs.listeners(roomId) === 0);

    await change(EDIT, { input: { messageId: first.id, body: 'first, edited twice' } }, bob);
    const third = await send(server.url, bob, roomId, 'third');
    await change(REMOVE_REACTION, { input: { messageId: first.id, emoji: '👍' } }, ada);
    await change(ADD_REACTION, { input: { messageId: third.id, emoji: '❤️' } }, bob);

    const back = connect(ada, persisted);
    expect(cached(back, first.id)!.body).toBe('first, edited'); // the restored cache, as she left it
    const resumed = roomEvents(back, { roomId, after: lastCursor });
    await waitFor(() => resumed.events.length >= 2, 10_000, () => JSON.stringify(resumed));
    // Each message changed or added while she was away, once, in its current state, in change order.
    expect(resumed.events.map((e) => [e.__typename, e.message.id])).toEqual([
      ['MessageUpdated', first.id],
      ['MessageAdded', third.id],
    ]);
    expect(cached(back, first.id)).toMatchObject({
      body: 'first, edited twice',
      deleted: false,
      reactions: [
        { emoji: '👍', count: 1, viewerReacted: false },
        { emoji: ':tada:', count: 1, viewerReacted: false },
      ],
    });
    expect(cached(back, second.id)).toMatchObject({ deleted: true, body: '' });
    expect(cached(back, third.id)).toMatchObject({ seq: 3, body: 'third', reactions: [{ emoji: '❤️', count: 1, viewerReacted: false }] });

    // And live again after the replay.
    await change(DELETE, { m: third.id }, bob);
    await waitFor(() => cached(back, third.id)?.deleted === true, 10_000, () => JSON.stringify(resumed.events));
    const changes = resumed.events.map((e) => Number(Buffer.from(e.cursor, 'base64url').toString('utf8').split(':')[2]));
    expect(changes).toEqual([...changes].sort((x, y) => x - y));
    expect(new Set(changes).size).toBe(changes.length);
    expect(changes[0]).toBeGreaterThan(Number(Buffer.from(lastCursor, 'base64url').toString('utf8').split(':')[2]));
    expect(resumed.errors).toEqual([]);
    resumed.stop();
  });
});

describe('Apollo Client 4 and myEvents', () => {
  const ROOM_LIST = gql`query RoomList { rooms(first: 50) { edges { node { id unreadCount mentionCount lastMessage { id body } } } } }`;
  const MY_EVENTS = gql`subscription MyEvents { myEvents { __typename
    ... on RoomActivity { room { id unreadCount mentionCount lastMessage { id body } } message { id body } }
    ... on Mentioned { message { id } }
    ... on AddedToRoom { room { id } }
    ... on RemovedFromRoom { roomId }
    ... on ReadStateChanged { room { id unreadCount mentionCount } } } }`;
  type Row = { id: string; unreadCount: number; mentionCount: number; lastMessage: { body: string } | null };

  it('keeps a watched room list current from one myEvents subscription: unread counts, last messages, rooms joined and left', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const rooms = [await createRoom(server.url, ada, 'PRIVATE'), await createRoom(server.url, ada, 'PRIVATE')];
    const add = (roomId: string) => must(server.url, `mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }`, { r: roomId, u: bob.id }, ada.token);
    await add(rooms[0]);

    const app = connect(bob);
    let list: Row[] = [];
    const watching = app.client.watchQuery<{ rooms: { edges: Array<{ node: Row }> } }>({ query: ROOM_LIST }).subscribe({
      next: (r) => {
        if (r.data?.rooms) list = (r.data.rooms.edges ?? []).map((e) => e?.node as Row);
      },
    });
    await waitFor(() => list.length === 1);
    // What a room list does with its feed: counts and last messages land in the cache by themselves
    // (Room is normalized by id); a room joined or left means reading the list again.
    const feed = app.client.subscribe<{ myEvents: { __typename: string } }>({ query: MY_EVENTS }).subscribe({
      next: ({ data }) => {
        if (data?.myEvents.__typename === 'AddedToRoom' || data?.myEvents.__typename === 'RemovedFromRoom') void app.client.refetchQueries({ include: [ROOM_LIST] });
      },
    });
    await waitFor(() => server.app.services.activity.size === 1);

    await send(server.url, ada, rooms[0], 'one');
    await send(server.url, ada, rooms[0], `two for @${bob.username}`);
    await waitFor(() => list[0]?.unreadCount === 2, 10_000, () => JSON.stringify(list));
    expect(list).toEqual([{ __typename: 'Room', id: rooms[0], unreadCount: 2, mentionCount: 1, lastMessage: expect.objectContaining({ body: `two for @${bob.username}` }) }]);

    await add(rooms[1]);
    await waitFor(() => list.length === 2, 10_000, () => JSON.stringify(list));
    await send(server.url, ada, rooms[1], 'welcome');
    await waitFor(() => list[1]?.lastMessage?.body === 'welcome', 10_000, () => JSON.stringify(list));
    expect(list[1]).toMatchObject({ id: rooms[1], unreadCount: 1 });

    await must(server.url, `mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }`, { r: rooms[0], u: bob.id }, ada.token);
    await waitFor(() => list.length === 1 && list[0].id === rooms[1], 10_000, () => JSON.stringify(list));
    feed.unsubscribe();
    watching.unsubscribe();
  });
});
