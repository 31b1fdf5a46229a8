// End to end with a client we did not write: Apollo Client 4 over HttpLink and GraphQLWsLink
// (DESIGN.md, Tests). Queries and mutations go over HTTP, subscriptions over graphql-ws.
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { isSubscriptionOperation } from '@apollo/client/utilities';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';
import { createRoom, must, signUp, startServer, waitFor, type TestServer, type TestUser } from '../support/harness';

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

function connect(user: TestUser): Session {
  const authorization = `Bearer ${user.token}`;
  const ws = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization }, retryAttempts: 0 });
  const link = ApolloLink.split(
    ({ query }) => isSubscriptionOperation(query),
    new GraphQLWsLink(ws),
    new HttpLink({ uri: server.url, headers: { authorization } }),
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
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
