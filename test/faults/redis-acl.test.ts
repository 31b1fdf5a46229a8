// Fault: Redis takes the subscriber's channels away (its ACL changed: `resetchannels`), closing the
// connection, and refuses them (`NOPERM`) when the instance reconnects. The instance reports pub/sub
// down meanwhile, and subscribes again until Redis takes them; its subscribers then get what was
// sent in between and what follows (API.md guarantees 1–2). An instance cut off alone publishes the
// revocations it could not once Redis takes its channels again (docs/guarantees.md, "Revocation at
// once, everywhere"). A private Redis: the shared one serves the other test files.
import Redis from 'ioredis';
import { collect, createRoom, gql, MESSAGE_ADDED, must, send, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { startRedis, type PrivateRedis } from './support/backing';
import { readiness } from './support/child-server';
import { baseOf } from './support/traffic';

let redis: PrivateRedis;
let server: TestServer;
let admin: Redis;

beforeAll(async () => {
  redis = await startRedis();
  // No heal on a timer within the test: what arrives came through pub/sub, or the heal of its return.
  server = await startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: '600000' });
  admin = new Redis(redis.url);
}, 60_000);

afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
  await redis?.destroy();
}, 60_000);

/** How many times Redis refused a subscription for want of channel permissions (its ACL log, one entry per attempt). */
async function refusedChannels(): Promise<number> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  return entries
    .filter((entry) => entry[entry.indexOf('reason') + 1] === 'channel')
    .reduce((sum, entry) => sum + Number(entry[entry.indexOf('count') + 1]), 0);
}

it('reports pub/sub down while Redis refuses its channels again, and delivers everything once Redis takes them', async () => {
  const ada = await signUp(server.url);
  const roomId = await createRoom(server.url, ada);
  const client = wsClient(server.wsUrl, ada);
  const sub = collect<{ messageAdded: { body: string } }>(client, MESSAGE_ADDED, { roomId });
  const bodies = () => sub.results.map((r) => r.data?.messageAdded.body);
  try {
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await send(server.url, ada, roomId, 'before');
    await sub.until(() => bodies().length === 1);

    await admin.call('ACL', 'SETUSER', 'default', 'resetchannels');
    await waitFor(refusedChannels, 15_000); // the instance reconnected and asked for its channels again
    expect(await readiness(baseOf(server.url))).toEqual({ status: 503, body: expect.objectContaining({ pubsub: 'down' }) });
    // Before: ioredis asked once, was refused where nobody heard it, and never asked again; /readyz
    // then said pub/sub up, and nothing arrived until a restart.
    await waitFor(async () => (await refusedChannels()) >= 2, 15_000); // asked again, refused again
    expect(await readiness(baseOf(server.url))).toEqual({ status: 503, body: expect.objectContaining({ pubsub: 'down' }) });
    await send(server.url, ada, roomId, 'while refused'); // committed and answered: sends never wait on Redis

    await admin.call('ACL', 'SETUSER', 'default', 'allchannels');
    await waitFor(async () => (await readiness(baseOf(server.url))).body.pubsub === 'up', 15_000);
    await send(server.url, ada, roomId, 'after');
    await sub.until(() => bodies().length === 3, 15_000);
    expect(bodies()).toEqual(['before', 'while refused', 'after']);
  } finally {
    await admin.call('ACL', 'SETUSER', 'default', 'allchannels');
    sub.stop();
    await client.dispose();
  }
}, 60_000);

