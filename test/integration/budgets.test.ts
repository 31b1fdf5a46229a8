// Budgets (issue 9, point 2): each with its boundary on both sides, answered RATE_LIMITED with
// retryAfterMs. Behind TRUST_PROXY, each test names its own client addresses in X-Forwarded-For,
// so the budgets per address of one test are not spent by another.
import { randomBytes } from 'node:crypto';
import { jest } from '@jest/globals';
import Redis from 'ioredis';
import { holdRow, reachTheLock, unique, startServer, waitFor, type GqlResult, type TestServer, type TestUser } from '../support/harness';
import { rawSocket } from '../support/transports';

const SMALL_BUDGETS = {
  TRUST_PROXY: 'true',
  SENDS_PER_USER_PER_10S: '3',
  SENDS_PER_USER_PER_HOUR: '1000',
  SENDS_PER_ROOM_PER_10S: '4',
  ROOMS_PER_ADDRESS_PER_HOUR: '2',
  SIGNUPS_PER_ADDRESS_PER_HOUR: '3',
  LOGIN_ATTEMPTS_PER_15_MIN: '3',
  LOGIN_ATTEMPTS_PER_USERNAME_PER_15_MIN: '5',
  LOGIN_FAILURES_PER_ADDRESS_PER_15_MIN: '4',
};

let server: TestServer;
/** A second instance on the same Redis: budgets are shared. */
let twin: TestServer;
let hourly: TestServer;
let hourlyTwin: TestServer;
const HOURLY = { TRUST_PROXY: 'true', SENDS_PER_USER_PER_HOUR: '4', MUTATIONS_PER_USER_PER_10S: '6', TYPING_PER_USER_PER_10S: '3', READS_PER_USER_PER_10S: '8' };
beforeAll(async () => {
  [server, twin, hourly, hourlyTwin] = await Promise.all([startServer(SMALL_BUDGETS), startServer(SMALL_BUDGETS), startServer(HOURLY), startServer(HOURLY)]);
});
afterAll(() => Promise.all([server.stop(), twin.stop(), hourly.stop(), hourlyTwin.stop()]));

/** A client address of its own, as a proxy would name it. */
const address = () => `10.${[...randomBytes(3)].join('.')}`;

