// Fault: Redis stops answering with its connections open (its process stopped: SIGSTOP, as a
// stalled host or a long fork leaves it), then wakes. Budgets fall back to the instance's own counts
// while it does not answer and are shared through Redis again when it does; a user who kept within
// them at a steady pace is never refused for the stall (API.md, RATE_LIMITED). Pub/sub counts as
// down, on an instance with nothing to publish too, so revocation holds (docs/guarantees.md,
// "Revocation at once, everywhere"); `/readyz` answers within a second meanwhile. A private Redis:
// the shared one serves the other test files. A process of ours held past a timeout while Redis
// answered is not taken for a Redis that stopped.
import { Writable } from 'node:stream';
import Redis from 'ioredis';
import { collect, createRoom, gql, MESSAGE_ADDED, must, send, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';
import { AnsweringRedis } from '../../src/redis-client';
import { startRedis, type PrivateRedis } from './support/backing';
import { readiness } from './support/child-server';
import { baseOf } from './support/traffic';

let redis: PrivateRedis;
let server: TestServer;
/** A second instance: heals every second, and never sweeps its sockets' sessions within a test. */
let other: TestServer;
/** What it logs (warnings and worse). */
const otherLines: string[] = [];
const otherLog = new Writable({
  write(chunk, _encoding, done) {
    otherLines.push(String(chunk));
    done();
  },
});
let admin: Redis;
let redisPid: number;

beforeAll(async () => {
  redis = await startRedis();
  server = await startServer({ REDIS_URL: redis.url, SENDS_PER_USER_PER_10S: '10' });
  other = await startServer({ REDIS_URL: redis.url, HEAL_INTERVAL_MS: '1000', SESSION_SWEEP_MS: '600000', LOG_LEVEL: 'warn' }, otherLog);
  admin = new Redis(redis.url);
  redisPid = Number(/process_id:(\d+)/.exec(await admin.info('server'))![1]);
}, 60_000);

afterAll(async () => {
  try {
    process.kill(redisPid, 'SIGCONT');
  } catch {
    // gone already
  }
  admin?.disconnect();
  await other?.stop();
  await server?.stop();
  await redis?.destroy();
}, 60_000);

const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { seq } }';

it('never refuses a sender within its budget for a Redis that stopped answering, and shares the budgets through Redis again once it answers', async () => {
  const ada = await signUp(server.url);
  const roomId = await createRoom(server.url, ada);
  const refusals: string[] = [];
  let sent = 0;
  // One send every 1.25 s: at most 8 in any 10 s against a budget of 10, before, during and after the stall.
  const sendFor = async (ms: number) => {
    for (const end = Date.now() + ms; Date.now() < end; ) {
      const started = Date.now();
      const result = await gql(server.url, SEND, { input: { roomId, body: `m${sent}`, clientId: `c${sent}` } }, ada.token);
      sent++;
      if (result.errors) refusals.push(`${sent}: ${JSON.stringify(result.errors[0].extensions)}`);
      await new Promise((r) => setTimeout(r, Math.max(0, 1_250 - (Date.now() - started))));
    }
  };
  await sendFor(3_000);
  const burstKeys = async () => admin.keys('limit:send-user-burst*');
  expect(await burstKeys()).toHaveLength(1); // spent through Redis

  process.kill(redisPid, 'SIGSTOP');
  try {
    await sendFor(4_000);
    const asked = Date.now();
    expect(await readiness(baseOf(server.url))).toEqual({ status: 503, body: expect.objectContaining({ pubsub: 'down' }) });
    // Before: the probe waited for Redis's command timeout (2 s) and a readiness check with a 1 s
    // timeout (Kubernetes' default) saw no answer at all.
    expect(Date.now() - asked).toBeLessThan(2_500); // a bound on its 0.8 s probes, with room for a busy machine
    await sendFor(4_000);
  } finally {
    process.kill(redisPid, 'SIGCONT');
  }
  await waitFor(async () => (await readiness(baseOf(server.url))).status === 200, 15_000);
  // Before: every send of the stall had been counted by the instance and, each command queued in the
  // stopped Redis, counted again by Redis when it woke: the next sends refused RATE_LIMITED.
  await sendFor(12_000);
  expect(refusals).toEqual([]);
  await admin.del(await burstKeys());
  await sendFor(1_000);
  expect(await burstKeys()).toHaveLength(1); // spent through Redis again
}, 90_000);