it('reports pub/sub down when it starts on a Redis that refuses its channels, and delivers everything once Redis takes them', async () => {
  await admin.call('ACL', 'SETUSER', 'default', 'resetchannels');
  let late: TestServer | undefined;
  let client: ReturnType<typeof wsClient> | undefined;
  try {
    const refusedBefore = await refusedChannels();
    late = await startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: '600000' });
    await waitFor(async () => (await refusedChannels()) > refusedBefore, 15_000);
    // Before: each subscription refused once at start and never asked for again; /readyz said pub/sub
    // up, and only the heal timer delivered.
    await waitFor(async () => (await readiness(baseOf(late!.url))).body.pubsub === 'down', 15_000);
    const refusedWhileDown = await refusedChannels();
    await waitFor(async () => (await refusedChannels()) > refusedWhileDown, 15_000); // asked again, refused again
    expect(await readiness(baseOf(late.url))).toEqual({ status: 503, body: expect.objectContaining({ pubsub: 'down' }) });
    const bob = await signUp(late.url);
    const roomId = await createRoom(late.url, bob);
    client = wsClient(late.wsUrl, bob);
    const sub = collect<{ messageAdded: { body: string } }>(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => late!.app.hubs.listeners(roomId) === 1);
    await send(late.url, bob, roomId, 'while refused');

    await admin.call('ACL', 'SETUSER', 'default', 'allchannels');
    await waitFor(async () => (await readiness(baseOf(late!.url))).body.pubsub === 'up', 15_000);
    await send(late.url, bob, roomId, 'after');
    await sub.until((r) => r.length === 2, 15_000);
    expect(sub.results.map((r) => r.data?.messageAdded.body)).toEqual(['while refused', 'after']);
    sub.stop();
  } finally {
    await admin.call('ACL', 'SETUSER', 'default', 'allchannels');
    await client?.dispose();
    await late?.stop();
  }
}, 60_000);

it('publishes a revocation again once Redis takes the channels of the instance that made it, so other instances close its sockets then, not at their sweep', async () => {
  // The instance where the session logs out connects as its own Redis user, whose channels are
  // taken away: it alone is cut off from pub/sub; the other instance hears everything else.
  await admin.call('ACL', 'SETUSER', 'cutoff', 'on', '>secret', '~*', '&*', '+@all');
  const cutoffUrl = redis.url.replace('redis://', 'redis://cutoff:secret@');
  let cut: TestServer | undefined;
  let heard: TestServer | undefined;
  let client: ReturnType<typeof wsClient> | undefined;
  try {
    [cut, heard] = await Promise.all([
      startServer({ REDIS_URL: cutoffUrl, HEAL_INTERVAL_MS: '600000' }),
      startServer({ REDIS_URL: redis.url, SESSION_SWEEP_MS: '600000' }), // no sweep within the test
    ]);
    const vic = await signUp(heard.url);
    const closes: number[] = [];
    client = wsClient(heard.wsUrl, vic, { on: { closed: (e: unknown) => void closes.push((e as { code: number }).code) } });
    const roomId = await createRoom(heard.url, vic);
    const sub = collect<{ messageAdded: { body: string } }>(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => heard!.app.hubs.listeners(roomId) === 1);

    await admin.call('ACL', 'SETUSER', 'cutoff', 'resetchannels');
    await waitFor(() => !cut!.app.pubsub.connected, 15_000);
    await must(cut.url, 'mutation { logOut }', {}, vic.token); // its signal is refused (NOPERM)
    expect(heard.app.pubsub.connected).toBe(true);

    await admin.call('ACL', 'SETUSER', 'cutoff', 'allchannels');
    await waitFor(() => cut!.app.pubsub.connected, 15_000);
    // Before: the signal was lost for good, and the socket stayed open until the other instance's
    // sweep (here: none within ten minutes).
    await waitFor(() => closes.length === 1, 10_000);
    expect(closes).toEqual([4403]);
    sub.stop();
  } finally {
    await admin.call('ACL', 'SETUSER', 'cutoff', 'allchannels');
    await client?.dispose();
    await Promise.all([cut?.stop(), heard?.stop()]);
  }
}, 90_000);

