// Fault: Redis stops answering with its connections open (its process stopped: SIGSTOP, as a
// stalled host or a long fork leaves it), then wakes. Budgets fall back to the instance's own counts
// while it does not answer and are shared through Redis again when it does; a user who stayed within
// them is never refused for the stall (API.md, RATE_LIMITED). `/readyz` answers at once meanwhile.
// A private Redis: the shared one serves the other test files.
import Redis from 'ioredis';
import { createRoom, gql, signUp, startServer, waitFor, type TestServer } from '../support/harness';
import { startRedis, type PrivateRedis } from './support/backing';
import { readiness } from './support/child-server';
import { baseOf } from './support/traffic';

let redis: PrivateRedis;
let server: TestServer;
let admin: Redis;
let redisPid: number;

beforeAll(async () => {
  redis = await startRedis();
  server = await startServer({ REDIS_URL: redis.url, SENDS_PER_USER_PER_10S: '10' });
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
    expect(Date.now() - asked).toBeLessThan(1_800);
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
