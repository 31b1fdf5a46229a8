// Fault: an instance dies (SIGKILL) while it holds a user's socket and their typing (API.md
// guarantee 11). Nobody tells the others: its heartbeats stop, the deadlines it set lapse, and a
// surviving instance's sweep takes the user offline and ends the typing, each once. Short TTLs here;
// the defaults (PRESENCE_TTL_MS 20 s, TYPING_TTL_MS 5 s) bound the same within about 30 s.
import type { Client } from 'graphql-ws';
import { presenceOf, ROOM_EVENTS, SET_TYPING, typingOf } from '../support/ephemeral';
import { collect, createRoom, must, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { sharedUrls } from './support/backing';
import { killAllServers, spawnServer, type ChildServer } from './support/child-server';

const TTL = { PRESENCE_TTL_MS: '1500', TYPING_TTL_MS: '1000' };

let survivor: TestServer;
let victim: ChildServer;
const clients: Client[] = [];

beforeAll(async () => {
  const { databaseUrl, redisUrl } = sharedUrls();
  victim = await spawnServer('victim', { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, ...TTL });
  survivor = await startServer(TTL);
  await victim.ready();
}, 90_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.dispose()));
  await killAllServers();
  await survivor?.stop();
}, 60_000);

it('takes offline, and ends the typing of, a user whose instance was killed, on the surviving instance', async () => {
  const [ada, bob] = await Promise.all([signUp(survivor.url), signUp(survivor.url)]);
  const roomId = await createRoom(survivor.url, bob);
  await must(survivor.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, ada.token);
  const watcherClient = wsClient(survivor.wsUrl, bob);
  const adaClient = wsClient(victim.wsUrl, ada, { onNonLazyError: () => undefined });
  clients.push(watcherClient, adaClient);
  const watcher = collect(watcherClient, ROOM_EVENTS, { roomId });
  await waitFor(() => survivor.app.hubs.listeners(roomId) === 1);

  collect(adaClient, ROOM_EVENTS, { roomId }); // ada's socket is on the victim
  await must(victim.url, SET_TYPING, { roomId, typing: true }, ada.token);
  await watcher.until(() => presenceOf(watcher, ada).length >= 1 && typingOf(watcher, ada).length >= 1);

  const killedAt = Date.now();
  await victim.kill();
  await watcher.until(() => presenceOf(watcher, ada).length >= 2 && typingOf(watcher, ada).length >= 2, 20_000);
  process.stdout.write(`${JSON.stringify({ scenario: 'presence after SIGKILL', presenceTtlMs: 1500, offlineAfterMs: Date.now() - killedAt })}\n`);
  expect(presenceOf(watcher, ada)).toEqual([true, false]);
  expect(typingOf(watcher, ada)).toEqual([true, false]);
  expect(await survivor.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([bob.id]));
}, 60_000);