it('counts pub/sub down once Redis has not answered, also on an instance with nothing to publish, so a session logged out meanwhile has its sockets on other instances closed before a heal delivers', async () => {
  const [ada, vic] = await Promise.all([signUp(server.url), signUp(server.url)]);
  const roomId = await createRoom(server.url, ada);
  await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, vic.token);
  const closes: number[] = [];
  const ws = wsClient(other.wsUrl, vic, { on: { closed: (e: unknown) => void closes.push((e as { code: number }).code) } });
  const sub = collect<{ messageAdded: { body: string } }>(ws, MESSAGE_ADDED, { roomId, after: null });
  const watcher = wsClient(other.wsUrl, ada);
  const seen = collect<{ messageAdded: { body: string } }>(watcher, MESSAGE_ADDED, { roomId, after: null });
  const bodies = (of: typeof sub) => of.results.map((r) => r.data?.messageAdded.body);
  try {
    await waitFor(() => other.app.hubs.listeners(roomId) === 2);
    await send(server.url, ada, roomId, 'before');
    await sub.until(() => bodies(sub).length === 1);
    otherLines.length = 0;
    process.kill(redisPid, 'SIGSTOP');
    try {
      await send(server.url, ada, roomId, 'while Redis is stopped');
      // Nothing goes through the other instance: it notices by the PING it sends now and then, and
      // counts pub/sub down at once (before: only once the connection it gave up on had closed,
      // 2 s later, and a heal meanwhile delivered what followed a logOut).
      await waitFor(() => otherLines.some((line) => line.includes('redis did not answer in time')), 10_000, () => otherLines.join(''));
      expect(other.app.pubsub.connected).toBe(false);
      await must(server.url, 'mutation { logOut }', {}, vic.token); // its signal cannot reach the other instance
      // An operation on the socket meanwhile checks its session: it runs signed out (a send is
      // refused, nothing stored), and the socket closes once it is answered — unless a heal's
      // check of the sockets' sessions closed it first (then the send never ran).
      const overSocket = collect(ws, SEND, { input: { roomId, body: 'over the logged-out socket', clientId: 'c-ws' } });
      const overSocketEnd = await overSocket.done.then(() => 'complete', (err: unknown) => err);
      expect([[['UNAUTHENTICATED']], []]).toContainEqual(overSocket.results.map((r) => r.errors?.map((e) => e.extensions?.code)));
      expect(await server.app.db.dataSource.query(`SELECT 1 FROM messages WHERE client_id = 'c-ws'`)).toEqual([]);
      await send(server.url, ada, roomId, 'after the logOut');
      // Before: the other instance took Redis for up, so it did not check its sockets' sessions
      // before its heals, and delivered what followed the logOut until its sweep closed them.
      // (When a check closed the socket before the send, the lazy client opened another for it,
      // which the revoked token got closed too: two closes, both 4403.)
      await waitFor(() => closes.length >= 1, 10_000, () => JSON.stringify({ overSocket: overSocket.results, overSocketEnd: String(overSocketEnd), otherLog: otherLines.join('').slice(-3000) }));
      expect(closes.length).toBeLessThanOrEqual(2);
      expect(closes.every((code) => code === 4403)).toBe(true);
      expect(bodies(sub)).not.toContain('after the logOut');
    } finally {
      process.kill(redisPid, 'SIGCONT');
    }
    await waitFor(() => other.app.pubsub.connected && server.app.pubsub.connected, 15_000);
    await send(server.url, ada, roomId, 'after Redis woke');
    await seen.until((r) => r.length === 4, 10_000);
    expect(bodies(seen)).toEqual(['before', 'while Redis is stopped', 'after the logOut', 'after Redis woke']);
  } finally {
    sub.stop();
    seen.stop();
    await Promise.all([ws.dispose(), watcher.dispose()]);
  }
}, 90_000);

/** A client of the private Redis with a short command timeout, ready: how often it gave up, and its socket's cuts. */
async function watchedClient() {
  const client = new AnsweringRedis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 300 });
  client.on('error', () => undefined);
  const watched = { client, unanswered: 0, cuts: undefined as unknown as jest.SpyInstance };
  client.on('unanswered', () => watched.unanswered++);
  await waitFor(() => client.status === 'ready');
  watched.cuts = jest.spyOn(client.stream, 'destroy');
  return watched;
}

it('gives a connection up once when many of its commands go unanswered together', async () => {
  const watched = await watchedClient();
  const { client, cuts } = watched;
  try {
    process.kill(redisPid, 'SIGSTOP');
    try {
      const answers = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => client.get(`k${i}`)));
      expect(answers.every((a) => a.status === 'rejected')).toBe(true);
      await waitFor(() => client.status !== 'ready'); // given up once the loop has read its sockets and found nothing
      await new Promise((r) => setTimeout(r, 500));
      // Before: each timeout ended the connection again (11 and more: Node's "possible EventEmitter
      // memory leak" warning, for the close listeners piling up on one socket).
      expect(watched.unanswered).toBe(1);
      expect(cuts).toHaveBeenCalledTimes(1);
      expect(client.status).not.toBe('ready'); // connected again, short of ready until Redis answers
    } finally {
      process.kill(redisPid, 'SIGCONT');
    }
    await waitFor(() => client.status === 'ready', 15_000);
    expect(await client.ping()).toBe('PONG');
  } finally {
    client.disconnect();
  }
}, 30_000);

it('does not give a connection up for answers that waited unread while this process itself was held past the timeout', async () => {
  const watched = await watchedClient();
  const { client, cuts } = watched;
  try {
    // Commands sent, then this process held (a long synchronous task) while Redis answers them, in a
    // phase of the event loop after which timers run before sockets are read.
    let answers: Promise<PromiseSettledResult<unknown>[]> | undefined;
    await new Promise<void>((held) =>
      setImmediate(() => {
        answers = Promise.allSettled(Array.from({ length: 5 }, (_, i) => client.get(`k${i}`)));
        const until = Date.now() + 800;
        while (Date.now() < until);
        held();
      }),
    );
    // ioredis's timers ran first: the commands count as timed out, though their answers were there.
    expect((await answers!).every((a) => a.status === 'rejected')).toBe(true);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 100));
    expect(watched.unanswered).toBe(0);
    expect(cuts).not.toHaveBeenCalled();
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
  } finally {
    client.disconnect();
  }
});