async function post(target: TestServer, from: string, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<GqlResult> {
  const res = await fetch(target.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': from, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as object) };
}

const SIGN_UP = 'mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }';
const LOG_IN = 'mutation($input: LogInInput!) { logIn(input: $input) { token } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }';
const PASSWORD = 'correct horse battery';

async function signUpFrom(target: TestServer, from = address(), username = unique()): Promise<TestUser> {
  const result = await post(target, from, SIGN_UP, { input: { username, password: PASSWORD } });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return { id: result.data.signUp.user.id, username, token: result.data.signUp.token };
}

async function createRoomFrom(target: TestServer, owner: TestUser): Promise<string> {
  const result = await post(target, address(), 'mutation($input: CreateRoomInput!) { createRoom(input: $input) { id } }', { input: { name: unique('room'), kind: 'PUBLIC' } }, owner.token);
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data.createRoom.id;
}

const codes = (results: GqlResult[]) => results.map((r) => r.errors?.[0]?.extensions?.code ?? 'ok');

function expectRateLimited(result: GqlResult) {
  expect(result.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
  expect(result.errors![0].extensions!.retryAfterMs).toBeGreaterThan(0);
}

describe('sends', () => {
  it('lets a user send SENDS_PER_USER_PER_10S messages in a burst, then answers RATE_LIMITED', async () => {
    const ada = await signUpFrom(server);
    const room = await createRoomFrom(server, ada);
    const results: GqlResult[] = [];
    for (let i = 0; i < 4; i++) results.push(await post(server, address(), SEND, { input: { roomId: room, body: `m${i}` } }, ada.token));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
    expectRateLimited(results[3]);
    const metrics = await (await fetch(server.url.replace('/graphql', '/metrics'))).text();
    expect(Number(/^chat_rate_limited_total\{budget="send-user-burst"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  });

  it('shares the budget between instances on one Redis', async () => {
    const ada = await signUpFrom(server);
    const room = await createRoomFrom(server, ada);
    const results: GqlResult[] = [];
    for (const target of [server, twin, server, twin]) results.push(await post(target, address(), SEND, { input: { roomId: room, body: 'x' } }, ada.token));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
  });

  it('spends the same budget over WebSocket', async () => {
    const ada = await signUpFrom(server);
    const room = await createRoomFrom(server, ada);
    for (let i = 0; i < 3; i++) expect(codes([await post(server, address(), SEND, { input: { roomId: room, body: 'http' } }, ada.token)])).toEqual(['ok']);
    const socket = await rawSocket(server.wsUrl, ada.token);
    socket.send({ id: 's', type: 'subscribe', payload: { query: SEND, variables: { input: { roomId: room, body: 'ws' } } } });
    const answer = await socket.next((f) => f.id === 's' && f.type === 'next');
    expect(answer.payload.errors[0].extensions.code).toBe('RATE_LIMITED');
    expect(answer.payload.errors[0].extensions.retryAfterMs).toBeGreaterThan(0);
    socket.close();
  });

  it('lets a user send SENDS_PER_USER_PER_HOUR messages in an hour, then answers RATE_LIMITED', async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada);
    const results: GqlResult[] = [];
    for (let i = 0; i < 5; i++) results.push(await post(hourly, address(), SEND, { input: { roomId: room, body: `m${i}` } }, ada.token));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'ok', 'RATE_LIMITED']);
  });

  it('lets a room take SENDS_PER_ROOM_PER_10S messages from all its members, then answers RATE_LIMITED; a stranger spends none of it', async () => {
    const [ada, bob, eve] = await Promise.all([signUpFrom(server), signUpFrom(server), signUpFrom(server)]);
    const room = await createRoomFrom(server, ada);
    await post(server, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, bob.token);
    // Eve is not a member: her sends are FORBIDDEN and do not count against the room.
    for (let i = 0; i < 3; i++) expect(codes([await post(server, address(), SEND, { input: { roomId: room, body: 'x' } }, eve.token)])).toEqual(['FORBIDDEN']);
    const results: GqlResult[] = [];
    for (const [user, n] of [[ada, 3], [bob, 2]] as const) {
      for (let i = 0; i < n; i++) results.push(await post(server, address(), SEND, { input: { roomId: room, body: 'y' } }, user.token));
    }
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'ok', 'RATE_LIMITED']);
  });
  it('lets concurrent sends through two instances take exactly SENDS_PER_ROOM_PER_10S of a room, the rest RATE_LIMITED', async () => {
    const members = await Promise.all([signUpFrom(server), signUpFrom(server), signUpFrom(server)]);
    const room = await createRoomFrom(server, members[0]);
    for (const m of members.slice(1)) await post(server, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, m.token);
    // 3 members × 3 sends (each within their own budget of 3), all at once, alternating instances.
    const sends = members.flatMap((m, i) => [0, 1, 2].map((j) => post((i + j) % 2 ? twin : server, address(), SEND, { input: { roomId: room, body: `c${j}` } }, m.token)));
    const results = await Promise.all(sends);
    expect(codes(results).filter((c) => c === 'ok')).toHaveLength(4);
    expect(codes(results).filter((c) => c !== 'ok')).toEqual(Array(5).fill('RATE_LIMITED'));
    for (const r of results.filter((r) => r.errors)) expectRateLimited(r);
    const history = await post(server, address(), 'query($r: ID!) { messages(roomId: $r) { edges { node { id } } } }', { r: room }, members[0].token);
    expect(history.data.messages.edges).toHaveLength(4);
    // Once the window is over, the room takes sends again (a new window begins with the first).
    const wait = Math.max(...results.filter((r) => r.errors).map((r) => r.errors![0].extensions!.retryAfterMs as number));
    expect(wait).toBeLessThanOrEqual(10_000);
    await new Promise((r) => setTimeout(r, wait + 100));
    const again = await Promise.all(members.map((m, i) => post(i % 2 ? twin : server, address(), SEND, { input: { roomId: room, body: 'later' } }, m.token)));
    expect(codes(again)).toEqual(['ok', 'ok', 'ok']);
  }, 30_000);

  it("answers strangers FORBIDDEN whatever the room's budget holds, and their sends at the same time as members' take none of it", async () => {
    const [ada, bob, eve, ...strangers] = await Promise.all(Array.from({ length: 9 }, () => signUpFrom(server)));
    const room = await createRoomFrom(server, ada);
    await post(server, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, bob.token);
    const send = (user: TestUser, target: TestServer, body = 'z') => post(target, address(), SEND, { input: { roomId: room, body } }, user.token);
    // 18 strangers' sends and the members' 4 at once, over both instances.
    const strangersSends = strangers.flatMap((s, i) => [0, 1, 2].map((j) => send(s, (i + j) % 2 ? twin : server)));
    const membersSends = [ada, ada, bob, bob].map((m, i) => send(m, i % 2 ? twin : server));
    const [fromStrangers, fromMembers] = await Promise.all([Promise.all(strangersSends), Promise.all(membersSends)]);
    expect(new Set(codes(fromStrangers))).toEqual(new Set(['FORBIDDEN']));
    expect(codes(fromMembers)).toEqual(['ok', 'ok', 'ok', 'ok']);
    // The room is full now: a stranger (Eve has not sent yet) still learns nothing, a member's bad input is still BAD_USER_INPUT.
    expect(codes([await send(eve, server)])).toEqual(['FORBIDDEN']);
    expect(codes([await send(ada, twin, '   ')])).toEqual(['BAD_USER_INPUT']);
    expectRateLimited(await send(bob, server));
  });
  it('answers a retried send (same clientId) with the first message also when the room or the sender has no budget left', async () => {
    const [ada, bob] = await Promise.all([signUpFrom(server), signUpFrom(server)]);
    const room = await createRoomFrom(server, ada);
    await post(server, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, bob.token);
    const send = (user: TestUser, target: TestServer, clientId?: string) =>
      post(target, address(), SEND, { input: { roomId: room, body: 'k', ...(clientId ? { clientId } : {}) } }, user.token);
    const first = await send(bob, server, 'key-1');
    const firstId = first.data.sendMessage.id;
    for (let i = 0; i < 3; i++) expect(codes([await send(ada, twin)])).toEqual(['ok']); // the room (4) is full now
    expectRateLimited(await send(bob, server, 'key-2'));
    expect((await send(bob, twin, 'key-1')).data.sendMessage.id).toBe(firstId); // the room's budget
    expectRateLimited(await send(ada, server, 'ada-new')); // Ada has sent 3 (her own budget) and the room is full
    const adaFirst = await post(server, address(), 'query($r: ID!) { messages(roomId: $r, first: 1) { edges { node { id } } } }', { r: room }, ada.token);
    expect(adaFirst.data.messages.edges[0].node.id).toBe(firstId); // and no new message came of the retries
    const history = await post(server, address(), 'query($r: ID!) { messages(roomId: $r) { edges { node { id } } } }', { r: room }, ada.token);
    expect(history.data.messages.edges).toHaveLength(4);
    // The sender's own budget (3): spent by Bob's three attempts above (key-1, key-2, key-1) — a new send is refused, a retry answered.
    expectRateLimited(await send(bob, server, 'key-3'));
    expect((await send(bob, twin, 'key-1')).data.sendMessage.id).toBe(firstId);
  });
  it('answers a retry refused by the sender’s budget with the message of the attempt that took its last place, still committing', async () => {
    const ada = await signUpFrom(server);
    const room = await createRoomFrom(server, ada);
    const send = (target: TestServer, clientId: string) => post(target, address(), SEND, { input: { roomId: room, body: 'k', clientId } }, ada.token);
    for (const clientId of ['a-1', 'a-2']) expect(codes([await send(server, clientId)])).toEqual(['ok']);
    // The third send (the budget's last place) waits at the room's row, as behind a busy room's sends.
    const release = await holdRow('SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE', [room]);
    const third = send(server, 'a-3');
    await reachTheLock();
    const retry = send(twin, 'a-3'); // the budget is spent: refused, it answers the third's message once that commits
    await reachTheLock();
    await release();
    const [made, retried] = await Promise.all([third, retry]);
    expect(retried.data.sendMessage.id).toBe(made.data.sendMessage.id);
    expectRateLimited(await send(twin, 'a-4'));
  });
  it('answers a retry refused by the sender’s budget with the message of the attempt that took its last place, reaching the database after the retry', async () => {
    const ada = await signUpFrom(server);
    const room = await createRoomFrom(server, ada);
    const send = (clientId: string) => post(server, address(), SEND, { input: { roomId: room, body: 'k', clientId } }, ada.token);
    for (const clientId of ['b-1', 'b-2']) expect(codes([await send(clientId)])).toEqual(['ok']);
    // The third send (the budget's last place) goes to the database only once the retry was refused and had read.
    const messages = server.app.services.messages as unknown as { store: { insert(...args: unknown[]): Promise<unknown> }; sent(...args: unknown[]): Promise<unknown> };
    const insert = messages.store.insert.bind(messages.store);
    let refusedRead!: () => void;
    const retryRead = new Promise<void>((resolve) => (refusedRead = resolve));
    const late = jest.spyOn(messages.store, 'insert').mockImplementationOnce(async (...args) => {
      await retryRead;
      return insert(...args);
    });
    const sent = messages.sent.bind(messages);
    const refused = jest.spyOn(messages, 'sent').mockImplementationOnce((...args) => {
      const answer = sent(...args);
      setTimeout(refusedRead, 20); // its first reads found nothing
      return answer;
    });
    try {
      const third = send('b-3');
      await waitFor(() => late.mock.calls.length === 1);
      const [made, retried] = await Promise.all([third, send('b-3')]);
      expect(refused).toHaveBeenCalledTimes(1);
      expect(retried.data.sendMessage.id).toBe(made.data.sendMessage.id);
    } finally {
      late.mockRestore();
      refused.mockRestore();
    }
  });
  it('answers a former member retrying their send with nothing of the room, whatever their budget holds', async () => {
    const [ada, bob] = await Promise.all([signUpFrom(server), signUpFrom(server)]);
    const room = await createRoomFrom(server, ada);
    await post(server, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, bob.token);
    const retry = () => post(twin, address(), SEND, { input: { roomId: room, body: 'k', clientId: 'bob-1' } }, bob.token);
    expect(codes([await retry()])).toEqual(['ok']);
    await post(server, address(), 'mutation($r: ID!) { leaveRoom(roomId: $r) }', { r: room }, bob.token);
    expect(codes([await retry()])).toEqual(['FORBIDDEN']); // Bob's budget (3) holds one more: the room answers
    const own = await createRoomFrom(server, bob);
    await post(server, address(), SEND, { input: { roomId: own, body: 'spend' } }, bob.token); // Bob's 3 sends are spent
    const refused = await retry();
    expect(refused.data?.sendMessage ?? null).toBeNull();
    expectRateLimited(refused); // his own budget's answer, the same as for any room: nothing of this one
  });
});

