// The authorization matrix (issue 9, point 7): every operation of the schema run by every kind of
// actor against a PRIVATE room, over the transport a client uses for it. The outcomes are written
// to docs/authorization.md; this test fails when that file is stale (run it with
// UPDATE_AUTHORIZATION_DOC=1 to rewrite it) or when an operation of the schema has no row.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserEntity } from '../../src/db/entities';
import { createSchema } from '../../src/graphql/schema';
import { FakeOpenAI } from '../support/fake-openai';
import { gql, must, send, signUp, startServer, unique, waitFor, type TestServer, type TestUser } from '../support/harness';
import { rawSocket } from '../support/transports';

const DOC = path.resolve(__dirname, '../../docs/authorization.md');
const ACTORS = ['anonymous', 'outsider', 'member', 'ADMIN', 'OWNER', 'removed member', 'assistant user'] as const;
type Actor = (typeof ACTORS)[number];

/** One room as the matrix finds it: its OWNER, a member, a removed member, another member, a message and a streaming assistant reply. */
interface Scene {
  roomId: string;
  publicRoomId: string;
  messageId: string;
  messageCursor: string;
  replyId: string;
  otherMemberId: string;
  tokens: Record<Actor, string | null>;
}

interface Operation {
  field: string;
  kind: 'query' | 'mutation' | 'subscription';
  document: string;
  variables(scene: Scene): Record<string, unknown>;
  /** The operation changes the room: each actor gets a scene of its own. */
  changes?: boolean;
  note?: string;
}

