// Canonical ids (issue 9, point 3): a UUID in any letter case names the same room, the same hub
// and gives the same cursors, because ids are canonicalised where they enter the server.
import { collect, createRoom, must, MESSAGE_ADDED, send, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

/** The id with every other letter upper case: not the form PostgreSQL writes. */
const mixedCase = (id: string) => [...id].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('');

it('makes one hub for a room whatever the case of its id, and delivers to every spelling at once', async () => {
  const ada = await signUp(server.url);
  const roomId = await createRoom(server.url, ada);
  const client = wsClient(server.wsUrl, ada);
  const spellings = [roomId, roomId.toUpperCase(), mixedCase(roomId)];
  const subs = spellings.map((id) => collect(client, MESSAGE_ADDED, { roomId: id }));
  await waitFor(() => server.app.hubs.listeners(roomId) === 3);
  expect(server.app.hubs.listeners(roomId.toUpperCase())).toBe(0);
  const sent = await send(server.url, ada, roomId.toUpperCase(), 'hello');
  for (const sub of subs) {
    const [event] = await sub.until((r) => r.length === 1);
    expect(event.data.messageAdded).toMatchObject({ id: sent.id, cursor: sent.cursor });
  }
  subs.forEach((s) => s.stop());
  await client.dispose();
});

it('gives the same cursors and ids in history, whatever the case of the room id', async () => {
  const ada = await signUp(server.url);
  const roomId = await createRoom(server.url, ada);
  await send(server.url, ada, roomId, 'one');
  const page = (id: string) => must(server.url, 'query($r: ID!) { room(id: $r) { id } messages(roomId: $r) { edges { cursor node { id cursor room { id } } } } }', { r: id }, ada.token);
  const lower = await page(roomId);
  expect(await page(roomId.toUpperCase())).toEqual(lower);
  expect(await page(mixedCase(roomId))).toEqual(lower);
  expect(lower.room.id).toBe(roomId);
});

it('canonicalises ids inside input objects and in every argument', async () => {
  const ada = await signUp(server.url);
  const bob = await signUp(server.url);
  const roomId = await createRoom(server.url, ada, 'PRIVATE');
  await must(server.url, 'mutation($r: ID!, $u: ID!) { addMember(roomId: $r, userId: $u) { id } }', { r: roomId.toUpperCase(), u: bob.id.toUpperCase() }, ada.token);
  const root = await send(server.url, bob, roomId.toUpperCase(), 'root');
  const reply = await send(server.url, bob, mixedCase(roomId), 'reply', { parentId: root.id.toUpperCase(), clientId: 'Same-Case-Kept' });
  const again = await send(server.url, bob, roomId, 'reply', { parentId: root.id, clientId: 'Same-Case-Kept' });
  expect(again.id).toBe(reply.id); // one idempotency key, one message
  const thread = await must(server.url, 'query($r: ID!, $t: ID) { messages(roomId: $r, threadId: $t) { edges { node { id } } } }', { r: roomId.toUpperCase(), t: root.id.toUpperCase() }, bob.token);
  expect(thread.messages.edges.map((e: any) => e.node.id)).toEqual([root.id, reply.id]);
});