describe('mutations of any kind', () => {
  it('lets a user make MUTATIONS_PER_USER_PER_10S mutations, then answers RATE_LIMITED for any of them', async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada); // 1
    const join = () => post(hourly, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, ada.token);
    const results: GqlResult[] = [];
    for (let i = 0; i < 6; i++) results.push(await join()); // 2 … 7
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'RATE_LIMITED']);
    expectRateLimited(results[5]);
    expect(codes([await post(hourly, address(), SEND, { input: { roomId: room, body: 'x' } }, ada.token)])).toEqual(['RATE_LIMITED']);
  });

  it('lets a user make TYPING_PER_USER_PER_10S typing changes, repeats within a second free, and never spends the mutation budget on typing', async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada); // 1 of MUTATIONS_PER_USER_PER_10S = 6
    const typing = (on: boolean, target = hourly) => post(target, address(), 'mutation($r: ID!, $t: Boolean!) { setTyping(roomId: $r, typing: $t) }', { r: room, t: on }, ada.token);
    const keystrokes: GqlResult[] = [];
    for (let i = 0; i < 12; i++) keystrokes.push(await typing(true)); // 1 of 3; the repeats within a second are free
    expect(codes(keystrokes)).toEqual(Array(12).fill('ok'));
    expect(codes([await typing(false), await typing(true, hourlyTwin)])).toEqual(['ok', 'ok']); // 2 and 3, on either instance
    const refused = await typing(false);
    expect(codes([refused])).toEqual(['RATE_LIMITED']);
    expectRateLimited(refused);
    // 17 typing calls, and the user still has 5 of 6 mutations.
    const join = () => post(hourly, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, ada.token);
    const joins: GqlResult[] = [];
    for (let i = 0; i < 6; i++) joins.push(await join());
    expect(codes(joins)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'RATE_LIMITED']);
  });

  it('lets a user make READS_PER_USER_PER_10S markRead calls on either instance, then answers RATE_LIMITED, and never spends the mutation budget on them', async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada); // 1 of MUTATIONS_PER_USER_PER_10S = 6
    const sent = await post(hourly, address(), 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { cursor } }', { input: { roomId: room, body: 'x' } }, ada.token); // 2
    const cursor = sent.data.sendMessage.cursor;
    const read = (target: TestServer) => post(target, address(), 'mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { lastReadSeq } }', { r: room, c: cursor }, ada.token);
    const reads: GqlResult[] = [];
    for (let i = 0; i < 9; i++) reads.push(await read(i % 2 ? hourlyTwin : hourly));
    expect(codes(reads)).toEqual([...Array(8).fill('ok'), 'RATE_LIMITED']);
    expectRateLimited(reads[8]);
    // Nine markRead calls, and the user still has 4 of 6 mutations.
    const join = () => post(hourly, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, ada.token);
    const joins: GqlResult[] = [];
    for (let i = 0; i < 5; i++) joins.push(await join());
    expect(codes(joins)).toEqual(['ok', 'ok', 'ok', 'ok', 'RATE_LIMITED']);
  });

  it('never refuses logOut: a session can be ended however many mutations were made with it', async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada);
    const join = () => post(hourly, address(), 'mutation($r: ID!) { joinRoom(roomId: $r) { id } }', { r: room }, ada.token);
    for (let i = 0; i < 6; i++) await join();
    expect(codes([await join()])).toEqual(['RATE_LIMITED']); // the budget is spent
    expect((await post(hourly, address(), 'mutation { logOut(allSessions: true) }', {}, ada.token)).data?.logOut).toBe(true);
    expect((await post(hourly, address(), '{ me { id } }', {}, ada.token)).data?.me).toBeNull();
  });

  it("spends none of a user's budgets for a session that ended: its mutations run signed out, and the user's other session has them whole", async () => {
    const ada = await signUpFrom(hourly);
    const room = await createRoomFrom(hourly, ada); // 1 of MUTATIONS_PER_USER_PER_10S = 6
    const other = (await post(hourly, address(), LOG_IN, { input: { username: ada.username, password: PASSWORD } })).data.logIn.token as string;
    expect((await post(hourly, address(), 'mutation { logOut }', {}, ada.token)).data?.logOut).toBe(true);
    // The live session's sends during a flood from the ended one (on both instances sharing Redis): none refused,
    // and the flood's requests never touch the user's budgets, not even for a moment.
    // Made by hand rather than with `redis.monitor()`: ioredis takes lines that come in the same read as MONITOR's
    // OK (other tests' traffic) for replies to no command, an error that rejects `monitor()` (and would reject
    // `events.once`, which also listens for 'error'); and lines already read when it is disconnected arrive with
    // no MONITOR to answer them. Neither loses a line of the flood below.
    const monitor = new Redis(process.env.TEST_REDIS_URL!, { monitor: true, lazyConnect: true });
    monitor.on('error', () => undefined);
    await Promise.all([new Promise((resolve) => monitor.once('monitoring', resolve)), monitor.connect()]);
    const touched: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((arg) => arg.includes(ada.id))) touched.push(args.join(' '));
    });
    const send = (target: TestServer, token: string, body: string) => post(target, address(), SEND, { input: { roomId: room, body } }, token);
    let during: number;
    let live: GqlResult[];
    try {
      const flood = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 ? hourly : hourlyTwin, ada.token, 'after logOut')));
      expect(codes(flood)).toEqual(Array(40).fill('UNAUTHENTICATED')); // never RATE_LIMITED
      during = touched.length;
      live = await Promise.all([0, 1, 2, 3].map((i) => send(i % 2 ? hourlyTwin : hourly, other, `live ${i}`)));
      await waitFor(() => touched.length > during); // the monitor does see the user's budgets spent
    } finally {
      monitor.disconnect();
    }
    expect(touched.slice(0, during)).toEqual([]);
    expect(codes(live)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(codes([await send(hourly, other, 'one too many')])).toEqual(['RATE_LIMITED']); // SENDS_PER_USER_PER_HOUR = 4
  });
});