const OPERATIONS: Operation[] = [
  { field: 'me', kind: 'query', document: '{ me { id } }', variables: () => ({}) },
  { field: 'room', kind: 'query', document: 'query($r: ID!) { room(id: $r) { id } }', variables: (s) => ({ r: s.roomId }) },
  { field: 'rooms', kind: 'query', document: '{ rooms { edges { node { id } } } }', variables: () => ({}) },
  { field: 'messages', kind: 'query', document: 'query($r: ID!) { messages(roomId: $r) { edges { node { id } } } }', variables: (s) => ({ r: s.roomId }) },
  { field: 'signUp', kind: 'mutation', document: 'mutation($u: String!) { signUp(input: { username: $u, password: "correct horse battery" }) { token } }', variables: () => ({ u: unique() }) },
  { field: 'logIn', kind: 'mutation', document: 'mutation($u: String!) { logIn(input: { username: $u, password: "wrong password" }) { token } }', variables: () => ({ u: unique() }), note: 'an unknown username: UNAUTHENTICATED for everyone' },
  { field: 'createRoom', kind: 'mutation', document: 'mutation { createRoom(input: { name: "new", kind: PRIVATE }) { id } }', variables: () => ({}) },
  { field: 'joinRoom', kind: 'mutation', document: 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', variables: (s) => ({ r: s.roomId }), changes: true, note: 'the PRIVATE room' },
  { field: 'joinRoom', kind: 'mutation', document: 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', variables: (s) => ({ r: s.publicRoomId }), changes: true, note: 'a PUBLIC room' },
  { field: 'addMember', kind: 'mutation', document: 'mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }', variables: (s) => ({ r: s.roomId, u: s.otherMemberId }), changes: true },
  { field: 'leaveRoom', kind: 'mutation', document: 'mutation($r: ID!) { leaveRoom(roomId: $r) }', variables: (s) => ({ r: s.roomId }), changes: true },
  { field: 'removeMember', kind: 'mutation', document: 'mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }', variables: (s) => ({ r: s.roomId, u: s.otherMemberId }), changes: true, note: 'removes another member' },
  { field: 'sendMessage', kind: 'mutation', document: 'mutation($r: ID!) { sendMessage(input: { roomId: $r, body: "hi" }) { id } }', variables: (s) => ({ r: s.roomId }), changes: true },
  { field: 'askAssistant', kind: 'mutation', document: 'mutation($m: ID!) { askAssistant(input: { messageId: $m }) { id } }', variables: (s) => ({ m: s.messageId }), changes: true },
  { field: 'cancelAssistant', kind: 'mutation', document: 'mutation($m: ID!) { cancelAssistant(messageId: $m) { id } }', variables: (s) => ({ m: s.replyId }), changes: true, note: 'a reply the OWNER asked for' },
  { field: 'updateRoom', kind: 'mutation', document: 'mutation($r: ID!) { updateRoom(input: { roomId: $r, assistantEnabled: true }) { id } }', variables: (s) => ({ r: s.roomId }), changes: true, note: 'the assistant settings' },
  { field: 'updateRoom', kind: 'mutation', document: 'mutation($r: ID!) { updateRoom(input: { roomId: $r, name: "renamed" }) { id } }', variables: (s) => ({ r: s.roomId }), changes: true, note: 'a new name' },
  { field: 'users', kind: 'query', document: '{ users(query: "u") { id } }', variables: () => ({}) },
  { field: 'publicRooms', kind: 'query', document: '{ publicRooms { edges { node { id } } } }', variables: () => ({}) },
  { field: 'searchMessages', kind: 'query', document: 'query($r: ID!) { searchMessages(query: "question", roomId: $r) { edges { node { id } } } }', variables: (s) => ({ r: s.roomId }) },
  { field: 'editMessage', kind: 'mutation', document: 'mutation($m: ID!) { editMessage(input: { messageId: $m, body: "edited" }) { id } }', variables: (s) => ({ m: s.messageId }), changes: true, note: "the OWNER's message" },
  { field: 'deleteMessage', kind: 'mutation', document: 'mutation($m: ID!) { deleteMessage(messageId: $m) { id } }', variables: (s) => ({ m: s.messageId }), changes: true, note: "the OWNER's message" },
  { field: 'addReaction', kind: 'mutation', document: 'mutation($m: ID!) { addReaction(input: { messageId: $m, emoji: "👍" }) { id } }', variables: (s) => ({ m: s.messageId }), changes: true },
  { field: 'removeReaction', kind: 'mutation', document: 'mutation($m: ID!) { removeReaction(input: { messageId: $m, emoji: "👍" }) { id } }', variables: (s) => ({ m: s.messageId }), changes: true },
  { field: 'markRead', kind: 'mutation', document: 'mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { id } }', variables: (s) => ({ r: s.roomId, c: s.messageCursor }), changes: true },
  { field: 'openDirectRoom', kind: 'mutation', document: 'mutation($u: ID!) { openDirectRoom(userId: $u) { id } }', variables: (s) => ({ u: s.otherMemberId }), changes: true, note: 'with another member' },
  { field: 'setMemberRole', kind: 'mutation', document: 'mutation($r: ID!, $u: ID!) { setMemberRole(roomId: $r, userId: $u, role: ADMIN) { id } }', variables: (s) => ({ r: s.roomId, u: s.otherMemberId }), changes: true, note: 'makes another member ADMIN' },
  { field: 'setTyping', kind: 'mutation', document: 'mutation($r: ID!) { setTyping(roomId: $r, typing: true) }', variables: (s) => ({ r: s.roomId }) },
  { field: 'myEvents', kind: 'subscription', document: 'subscription { myEvents { __typename } }', variables: () => ({}) },
  { field: 'messageAdded', kind: 'subscription', document: 'subscription($r: ID!) { messageAdded(roomId: $r) { id } }', variables: (s) => ({ r: s.roomId }), changes: true },
  { field: 'roomEvents', kind: 'subscription', document: 'subscription($r: ID!) { roomEvents(roomId: $r) { __typename } }', variables: (s) => ({ r: s.roomId }), changes: true },
  { field: 'refreshSession', kind: 'mutation', document: 'mutation { refreshSession(refreshToken: "not.a-token") { token } }', variables: () => ({}), note: 'a malformed refresh token' },
  // Last: it ends the session of the token it is sent with.
  { field: 'logOut', kind: 'mutation', document: 'mutation { logOut }', variables: () => ({}) },
];

let server: TestServer;
let fake: FakeOpenAI;
let assistantToken: string;
beforeAll(async () => {
  fake = new FakeOpenAI({}, { kind: 'stall', chunks: ['thinking'] });
  await fake.start();
  server = await startServer({ OPENAI_API_KEY: 'sk-test-matrix', OPENAI_BASE_URL: fake.url, OPENAI_MODEL: 'fake', ASSISTANT_MAX_STREAMING_PER_USER: '100', ASSISTANT_STALL_TIMEOUT_MS: '1000', ASSISTANT_ASKS_PER_MINUTE: '1000' });
  const assistant = await server.app.db.dataSource.getRepository(UserEntity).findOneByOrFail({ isAssistant: true });
  assistantToken = (await server.app.services.sessions.create(assistant.id)).token; // what only someone holding the signing secret could make
  const [owner, member, admin, removed, other, outsider] = await Promise.all(Array.from({ length: 6 }, () => signUp(server.url)));
  people = { owner, member, admin, removed, other, outsider };
});
afterAll(async () => {
  await server.stop();
  await fake.stop();
});

/** The actors' accounts, the same in every scene (each scene has rooms of its own). */
let people: Record<'owner' | 'member' | 'admin' | 'removed' | 'other' | 'outsider', TestUser>;

async function createScene(): Promise<Scene> {
  const { owner, member, admin, removed, other, outsider } = people;
  const create = (kind: string) => must(server.url, `mutation { createRoom(input: { name: "${unique('room')}", kind: ${kind} }) { id } }`, {}, owner.token);
  const roomId = (await create('PRIVATE')).createRoom.id as string;
  const publicRoomId = (await create('PUBLIC')).createRoom.id as string;
  const add = (user: TestUser) => must(server.url, 'mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }', { r: roomId, u: user.id }, owner.token);
  await Promise.all([add(member), add(admin), add(removed), add(other)]);
  await must(server.url, 'mutation($r: ID!, $u: ID!) { setMemberRole(roomId: $r, userId: $u, role: ADMIN) { id } }', { r: roomId, u: admin.id }, owner.token);
  await must(server.url, 'mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }', { r: roomId, u: removed.id }, owner.token);
  const asked = await send(server.url, owner, roomId, 'a question');
  const { id: messageId, cursor: messageCursor } = await send(server.url, owner, roomId, 'another question');
  const reply = await must(server.url, 'mutation($m: ID!) { askAssistant(input: { messageId: $m }) { id } }', { m: asked.id }, owner.token);
  return {
    roomId,
    publicRoomId,
    messageId,
    messageCursor,
    replyId: reply.askAssistant.id,
    otherMemberId: other.id,
    tokens: { anonymous: null, outsider: outsider.token, member: member.token, ADMIN: admin.token, OWNER: owner.token, 'removed member': removed.token, 'assistant user': assistantToken },
  };
}

/** `ok`, `null` (no error, but nothing to see) or the error code. */
async function run(operation: Operation, scene: Scene, actor: Actor): Promise<string> {
  const token = scene.tokens[actor];
  const variables = operation.variables(scene);
  if (operation.kind !== 'subscription') {
    const result = await gql(server.url, operation.document, variables, token ?? undefined);
    if (result.errors?.length) return result.errors[0].extensions?.code ?? 'NO_CODE';
    return result.data?.[operation.field] === null ? 'null' : 'ok';
  }
  const socket = await rawSocket(server.wsUrl, null);
  try {
    socket.send({ type: 'connection_init', payload: token ? { authorization: `Bearer ${token}` } : {} });
    const init = await Promise.race([socket.next((f) => f.type === 'connection_ack').then(() => 'ack'), socket.whenClosed.then((code) => `close ${code}`)]);
    if (init !== 'ack') return init;
    const roomId = variables.r as string | undefined;
    const listening = () => (roomId ? server.app.hubs.listeners(roomId) : server.app.services.activity.size);
    const before = listening();
    socket.send({ id: '1', type: 'subscribe', payload: { query: operation.document, variables } });
    return await waitFor(() => {
      const frame = socket.frames.find((f) => f.id === '1');
      if (frame?.type === 'error') return frame.payload?.[0]?.extensions?.code ?? 'NO_CODE';
      if (frame?.type === 'next') return frame.payload?.errors?.[0]?.extensions?.code ?? 'ok';
      return listening() > before ? 'ok' : undefined;
    });
  } finally {
    socket.close();
  }
}

function render(rows: Array<{ operation: Operation; outcomes: string[] }>): string {
  const header = `| operation | ${ACTORS.join(' | ')} |\n| --- | ${ACTORS.map(() => '---').join(' | ')} |`;
  const lines = rows.map(({ operation, outcomes }) => {
    const name = `\`${operation.field}\`${operation.note ? ` (${operation.note})` : ''}`;
    return `| ${name} | ${outcomes.map((o) => (o === 'ok' ? '**ok**' : o)).join(' | ')} |`;
  });
  return `# Authorization matrix

Who may do what, as the server answers it: every operation of the schema, run by each kind of
actor against a PRIVATE room (unless the row says otherwise). Written by
\`test/integration/authorization.test.ts\`, which fails when this file no longer matches the
server (rewrite it with \`UPDATE_AUTHORIZATION_DOC=1 npx jest test/integration/authorization.test.ts\`)
or when the schema has an operation without a row.

- **anonymous**: no token (over WebSocket, the socket is closed with 4403 before any subscription).
- **outsider**: signed in, not a member. **member**: added by the OWNER. **ADMIN**: a member the
  OWNER made ADMIN. **OWNER**: created the room.
- **removed member**: was a member until the OWNER removed them.
- **assistant user**: the account assistant replies are written by, with a valid token.
- Cells: **ok**; \`null\` (answered, nothing to see: the same as for a room that does not exist);
  otherwise the \`extensions.code\` of the error (\`src/errors.ts\`). \`FORBIDDEN\` is also the answer
  for a room that does not exist, so ids cannot be probed.
- Queries and mutations over HTTP, subscriptions over WebSocket; each changing operation runs on a
  fresh room per actor.

${header}
${lines.join('\n')}
`;
}

it('answers every operation for every actor as docs/authorization.md says, and the schema has no operation without a row', async () => {
  const shared = await createScene();
  const rows: Array<{ operation: Operation; outcomes: string[] }> = [];
  for (const operation of OPERATIONS) {
    const outcomes: string[] = [];
    for (const actor of ACTORS) outcomes.push(await run(operation, operation.changes ? await createScene() : shared, actor));
    rows.push({ operation, outcomes });
  }
  const table = render(rows);
  if (process.env.UPDATE_AUTHORIZATION_DOC) writeFileSync(DOC, table);
  expect(table).toBe(readFileSync(DOC, 'utf8'));

  const schema = createSchema();
  const fields = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()].flatMap((type) => Object.keys(type?.getFields() ?? {}));
  expect(fields.filter((f) => !OPERATIONS.some((o) => o.field === f))).toEqual([]);
}, 180_000);