it('refuses an operation on a socket of a session revoked on an instance cut off from pub/sub, and closes that socket, before the signal comes', async () => {
  // As above, the signal is refused while the revoking instance is cut off; here it stays cut off
  // for the whole test, and the other instance sweeps no sockets: what closes them there is the
  // check each operation on a socket makes, or any request's check that finds the session ended.
  await admin.call('ACL', 'SETUSER', 'cutoff', 'on', '>secret', '~*', '&*', '+@all');
  const cutoffUrl = redis.url.replace('redis://', 'redis://cutoff:secret@');
  let cut: TestServer | undefined;
  let heard: TestServer | undefined;
  const clients: Array<ReturnType<typeof wsClient>> = [];
  try {
    [cut, heard] = await Promise.all([
      startServer({ REDIS_URL: cutoffUrl, HEAL_INTERVAL_MS: '600000' }),
      startServer({ REDIS_URL: redis.url, SESSION_SWEEP_MS: '600000' }),
    ]);
    const vic = await signUp(heard.url);
    const friend = await signUp(heard.url);
    const roomId = await createRoom(heard.url, vic);
    const quiet = await createRoom(heard.url, vic);
    await must(heard.url, 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: roomId }, friend.token);
    const logIn = async () => ({
      ...vic,
      token: (await must(heard!.url, 'mutation($i: LogInInput!) { logIn(input: $i) { token } }', { i: { username: vic.username, password: 'correct horse battery' } })).logIn.token as string,
    });
    const sessions = { first: vic, second: await logIn(), third: await logIn() };
    const closes: Array<{ session: string; code: number }> = [];
    const sockets = Object.fromEntries(
      Object.entries(sessions).map(([session, user]) => {
        const client = wsClient(heard!.wsUrl, user, { on: { closed: (e: unknown) => void closes.push({ session, code: (e as { code: number }).code }) } });
        clients.push(client);
        collect(client, MESSAGE_ADDED, { roomId: quiet }); // keeps the socket open (the client is lazy)
        return [session, client];
      }),
    );
    await waitFor(() => heard!.app.hubs.listeners(quiet) === 3);
    const watched = collect<{ messageAdded: { body: string; cursor: string } }>(wsClient(heard.wsUrl, friend), MESSAGE_ADDED, { roomId });
    await waitFor(() => heard!.app.hubs.listeners(roomId) === 1);
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { seq } }';
    await must(heard.url, SEND, { i: { roomId, body: 'before the logOuts' } }, friend.token);
    const [before] = await watched.until((r) => r.length === 1);

    await admin.call('ACL', 'SETUSER', 'cutoff', 'resetchannels');
    await waitFor(() => !cut!.app.pubsub.connected, 15_000);
    for (const user of Object.values(sessions)) await must(cut.url, 'mutation { logOut }', {}, user.token); // each signal refused (NOPERM), and stays so
    expect(heard.app.pubsub.connected).toBe(true);
    await must(heard.url, SEND, { i: { roomId, body: 'after the logOuts' } }, friend.token);

    // A send over the first socket: refused, not stored, and the socket closes right after.
    const sent = collect(sockets.first, SEND, { i: { roomId, body: 'after logOut, over the socket' } });
    await sent.done.catch(() => undefined);
    expect(sent.results.map((r) => r.errors?.map((e) => e.extensions?.code))).toEqual([['UNAUTHENTICATED']]);
    await waitFor(() => closes.length === 1, 5_000);
    // The second session's socket: an HTTP request of that session, to this instance, closes it.
    expect((await gql(heard.url, '{ me { id } }', {}, sessions.second.token)).data).toEqual({ me: null });
    await waitFor(() => closes.length === 2, 5_000);
    // The third subscribes from before the logOuts: it reads nothing written since, and closes.
    const resumed = collect<{ messageAdded: { body: string } }>(sockets.third, MESSAGE_ADDED, { roomId, after: before.data!.messageAdded.cursor });
    await resumed.done.catch(() => undefined);
    await waitFor(() => closes.length === 3, 5_000);
    expect(resumed.results.map((r) => r.data?.messageAdded?.body)).not.toContain('after the logOuts');
    expect(closes).toEqual([
      { session: 'first', code: 4403 },
      { session: 'second', code: 4403 },
      { session: 'third', code: 4403 },
    ]);
    // Nothing was stored through the first: the friend's next message follows its last.
    await must(heard.url, SEND, { i: { roomId, body: 'the last' } }, friend.token);
    await watched.until((r) => r.length === 3);
    expect(watched.results.map((r) => r.data?.messageAdded.body)).toEqual(['before the logOuts', 'after the logOuts', 'the last']);
  } finally {
    await admin.call('ACL', 'SETUSER', 'cutoff', 'allchannels');
    for (const client of clients) await client.dispose();
    await Promise.all([cut?.stop(), heard?.stop()]);
  }
}, 90_000);