describe('rooms and accounts per client address', () => {
  it('lets one address create ROOMS_PER_ADDRESS_PER_HOUR rooms, then answers RATE_LIMITED; another address may go on', async () => {
    const ada = await signUpFrom(server);
    const from = address();
    const create = (at: string) => post(server, at, 'mutation($input: CreateRoomInput!) { createRoom(input: $input) { id } }', { input: { name: unique('r'), kind: 'PUBLIC' } }, ada.token);
    const results = [await create(from), await create(from), await create(from)];
    expect(codes(results)).toEqual(['ok', 'ok', 'RATE_LIMITED']);
    expectRateLimited(results[2]);
    expect(codes([await create(address())])).toEqual(['ok']);
  });

  it('counts a direct room as a room created by the address where it is made: opening it again, racing to open it, or failing to open one spends nothing', async () => {
    const ada = await signUpFrom(server);
    const [bob, cy, dee] = await Promise.all([signUpFrom(server), signUpFrom(server), signUpFrom(server)]);
    const from = address();
    const OPEN = 'mutation($userId: ID!) { openDirectRoom(userId: $userId) { id kind } }';
    const open = (other: TestUser, by = ada, at = from) => post(server, at, OPEN, { userId: other.id }, by.token);
    // Refused attempts make no room, and pay for none.
    expect(codes([await open(ada), await post(server, from, OPEN, { userId: '00000000-0000-4000-8000-000000000000' }, ada.token)])).toEqual(['BAD_USER_INPUT', 'NOT_FOUND']);
    const first = [await open(bob), await open(bob)];
    expect(codes(first)).toEqual(['ok', 'ok']);
    // The budget's last room: both people open it at once, twice over; one of them makes it, the others find it.
    const raced = await Promise.all([open(cy), open(cy), open(ada, cy), open(ada, cy)]);
    expect(codes(raced)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(new Set(raced.map((r) => r.data.openDirectRoom.id)).size).toBe(1);
    const spent = await open(dee);
    expect(codes([spent])).toEqual(['RATE_LIMITED']);
    expectRateLimited(spent);
    expect(codes([await open(bob), await open(dee, ada, address())])).toEqual(['ok', 'ok']); // the ones made still open; another address makes its own
  });

  it('counts an IPv6 client by its /56 network, so that one network cannot spend a budget per address or per spelling', async () => {
    const network = `2001:db8:${randomBytes(2).toString('hex')}:${randomBytes(1).toString('hex')}`; // the first 56 bits
    const names = [unique(), unique(), unique(), unique(), unique()];
    const results: GqlResult[] = [];
    // As proxies may write them: plain, in brackets with a port, with an IPv4 tail.
    for (const [i, host] of [`${network}00::1`, `[${network}00::2]:50001`, `${network}ff::1.2.3.4`].entries()) {
      results.push(await post(server, host, SIGN_UP, { input: { username: names[i], password: PASSWORD } }));
    }
    results.push(await post(server, `${network}01::1`, SIGN_UP, { input: { username: names[3], password: PASSWORD } }));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
    const next = `${network.replace('2001:db8', '2001:db9')}00::1`; // another network
    expect(codes([await post(server, next, SIGN_UP, { input: { username: names[4], password: PASSWORD } })])).toEqual(['ok']);
  });

  it('counts an IPv4 client written with a port (as some proxies write it) as the address', async () => {
    const from = address();
    const results: GqlResult[] = [];
    for (const port of [50001, 50002, 50003, 50004]) results.push(await post(server, `${from}:${port}`, SIGN_UP, { input: { username: unique(), password: PASSWORD } }));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
  });

  it('lets one address sign up SIGNUPS_PER_ADDRESS_PER_HOUR accounts, then answers RATE_LIMITED and creates none', async () => {
    const from = address();
    const names = [unique(), unique(), unique(), unique()];
    const results: GqlResult[] = [];
    for (const username of names) results.push(await post(server, from, SIGN_UP, { input: { username, password: PASSWORD } }));
    expect(codes(results)).toEqual(['ok', 'ok', 'ok', 'RATE_LIMITED']);
    expectRateLimited(results[3]);
    expect(codes([await post(server, address(), LOG_IN, { input: { username: names[3], password: PASSWORD } })])).toEqual(['UNAUTHENTICATED']);
  });

  it('ignores X-Forwarded-For without TRUST_PROXY: the socket peer is the client', async () => {
    const plain = await startServer({ SIGNUPS_PER_ADDRESS_PER_HOUR: '1', REDIS_URL: undefined });
    try {
      const first = await post(plain, address(), SIGN_UP, { input: { username: unique(), password: PASSWORD } });
      const second = await post(plain, address(), SIGN_UP, { input: { username: unique(), password: PASSWORD } });
      expect(codes([first, second])).toEqual(['ok', 'RATE_LIMITED']);
    } finally {
      await plain.stop();
    }
  });
});

describe('log-in', () => {
  it('refuses a username from one address after LOGIN_ATTEMPTS_PER_15_MIN wrong passwords, while its owner logs in from elsewhere', async () => {
    const ada = await signUpFrom(server);
    const stranger = address();
    const results: GqlResult[] = [];
    for (let i = 0; i < 4; i++) results.push(await post(server, stranger, LOG_IN, { input: { username: ada.username, password: 'wrong password' } }));
    expect(codes(results)).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
    expectRateLimited(results[3]);
    expect(codes([await post(server, stranger, LOG_IN, { input: { username: ada.username, password: PASSWORD } })])).toEqual(['RATE_LIMITED']);
    expect(codes([await post(server, address(), LOG_IN, { input: { username: ada.username, password: PASSWORD } })])).toEqual(['ok']);
  });

  it('gives an address its attempts back when it logs in', async () => {
    const ada = await signUpFrom(server);
    const from = address();
    const attempt = (password: string) => post(server, from, LOG_IN, { input: { username: ada.username, password } });
    // Five attempts where three are allowed: the success in the middle gave them back.
    const results = [await attempt('wrong password'), await attempt('wrong password'), await attempt(PASSWORD), await attempt('wrong password'), await attempt('wrong password')];
    expect(codes(results)).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'ok', 'UNAUTHENTICATED', 'UNAUTHENTICATED']);
  });

  it('refuses an address after LOGIN_FAILURES_PER_ADDRESS_PER_15_MIN failed log-ins across usernames; its successes do not count', async () => {
    const from = address();
    const [ada, bob] = await Promise.all([signUpFrom(server), signUpFrom(server)]);
    const results: GqlResult[] = [];
    results.push(await post(server, from, LOG_IN, { input: { username: ada.username, password: PASSWORD } }));
    results.push(await post(server, from, LOG_IN, { input: { username: bob.username, password: PASSWORD } }));
    for (let i = 0; i < 5; i++) results.push(await post(server, from, LOG_IN, { input: { username: unique(), password: 'one password for all' } }));
    expect(codes(results)).toEqual(['ok', 'ok', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
    expectRateLimited(results[6]);
    expect(codes([await post(server, address(), LOG_IN, { input: { username: ada.username, password: PASSWORD } })])).toEqual(['ok']);
  });

  it('refuses a username from every address after LOGIN_ATTEMPTS_PER_USERNAME_PER_15_MIN attempts in all', async () => {
    const ada = await signUpFrom(server);
    const results: GqlResult[] = [];
    for (let i = 0; i < 5; i++) results.push(await post(server, address(), LOG_IN, { input: { username: ada.username, password: 'wrong password' } }));
    results.push(await post(server, address(), LOG_IN, { input: { username: ada.username, password: PASSWORD } }));
    expect(codes(results)).toEqual([...Array(5).fill('UNAUTHENTICATED'), 'RATE_LIMITED']);
  });
});
