// The AI assistant (API.md guarantee 7; DESIGN.md "The assistant"), through the real `openai`
// client against FakeOpenAI on loopback. Two instances (a, b) share the harness's PostgreSQL and
// Redis; tests that need other settings start their own server. A child process on the embedded
// database is killed mid-reply to check the crash sweep; it boots in the background from beforeAll.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_INSTRUCTIONS } from '../../src/assistant/context';
import { ReplyStore } from '../../src/assistant/reply-store';
import { FakeOpenAI, type Script } from '../support/fake-openai';
import { followReply } from '../support/reply-recipe';
import {
  codeOf,
  collect,
  gql,
  holdRow,
  must,
  reachTheLock,
  send,
  signUp,
  startServer,
  TEST_SECRET,
  unique,
  waitFor,
  wsClient,
  type Collected,
  type GqlResult,
  type TestServer,
  type TestUser,
} from '../support/harness';

const API_KEY = 'sk-test-assistant';
const MODEL = 'fake-model-for-tests';
const SLOW = 60_000;

/** Pieces of a long, slow answer: `w0 w1 w2 …`. */
const pieces = (n: number, prefix = 'w') => Array.from({ length: n }, (_, i) => `${prefix}${i} `);
const ORDER_CHUNKS = ['The', ' quick', ' brown', ' fox', ' jumps', ' over', ' the', ' lazy', ' dog', ',', ' twice', '.'];
const SLOW_CHUNKS = pieces(60);
const MID_CHUNKS = pieces(40, 'm');

// Each key appears in the last message the model sees and picks the fake's answer; no key is a
// substring of another.
const SCRIPTS: Record<string, Script> = {
  '[[order]]': { kind: 'stream', chunks: ORDER_CHUNKS, delayMs: 30 },
  '[[cross]]': { kind: 'stream', chunks: ORDER_CHUNKS, delayMs: 10 },
  '[[mid]]': { kind: 'stream', chunks: MID_CHUNKS, delayMs: 50 },
  '[[race]]': { kind: 'stream', chunks: ['one ', 'answer'], delayMs: 20 },
  '[[cancel-asker]]': { kind: 'stream', chunks: SLOW_CHUNKS, delayMs: 80 },
  '[[cancel-owner]]': { kind: 'stream', chunks: SLOW_CHUNKS, delayMs: 80 },
  '[[cancel-remote]]': { kind: 'stream', chunks: SLOW_CHUNKS, delayMs: 80 },
  '[[cancel-removed]]': { kind: 'stream', chunks: SLOW_CHUNKS, delayMs: 80 },
  '[[shutdown]]': { kind: 'stream', chunks: SLOW_CHUNKS, delayMs: 80 },
  '[[crash]]': { kind: 'stream', chunks: pieces(200, 'c'), delayMs: 100 },
  '[[live-during-sweep]]': { kind: 'stream', chunks: pieces(15, 'l'), delayMs: 40 },
  '[[http-500]]': { kind: 'error', status: 500 },
  '[[429-then-ok]]': { kind: 'error', status: 429, times: 2, then: { kind: 'stream', chunks: ['recovered', ' after', ' 429'] } },
  '[[429-forever]]': { kind: 'error', status: 429 },
  '[[stall]]': { kind: 'stall', chunks: ['partial ', 'answer'] },
  '[[midstream]]': { kind: 'midstream-error', chunks: ['half ', 'an ', 'answer'] },
  '[[malformed]]': { kind: 'malformed', chunks: ['so far ', 'so good'] },
  '[[echo-mention]]': { kind: 'stream', chunks: ['Ask ', '@assistant', ' again'] },
  '[[cap]]': { kind: 'stall', chunks: ['waiting'] },
  '[[cut]]': { kind: 'cut', chunks: ['cut ', 'short'] },
  '[[reset]]': { kind: 'reset', chunks: ['dropped ', 'line'] },
  '[[silent]]': { kind: 'silent' },
  '[[429-long]]': { kind: 'error', status: 429, times: 1, retryAfterMs: 1500, then: { kind: 'stream', chunks: ['worth ', 'the wait'] } },
};
const FALLBACK = 'Hello, world!'; // FakeOpenAI's answer when no key matches

const MESSAGE_FIELDS = `id seq body status statusReason deltaCount author { id username isAssistant } parent { id }`;
const HISTORY = `query($roomId: ID!) { messages(roomId: $roomId, last: 200) { edges { node { ${MESSAGE_FIELDS} } } } }`;
const ASK = `mutation($m: ID!) { askAssistant(input: { messageId: $m }) { ${MESSAGE_FIELDS} room { id } } }`;
const CANCEL = `mutation($m: ID!) { cancelAssistant(messageId: $m) { ${MESSAGE_FIELDS} } }`;
const CREATE_ROOM = `mutation($input: CreateRoomInput!) { createRoom(input: $input) { id assistantEnabled assistantInstructions } }`;
const UPDATE_ROOM = `mutation($input: UpdateRoomInput!) { updateRoom(input: $input) { id assistantEnabled assistantInstructions } }`;
const ROOM = `query($id: ID!) { room(id: $id) { id lastSeq assistantEnabled assistantInstructions } }`;
const ROOM_EVENTS = `subscription($roomId: ID!) { roomEvents(roomId: $roomId) { __typename
  ... on MessageAdded { message { id seq status body parent { id } author { isAssistant } } }
  ... on MessageUpdated { message { id status body statusReason deltaCount } }
  ... on AssistantDelta { messageId index text } } }`;

interface Msg {
  id: string;
  seq: number;
  body: string;
  status: 'COMPLETE' | 'STREAMING' | 'FAILED' | 'CANCELLED';
  statusReason: string | null;
  deltaCount: number;
  author: { id: string; username: string; isAssistant: boolean };
  parent: { id: string } | null;
}

let fake: FakeOpenAI;
let a: TestServer;
let b: TestServer;
/** Request headers objects (one per fake request) whose response was closed before it ended. */
const abortedRequests = new Set<object>();

const withModel = (extra: Record<string, string | undefined> = {}) => ({
  OPENAI_API_KEY: API_KEY,
  OPENAI_BASE_URL: fake.url,
  OPENAI_MODEL: MODEL,
  ...extra,
});

// The embedded child process for the crash test, booting while the other tests run.
const crashDir = mkdtempSync(path.join(os.tmpdir(), 'chat-assistant-crash-'));
let child: ChildProcess | undefined;
let childExit: Promise<void> | undefined;
let childUrl: Promise<string> | undefined;
let childLog = '';

beforeAll(async () => {
  fake = new FakeOpenAI(SCRIPTS);
  await fake.start();
  watchAborts(fake);
  startChild();
  [a, b] = await Promise.all([startServer(withModel()), startServer(withModel())]);
}, SLOW);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await childExit;
  await Promise.all([a?.stop(), b?.stop()]);
  await fake?.stop();
  rmSync(crashDir, { recursive: true, force: true });
}, SLOW);

// Servers and clients a test starts are stopped after it, also when it fails.
let cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  const run = cleanups.reverse();
  cleanups = [];
  for (const cleanup of run) await Promise.resolve(cleanup()).catch(() => undefined);
}, SLOW);

async function serverWith(env: Record<string, string | undefined>): Promise<TestServer> {
  const server = await startServer(env);
  cleanups.push(() => server.stop());
  return server;
}

/**
 * Records which of the fake's responses were closed by the client before they ended (an aborted
 * model call). FakeOpenAI keeps `req.headers` in `requests`, so the same object identifies them.
 */
function watchAborts(f: FakeOpenAI): void {
  const server = (f as unknown as { server?: http.Server }).server;
  if (!server) throw new Error('FakeOpenAI no longer has a `server` field: update watchAborts');
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.on('close', () => {
      if (!res.writableFinished) abortedRequests.add(req.headers);
    });
  });
}
const abortedFor = (key: string) => fake.requestsFor(key).filter((r) => abortedRequests.has(r.headers)).length;

async function signUpAs(url: string, displayName: string): Promise<TestUser> {
  const username = unique();
  const data = await must(
    url,
    `mutation($input: SignUpInput!) { signUp(input: $input) { token user { id username } } }`,
    { input: { username, password: 'correct horse battery', displayName } },
  );
  return { id: data.signUp.user.id, username, token: data.signUp.token };
}

async function makeRoom(url: string, owner: TestUser, options: { assistantEnabled?: boolean; assistantInstructions?: string; kind?: string } = {}) {
  const { kind = 'PUBLIC', ...rest } = options;
  const data = await must(url, CREATE_ROOM, { input: { name: unique('room'), kind, ...rest } }, owner.token);
  return data.createRoom.id as string;
}

const join = (url: string, user: TestUser, roomId: string) => must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, user.token);

async function history(url: string, user: TestUser, roomId: string): Promise<Msg[]> {
  const data = await must(url, HISTORY, { roomId }, user.token);
  return data.messages.edges.map((e: any) => e.node);
}

async function messageById(url: string, user: TestUser, roomId: string, id: string): Promise<Msg> {
  const found = (await history(url, user, roomId)).find((m) => m.id === id);
  if (!found) throw new Error(`message ${id} is not in the history of room ${roomId}`);
  return found;
}

async function ask(url: string, user: TestUser, messageId: string): Promise<Msg> {
  return (await must(url, ASK, { m: messageId }, user.token)).askAssistant;
}

/** Polls the history until the message is no longer STREAMING (or `until` holds). */
async function settled(url: string, user: TestUser, roomId: string, id: string, until: (m: Msg) => boolean = (m) => m.status !== 'STREAMING', timeoutMs = 15_000) {
  let last: Msg | undefined;
  return waitFor(
    async () => {
      last = await messageById(url, user, roomId, id);
      return until(last) ? last : undefined;
    },
    timeoutMs,
    () => JSON.stringify(last),
  );
}

async function lastSeq(url: string, user: TestUser, roomId: string): Promise<number> {
  return (await must(url, ROOM, { id: roomId }, user.token)).room.lastSeq;
}

/** A `roomEvents` subscriber on `server`, attached (its hub has one more listener) when this resolves. */
async function subscribe(server: TestServer, user: TestUser, roomId: string): Promise<Collected> {
  const before = server.app.hubs.listeners(roomId);
  const client = wsClient(server.wsUrl, user);
  const sub = collect(client, ROOM_EVENTS, { roomId });
  cleanups.push(async () => {
    sub.stop();
    await client.dispose();
  });
  await waitFor(() => server.app.hubs.listeners(roomId) === before + 1);
  return sub;
}

/** Ada asks in a room Bob is in, with a roomEvents subscriber on a from the start: a 40-piece reply, 50 ms apart. */
async function midStreamReply() {
  const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
  const roomId = await makeRoom(a.url, ada);
  await join(a.url, bob, roomId);
  const question = await send(a.url, ada, roomId, `Mid-stream ${'[[mid]]'} ${unique('k')}`);
  const early = await subscribe(a, ada, roomId);
  const reply = await ask(a.url, ada, question.id);
  return { ada, bob, roomId, early, reply };
}

const eventsOf = (sub: Collected) => sub.results.map((r) => r.data?.roomEvents);
const deltasOf = (sub: Collected, replyId: string) => eventsOf(sub).filter((e) => e?.__typename === 'AssistantDelta' && e.messageId === replyId);
const updatesOf = (sub: Collected, replyId: string) => eventsOf(sub).filter((e) => e?.__typename === 'MessageUpdated' && e.message.id === replyId);
const endedIn = (sub: Collected, replyId: string, status: string) => sub.until(() => updatesOf(sub, replyId).some((e) => e.message.status === status));

/** A reason a person can read: a sentence, no stack trace, no internal detail. */
function expectReadable(reason: string | null | undefined): asserts reason is string {
  expect(typeof reason).toBe('string');
  expect(reason!.length).toBeGreaterThan(10);
  expect(reason).toMatch(/^[A-Z\[]/);
  expect(reason).not.toMatch(/\n\s+at |Error:|undefined|\[object|ECONN|stack/);
}

const assistantMessages = (messages: Msg[]) => messages.filter((m) => m.author.isAssistant);
const named = (displayName: string, user: TestUser, body: string) => `${displayName} (@${user.username}): ${body}`;

describe('askAssistant', () => {
  it('commits a STREAMING reply by the assistant at once, then streams deltas 0..n-1 in order and ends COMPLETE with their joined text', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, 'Tell me about foxes [[order]]');
    const sub = await subscribe(a, ada, roomId);

    const reply = await ask(a.url, ada, question.id);
    expect(reply).toMatchObject({ status: 'STREAMING', body: '', deltaCount: 0, statusReason: null, author: { isAssistant: true }, parent: { id: question.id }, room: { id: roomId } });
    expect(reply.seq).toBe(question.seq + 1);
    // Committed before it answered: the history already holds it.
    expect((await history(a.url, ada, roomId)).map((m) => m.id)).toContain(reply.id);

    await endedIn(sub, reply.id, 'COMPLETE');
    const events = eventsOf(sub);
    const deltas = deltasOf(sub, reply.id);
    expect(deltas.map((d) => d.index)).toEqual(ORDER_CHUNKS.map((_, i) => i));
    expect(deltas.map((d) => d.text)).toEqual(ORDER_CHUNKS);
    const added = events.findIndex((e) => e?.__typename === 'MessageAdded' && e.message.id === reply.id);
    const firstDelta = events.indexOf(deltas[0]);
    const final = events.findIndex((e) => e?.__typename === 'MessageUpdated' && e.message.id === reply.id && e.message.status === 'COMPLETE');
    expect(added).toBeGreaterThanOrEqual(0);
    expect(added).toBeLessThan(firstDelta);
    expect(events.indexOf(deltas.at(-1))).toBeLessThan(final);
    expect(events[added].message).toMatchObject({ status: 'STREAMING', body: '', author: { isAssistant: true }, parent: { id: question.id } });
    expect(events[final].message).toMatchObject({ status: 'COMPLETE', body: ORDER_CHUNKS.join(''), deltaCount: ORDER_CHUNKS.length, statusReason: null });

    const stored = await messageById(a.url, ada, roomId, reply.id);
    expect(stored).toMatchObject({ status: 'COMPLETE', body: deltas.map((d) => d.text).join(''), deltaCount: ORDER_CHUNKS.length, statusReason: null });
    expect(stored.author.username).toBe('assistant');
  });

  it('calls the model through the openai client with the configured key, model and stream: true', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[${unique('sdk')}]]`;
    const question = await send(a.url, ada, roomId, `Which client calls you? ${key}`);
    const reply = await ask(a.url, ada, question.id);
    await settled(a.url, ada, roomId, reply.id);
    const [request] = fake.requestsFor(key);
    expect(request.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(String(request.headers['user-agent'])).toMatch(/^OpenAI\/JS /);
    expect(request.body).toMatchObject({ model: MODEL, stream: true });
  });

  it('replies in the thread of a thread reply, with the thread root as parent', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const root = await send(a.url, ada, roomId, 'Thread root');
    const inThread = await send(a.url, ada, roomId, 'A reply in the thread', { parentId: root.id });
    const reply = await ask(a.url, ada, inThread.id);
    expect(reply.parent).toEqual({ id: root.id });
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done).toMatchObject({ status: 'COMPLETE', body: FALLBACK, parent: { id: root.id } });
  });

  it('returns the same reply when the same message is asked about again, by the asker or another member, with one model call', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    const key = `[[${unique('again')}]]`;
    const question = await send(a.url, ada, roomId, `Once only ${key}`);
    const first = await ask(a.url, ada, question.id);
    await settled(a.url, ada, roomId, first.id);
    const again = await ask(a.url, ada, question.id);
    const fromBob = await ask(b.url, bob, question.id);
    expect(again.id).toBe(first.id);
    expect(fromBob.id).toBe(first.id);
    expect(again).toMatchObject({ status: 'COMPLETE', body: FALLBACK });
    expect(fake.requestsFor(key)).toHaveLength(1);
    expect(assistantMessages(await history(a.url, ada, roomId))).toHaveLength(1);
    expect(await lastSeq(a.url, ada, roomId)).toBe(question.seq + 1);
  });

  it('settles racing asks about one message on two instances to one reply and one model call', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    const question = await send(a.url, ada, roomId, `Race me ${'[[race]]'} ${unique('r')}`);
    const replies = await Promise.all([
      ask(a.url, ada, question.id),
      ask(b.url, bob, question.id),
      ask(a.url, bob, question.id),
      ask(b.url, ada, question.id),
      ask(a.url, ada, question.id),
      ask(b.url, bob, question.id),
    ]);
    expect(new Set(replies.map((r) => r.id)).size).toBe(1);
    const done = await settled(a.url, ada, roomId, replies[0].id);
    expect(done).toMatchObject({ status: 'COMPLETE', body: 'one answer' });
    expect(fake.requestsFor(question.body)).toHaveLength(1);
    const all = await history(a.url, ada, roomId);
    expect(assistantMessages(all)).toHaveLength(1);
    expect(all.map((m) => m.seq)).toEqual([1, 2]); // no gap left by the losers
  });

  it('answers UNAUTHENTICATED without a token and FORBIDDEN for a malformed, unknown or unreadable message, writing nothing', async () => {
    const [ada, eve] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const privateRoom = await makeRoom(a.url, ada, { kind: 'PRIVATE' });
    const key = `[[${unique('secret')}]]`;
    const secret = await send(a.url, ada, privateRoom, `Private question ${key}`);

    expect(codeOf(await gql(a.url, ASK, { m: secret.id }))).toBe('UNAUTHENTICATED');
    const answers = [];
    for (const messageId of ['not-a-uuid', '00000000-0000-4000-8000-000000000000', secret.id]) {
      const result = await gql(a.url, ASK, { m: messageId }, eve.token);
      expect(codeOf(result)).toBe('FORBIDDEN');
      expect(result.data).toBeNull();
      answers.push(result.errors![0].message);
    }
    expect(new Set(answers).size).toBe(1); // an existing message in a foreign room looks like a missing one
    expect(await lastSeq(a.url, ada, privateRoom)).toBe(secret.seq);
    expect(fake.requestsFor(key)).toHaveLength(0);
  });

  it('answers FORBIDDEN, writing nothing, to an ask whose asker was removed from the room while it waited', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    const key = `[[${unique('removed')}]]`;
    const question = await send(a.url, ada, roomId, `Asked by one who is leaving ${key}`);
    const release = await holdRow('SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2 FOR UPDATE', [roomId, bob.id]);
    const asking = gql(b.url, ASK, { m: question.id }, bob.token); // passes its first read, then waits for bob's membership
    await reachTheLock();
    await release(['DELETE FROM memberships WHERE room_id = $1 AND user_id = $2', [roomId, bob.id]]);
    expect(codeOf(await asking)).toBe('FORBIDDEN');
    expect(await lastSeq(a.url, ada, roomId)).toBe(question.seq);
    expect(fake.requestsFor(key)).toHaveLength(0);
  });
});

describe('the context sent to the model', () => {
  it('sends the room instructions, then only this thread oldest first with authors named and the assistant as role assistant', async () => {
    const ada = await signUpAs(a.url, 'Ada Lovelace');
    const bob = await signUpAs(a.url, 'Bob Builder');
    const instructions = `You plan team offsites. ${unique('instr')}`;
    const roomId = await makeRoom(a.url, ada, { assistantInstructions: instructions });
    const otherRoom = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);

    const root = await send(a.url, ada, roomId, `Where should the offsite be? ${unique('q')}`);
    await send(a.url, bob, roomId, 'OTHER-THREAD: what is for lunch?');
    await send(a.url, ada, otherRoom, 'OTHER-ROOM: secret plans');
    const firstReply = await ask(a.url, ada, root.id);
    await settled(a.url, ada, roomId, firstReply.id);
    expect(fake.requestsFor(root.body).map((r) => r.body.messages)).toEqual([
      [
        { role: 'system', content: instructions },
        { role: 'user', content: named('Ada Lovelace', ada, root.body) },
      ],
    ]);

    await send(a.url, bob, roomId, 'I vote for the lake', { parentId: root.id });
    await send(a.url, ada, otherRoom, 'OTHER-ROOM: later message');
    const key = `[[${unique('ctx')}]]`;
    const followUp = await send(a.url, ada, roomId, `Lake it is? ${key}`, { parentId: root.id });
    const reply = await ask(a.url, ada, followUp.id);
    expect(reply.parent).toEqual({ id: root.id });
    await settled(a.url, ada, roomId, reply.id);

    const requests = fake.requestsFor(key);
    expect(requests).toHaveLength(1);
    expect(requests[0].body.messages).toEqual([
      { role: 'system', content: instructions },
      { role: 'user', content: named('Ada Lovelace', ada, root.body) },
      { role: 'assistant', content: FALLBACK },
      { role: 'user', content: named('Bob Builder', bob, 'I vote for the lake') },
      { role: 'user', content: named('Ada Lovelace', ada, followUp.body) },
    ]);
    expect(JSON.stringify(requests[0].body.messages)).not.toMatch(/OTHER-THREAD|OTHER-ROOM/);
  });

  it('uses the default system prompt in a room without instructions', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[${unique('default')}]]`;
    const question = await send(a.url, ada, roomId, `Hi ${key}`);
    await settled(a.url, ada, roomId, (await ask(a.url, ada, question.id)).id);
    const [request] = fake.requestsFor(key);
    expect(request.body.messages[0]).toEqual({ role: 'system', content: DEFAULT_INSTRUCTIONS });
    expect(DEFAULT_INSTRUCTIONS.trim().length).toBeGreaterThan(0);
  });

  it('trims the thread from the oldest end to ASSISTANT_CONTEXT_CHARS, keeping the newest messages', async () => {
    const budget = 200;
    const server = await serverWith(withModel({ ASSISTANT_CONTEXT_CHARS: String(budget) }));
    const ada = await signUpAs(server.url, 'Ada');
    const roomId = await makeRoom(server.url, ada);
    const key = `[[${unique('budget')}]]`;
    const bodies = ['first '.repeat(10), 'second '.repeat(8), 'third '.repeat(9), 'fourth '.repeat(8), `fifth ${key}`.padEnd(56, '.')];
    const root = await send(server.url, ada, roomId, bodies[0]);
    let last = root;
    for (const body of bodies.slice(1)) last = await send(server.url, ada, roomId, body, { parentId: root.id });
    await settled(server.url, ada, roomId, (await ask(server.url, ada, last.id)).id);

    const turns = bodies.map((body) => named('Ada', ada, body));
    const size = (list: string[]) => list.reduce((n, t) => n + t.length, 0);
    // The test's own arithmetic: the newest two fit in the budget, the newest three do not.
    expect(size(turns.slice(-2))).toBeLessThanOrEqual(budget);
    expect(size(turns.slice(-3))).toBeGreaterThan(budget);

    const [request] = fake.requestsFor(key);
    expect(request.body.messages).toEqual([
      { role: 'system', content: DEFAULT_INSTRUCTIONS },
      ...turns.slice(-2).map((content) => ({ role: 'user', content })),
    ]);
  });
});

describe('failures end the reply, never leave it STREAMING', () => {
  it('ends FAILED with a readable reason after HTTP 500, publishes it, and keeps the user message', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[http-500]] ${unique('k')}`;
    const question = await send(a.url, ada, roomId, `Break please ${key}`);
    const sub = await subscribe(a, ada, roomId);
    const reply = await ask(a.url, ada, question.id);
    await endedIn(sub, reply.id, 'FAILED');
    const update = updatesOf(sub, reply.id).at(-1).message;
    expectReadable(update.statusReason);
    expect(update.statusReason).toMatch(/500/);

    const stored = await messageById(a.url, ada, roomId, reply.id);
    expect(stored.status).toBe('FAILED');
    expect(stored.statusReason).toBe(update.statusReason);
    expect(stored.body).toContain(stored.statusReason);
    expect(fake.requestsFor(key)).toHaveLength(3); // the SDK's default two retries
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it('completes after two 429s within the SDK retries (OPENAI_MAX_RETRIES default)', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, 'Busy? [[429-then-ok]]');
    const reply = await ask(a.url, ada, question.id);
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done).toMatchObject({ status: 'COMPLETE', body: 'recovered after 429', statusReason: null });
    expect(fake.requestsFor('[[429-then-ok]]')).toHaveLength(3);
  });

  it('ends FAILED with a reason naming 429 when the provider keeps rate limiting', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[429-forever]] ${unique('k')}`;
    const question = await send(a.url, ada, roomId, `Still busy? ${key}`);
    const reply = await ask(a.url, ada, question.id);
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expectReadable(done.statusReason);
    expect(done.statusReason).toMatch(/429/);
    expect(done.body).toContain(done.statusReason);
    expect(fake.requestsFor(key)).toHaveLength(3);
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it('ends FAILED, keeping the partial text, when the stream stalls for ASSISTANT_STALL_TIMEOUT_MS, and aborts the model call', async () => {
    const server = await serverWith(withModel({ ASSISTANT_STALL_TIMEOUT_MS: '500' }));
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada);
    const key = `[[stall]] ${unique('k')}`;
    const question = await send(server.url, ada, roomId, `Say something ${key}`);
    const reply = await ask(server.url, ada, question.id);
    const done = await settled(server.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expectReadable(done.statusReason);
    expect(done.body.startsWith('partial answer')).toBe(true);
    expect(done.body).toContain(done.statusReason);
    expect(done.deltaCount).toBe(2);
    await waitFor(() => abortedFor(key) === 1);
    expect(await messageById(server.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it.each([
    ['ends its answer without a finish reason (a proxy cut it short)', '[[cut]]', 'cut short', 'The model provider ended its answer before finishing it'],
    ['resets the connection mid-answer', '[[reset]]', 'dropped line', 'The connection to the model provider was lost mid-reply'],
  ])('ends FAILED, keeping the partial text, with a reason that says so, when the provider %s', async (_name, script, partial, reason) => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, `Go on ${script} ${unique('k')}`);
    const reply = await ask(a.url, ada, question.id);
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done).toMatchObject({ status: 'FAILED', statusReason: reason });
    expect(done.body.startsWith(partial)).toBe(true);
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it('waits out a 429\'s Retry-After longer than ASSISTANT_STALL_TIMEOUT_MS (the stall timer runs once the answer has started), and completes', async () => {
    const server = await serverWith(withModel({ ASSISTANT_STALL_TIMEOUT_MS: '500' }));
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada);
    const key = `[[429-long]] ${unique('k')}`;
    const question = await send(server.url, ada, roomId, `Busy for a while? ${key}`);
    const reply = await ask(server.url, ada, question.id);
    expect(await settled(server.url, ada, roomId, reply.id)).toMatchObject({ status: 'COMPLETE', body: 'worth the wait', statusReason: null });
    expect(fake.requestsFor(key)).toHaveLength(2);
  });

  it('ends FAILED when the answer has not started within OPENAI_TIMEOUT_MS, the SDK\'s retries included', async () => {
    const server = await serverWith(withModel({ OPENAI_TIMEOUT_MS: '1000', ASSISTANT_STALL_TIMEOUT_MS: '60000' }));
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada);
    const question = await send(server.url, ada, roomId, `Anyone there? [[silent]] ${unique('k')}`);
    const reply = await ask(server.url, ada, question.id);
    const done = await settled(server.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expect(done.statusReason).toMatch(/did not (start answering within 1 s|answer in time)/);
  });

  it('ends FAILED, keeping the partial text, when the provider reports an error mid-stream', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, `Half way ${'[[midstream]]'} ${unique('k')}`);
    const sub = await subscribe(a, ada, roomId);
    const reply = await ask(a.url, ada, question.id);
    await endedIn(sub, reply.id, 'FAILED');
    expect(deltasOf(sub, reply.id).map((d) => d.text)).toEqual(['half ', 'an ', 'answer']);
    const done = await messageById(a.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expectReadable(done.statusReason);
    expect(done.body.startsWith('half an answer')).toBe(true);
    expect(done.body).toContain(done.statusReason);
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it('ends FAILED with a reason that says so when the provider sends an event that is not JSON', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, `Garbled ${'[[malformed]]'} ${unique('k')}`);
    const sub = await subscribe(a, ada, roomId);
    const reply = await ask(a.url, ada, question.id);
    await endedIn(sub, reply.id, 'FAILED');
    const done = await messageById(a.url, ada, roomId, reply.id);
    expect(done.statusReason).toMatch(/could not be read/);
    expect(done.body.startsWith('so far so good')).toBe(true);
  });

  it('ends a reply streaming during shutdown FAILED with its partial text, publishes the end, and stop() completes', async () => {
    const server = await serverWith(withModel());
    // Another instance that heals only after 10 minutes: what it delivers of the end came through pub/sub.
    const observer = await serverWith(withModel({ HEAL_INTERVAL_MS: '600000' }));
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada);
    const sub = await subscribe(observer, ada, roomId);
    const question = await send(server.url, ada, roomId, `Long story ${'[[shutdown]]'} ${unique('k')}`);
    const reply = await ask(server.url, ada, question.id);
    const partial = await settled(server.url, ada, roomId, reply.id, (m) => m.deltaCount >= 2);
    expect(partial.status).toBe('STREAMING');

    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeLessThan(5000);
    // Before: the end's publish was cut off by the shutdown (`Connection is closed`), and other instances heard of it only when they healed.
    await endedIn(sub, reply.id, 'FAILED');

    // Read back through another instance on the same database.
    const done = await messageById(a.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expectReadable(done.statusReason);
    expect(done.statusReason).toMatch(/shut|stop|restart/i);
    expect(done.body.startsWith(partial.body)).toBe(true);
    expect(done.body).toContain(done.statusReason);
    expect(done.deltaCount).toBeGreaterThanOrEqual(partial.deltaCount);
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  });

  it('marks FAILED, on PostgreSQL, a STREAMING reply whose heartbeat stopped, and leaves a live one streaming', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const orphanQuestion = await send(a.url, ada, roomId, 'Asked on an instance that crashed');
    // What a crashed instance leaves: a STREAMING reply whose heartbeat (updated_at) is old.
    const assistant = await a.app.db.dataSource.query(`SELECT id FROM users WHERE is_assistant`);
    const [orphan] = await a.app.db.dataSource.transaction((tx) =>
      a.app.messageStore.insert(tx, {
        roomId,
        authorId: assistant[0].id,
        body: 'cut off',
        parentId: orphanQuestion.id,
        clientId: null,
        status: 'STREAMING',
        askedMessageId: orphanQuestion.id,
        askedBy: ada.id,
      }),
    );
    await a.app.db.dataSource.query(`UPDATE messages SET updated_at = now() - interval '1 hour' WHERE id = $1`, [orphan.id]);
    const liveQuestion = await send(a.url, ada, roomId, `Still alive ${'[[live-during-sweep]]'} ${unique('k')}`);
    const live = await ask(a.url, ada, liveQuestion.id);

    await serverWith(withModel()); // starting an instance sweeps by heartbeat age

    const swept = await settled(a.url, ada, roomId, orphan.id, (m) => m.status !== 'STREAMING', 5000);
    expect(swept.status).toBe('FAILED');
    expectReadable(swept.statusReason);
    expect(swept.body.startsWith('cut off')).toBe(true);
    expect(swept.body.endsWith(`[${swept.statusReason}]`)).toBe(true); // the note in the text says what statusReason says
    const liveDone = await settled(a.url, ada, roomId, live.id);
    expect(liveDone).toMatchObject({ status: 'COMPLETE', body: pieces(15, 'l').join(''), statusReason: null });
  });

  it('marks FAILED at start, on PostgreSQL, the replies its own crashed run left, and not another instance’s', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const [assistant] = await a.app.db.dataSource.query(`SELECT id FROM users WHERE is_assistant`);
    const instanceId = unique('instance');
    // What a crashed run leaves: STREAMING replies with a fresh heartbeat, one recorded as its own.
    const leftBehind = async (owner: string) => {
      const question = await send(a.url, ada, roomId, `Asked of ${owner}`);
      const [reply] = await a.app.messageStore.insert(a.app.db.dataSource.manager, {
        roomId,
        authorId: assistant.id,
        body: 'cut off',
        parentId: question.id,
        clientId: null,
        status: 'STREAMING',
        askedMessageId: question.id,
        askedBy: ada.id,
        streamOwner: owner,
      });
      return reply;
    };
    const own = await leftBehind(instanceId);
    const other = await leftBehind(unique('another-instance'));

    await serverWith({ ...withModel(), INSTANCE_ID: instanceId }); // the crashed instance, restarted

    expect(await messageById(a.url, ada, roomId, own.id)).toMatchObject({ status: 'FAILED' });
    expect(await messageById(a.url, ada, roomId, other.id)).toMatchObject({ status: 'STREAMING' }); // its heartbeat is fresh
    await a.app.db.dataSource.query(`UPDATE messages SET status = 'FAILED' WHERE id = $1`, [other.id]); // leave nothing streaming
  });

  it('leaves STREAMING, in the timed sweep, a fresh reply of its own instance that is not running yet', async () => {
    // Between a reply's insert and its runner's start the reply is this instance's, STREAMING, and not
    // among the running ones: the sweep every few seconds must not take it for one a crashed run left
    // (only the sweep at start does that), else a live reply ends FAILED "The server stopped while the assistant was replying".
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const [assistant] = await a.app.db.dataSource.query(`SELECT id FROM users WHERE is_assistant`);
    const question = await send(a.url, ada, roomId, 'Asked a moment ago');
    const [reply] = await a.app.messageStore.insert(a.app.db.dataSource.manager, {
      roomId,
      authorId: assistant.id,
      body: '',
      parentId: question.id,
      clientId: null,
      status: 'STREAMING',
      askedMessageId: question.id,
      askedBy: ada.id,
      streamOwner: a.app.config.instanceId,
    });
    const store = new ReplyStore(a.app.db.dataSource, a.app.messageStore, a.app.pubsub, a.app.log, a.app.config.instanceId);

    await store.sweep([], 30_000);
    expect(await messageById(a.url, ada, roomId, reply.id)).toMatchObject({ status: 'STREAMING' });
    await store.sweep([], 30_000, { previousRun: true }); // at start: a previous run's
    expect(await messageById(a.url, ada, roomId, reply.id)).toMatchObject({ status: 'FAILED' });
  });

  it('marks FAILED, on the embedded database, a reply left STREAMING by a killed process, and keeps the question', async () => {
    const url = await childUrl!;
    const ada = await signUp(url);
    const roomId = await makeRoom(url, ada);
    const question = await send(url, ada, roomId, `Crash during this ${'[[crash]]'}`);
    const reply = await ask(url, ada, question.id);
    const partial = await settled(url, ada, roomId, reply.id, (m) => m.deltaCount >= 2);
    expect(partial.status).toBe('STREAMING');

    child!.kill('SIGKILL');
    await childExit;
    const restarted = await serverWith({ DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: crashDir, ...withModel() });

    const done = await messageById(restarted.url, ada, roomId, reply.id);
    expect(done.status).toBe('FAILED');
    expectReadable(done.statusReason);
    expect(done.body.startsWith(partial.body)).toBe(true);
    expect(await messageById(restarted.url, ada, roomId, question.id)).toMatchObject({ body: question.body, status: 'COMPLETE' });
  }, SLOW);
});

describe('cancelAssistant', () => {
  it('lets the asker stop a streaming reply: CANCELLED, partial text kept, the model call aborted', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[cancel-asker]] ${unique('k')}`;
    const question = await send(a.url, ada, roomId, `Go on ${key}`);
    const sub = await subscribe(a, ada, roomId);
    const reply = await ask(a.url, ada, question.id);
    await sub.until(() => deltasOf(sub, reply.id).length >= 3);

    const cancelled = (await must(a.url, CANCEL, { m: reply.id }, ada.token)).cancelAssistant;
    expect(cancelled).toMatchObject({ id: reply.id, status: 'CANCELLED' });
    expectReadable(cancelled.statusReason);

    await waitFor(() => abortedFor(key) === 1);
    const joined = () => deltasOf(sub, reply.id).map((d) => d.text).join('');
    const done = await settled(a.url, ada, roomId, reply.id, (m) => m.status === 'CANCELLED' && m.body === joined() && updatesOf(sub, reply.id).some((u) => u.message.body === joined()));
    expect(done.body.length).toBeGreaterThan(0);
    expect(SLOW_CHUNKS.join('').startsWith(done.body)).toBe(true);
    expect(done.body.length).toBeLessThan(SLOW_CHUNKS.join('').length);
    expect(deltasOf(sub, reply.id).map((d) => d.index)).toEqual(deltasOf(sub, reply.id).map((_, i) => i));
    expect(done.deltaCount).toBe(deltasOf(sub, reply.id).length);
    await waitFor(() => !a.app.services.assistant.isStreaming(reply.id)); // the runner has written its end
    const marker = await send(a.url, ada, roomId, 'after the cancel');
    await sub.until((rs) => rs.some((r) => r.data?.roomEvents.message?.id === marker.id));
    expect(updatesOf(sub, reply.id).map((u) => u.message.status)).toEqual(['CANCELLED']); // one final update, not two
  });

  it('tells a client that resumes roomEvents from the reply’s own cursor how the reply ended while it was away', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, `Go on ${`[[cancel-asker]] ${unique('k')}`}`);
    const reply = await ask(a.url, ada, question.id);
    const seen = await settled(a.url, ada, roomId, reply.id, (m) => m.deltaCount >= 1);
    expect(seen.status).toBe('STREAMING'); // what the client knew when it went away
    const cursor = (await must(a.url, `query($r: ID!) { messages(roomId: $r, last: 1) { edges { cursor } } }`, { r: roomId }, ada.token)).messages.edges[0].cursor;

    await must(a.url, CANCEL, { m: reply.id }, ada.token);
    await waitFor(() => !a.app.services.assistant.isStreaming(reply.id));

    const client = wsClient(a.wsUrl, ada);
    const resumed = collect(client, ROOM_EVENTS.replace('$roomId: ID!)', '$roomId: ID!, $after: String)').replace('roomEvents(roomId: $roomId)', 'roomEvents(roomId: $roomId, after: $after)'), { roomId, after: cursor });
    cleanups.push(async () => {
      resumed.stop();
      await client.dispose();
    });
    // First the thread root's new reply count (the reply's insert came just before it), then the end.
    await resumed.until((rs) => rs.length >= 2);
    expect(resumed.results.map((r) => r.data?.roomEvents)).toMatchObject([
      { __typename: 'MessageUpdated', message: { id: question.id } },
      { __typename: 'MessageUpdated', message: { id: reply.id, status: 'CANCELLED' } },
    ]);
  });

  it('lets the room OWNER stop a member’s reply, and answers FORBIDDEN to another member and a non-member, UNAUTHENTICATED without a token', async () => {
    const [ada, bob, carol, eve] = await Promise.all([signUp(a.url), signUp(a.url), signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    await join(a.url, carol, roomId);
    const key = `[[cancel-owner]] ${unique('k')}`;
    const question = await send(a.url, bob, roomId, `Bob asks ${key}`);
    const reply = await ask(a.url, bob, question.id);
    await settled(a.url, bob, roomId, reply.id, (m) => m.deltaCount >= 1);

    expect(codeOf(await gql(a.url, CANCEL, { m: reply.id }))).toBe('UNAUTHENTICATED');
    for (const other of [carol, eve]) {
      const result = await gql(a.url, CANCEL, { m: reply.id }, other.token);
      expect(codeOf(result)).toBe('FORBIDDEN');
      expect(result.data).toBeNull();
    }
    expect((await messageById(a.url, bob, roomId, reply.id)).status).toBe('STREAMING');

    const cancelled = (await must(a.url, CANCEL, { m: reply.id }, ada.token)).cancelAssistant;
    expect(cancelled.status).toBe('CANCELLED');
    await waitFor(() => abortedFor(key) === 1);
    const done = await settled(a.url, bob, roomId, reply.id, (m) => m.status === 'CANCELLED' && m.body.length > 0);
    expect(SLOW_CHUNKS.join('').startsWith(done.body)).toBe(true);
  });

  it('answers FORBIDDEN, ending nothing, to a cancel by an asker removed from the room while it waited', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    const key = `[[cancel-removed]] ${unique('k')}`;
    const question = await send(a.url, bob, roomId, `Bob asks ${key}`);
    const reply = await ask(a.url, bob, question.id);
    await settled(a.url, ada, roomId, reply.id, (m) => m.deltaCount >= 1);
    const release = await holdRow('SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2 FOR UPDATE', [roomId, bob.id]);
    const cancelling = gql(a.url, CANCEL, { m: reply.id }, bob.token); // passes its first read, then waits for bob's membership
    await reachTheLock();
    await release(['DELETE FROM memberships WHERE room_id = $1 AND user_id = $2', [roomId, bob.id]]);
    expect(codeOf(await cancelling)).toBe('FORBIDDEN');
    expect((await messageById(a.url, ada, roomId, reply.id)).status).toBe('STREAMING');
    expect(abortedFor(key)).toBe(0);
  });

  it('stops, from instance b, a reply streaming on instance a', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[cancel-remote]] ${unique('k')}`;
    const question = await send(a.url, ada, roomId, `Remote ${key}`);
    const sub = await subscribe(a, ada, roomId);
    const reply = await ask(a.url, ada, question.id);
    await sub.until(() => deltasOf(sub, reply.id).length >= 3);

    const cancelled = (await must(b.url, CANCEL, { m: reply.id }, ada.token)).cancelAssistant;
    expect(cancelled.status).toBe('CANCELLED');
    await waitFor(() => abortedFor(key) === 1);
    const joined = () => deltasOf(sub, reply.id).map((d) => d.text).join('');
    const done = await settled(a.url, ada, roomId, reply.id, (m) => m.status === 'CANCELLED' && m.body === joined());
    expect(done.body.length).toBeLessThan(SLOW_CHUNKS.join('').length);
    expect(SLOW_CHUNKS.join('').startsWith(done.body)).toBe(true);
    expect(done.statusReason).toBeTruthy();
  });

  it('answers BAD_USER_INPUT for a message that is not an assistant reply, FORBIDDEN for a malformed id, and returns an ended reply unchanged', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const question = await send(a.url, ada, roomId, 'Plain message');
    const notReply = await gql(a.url, CANCEL, { m: question.id }, ada.token);
    expect(codeOf(notReply)).toBe('BAD_USER_INPUT');
    expect(notReply.errors?.[0].extensions?.field).toBe('messageId');
    expect(codeOf(await gql(a.url, CANCEL, { m: 'nope' }, ada.token))).toBe('FORBIDDEN');
    expect(await messageById(a.url, ada, roomId, question.id)).toMatchObject({ body: 'Plain message', status: 'COMPLETE', statusReason: null });

    const reply = await ask(a.url, ada, question.id);
    const done = await settled(a.url, ada, roomId, reply.id);
    const again = (await must(a.url, CANCEL, { m: reply.id }, ada.token)).cancelAssistant;
    expect(again).toEqual(done);
    expect(await messageById(a.url, ada, roomId, reply.id)).toEqual(done);
  });
});

describe('streaming across instances', () => {
  it('delivers the deltas and the final update of a reply streaming on instance a to a roomEvents subscriber on instance b', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const roomId = await makeRoom(a.url, ada);
    await join(a.url, bob, roomId);
    const question = await send(a.url, ada, roomId, `Across ${'[[cross]]'} ${unique('k')}`);
    const sub = await subscribe(b, bob, roomId);
    const reply = await ask(a.url, ada, question.id);
    await endedIn(sub, reply.id, 'COMPLETE');
    const deltas = deltasOf(sub, reply.id);
    expect(deltas.map((d) => d.index)).toEqual(ORDER_CHUNKS.map((_, i) => i));
    expect(updatesOf(sub, reply.id).at(-1).message).toMatchObject({ status: 'COMPLETE', body: deltas.map((d) => d.text).join('') });
  });

  it('lets a client that connects mid-stream read body and deltaCount from history and continue with the deltas from deltaCount to the same final body', async () => {
    const { ada, bob, roomId, early, reply } = await midStreamReply();
    // Join at the moment that matters: the history holds some text, and a delta past it has
    // already been published (before the late client is there to get it).
    const saved = await settled(a.url, ada, roomId, reply.id, (m) => m.deltaCount >= 1);
    await early.until(() => deltasOf(early, reply.id).some((d) => d.index >= saved.deltaCount));

    // The late client (on b): subscribe first, then read history, then apply deltas from deltaCount.
    const sub = await subscribe(b, bob, roomId);
    const seen = await messageById(b.url, bob, roomId, reply.id);
    expect(seen.status).toBe('STREAMING');
    expect(seen.deltaCount).toBeGreaterThanOrEqual(1);
    expect(seen.body).toBe(MID_CHUNKS.slice(0, seen.deltaCount).join(''));

    await endedIn(sub, reply.id, 'COMPLETE');
    const later = deltasOf(sub, reply.id).filter((d) => d.index >= seen.deltaCount);
    expect(later.map((d) => d.index)).toEqual(MID_CHUNKS.map((_, i) => i).slice(seen.deltaCount));
    const rebuilt = seen.body + later.map((d) => d.text).join('');
    const final = updatesOf(sub, reply.id).at(-1).message;
    expect(final).toMatchObject({ status: 'COMPLETE', deltaCount: MID_CHUNKS.length });
    expect(rebuilt).toBe(final.body);
    expect(rebuilt).toBe(MID_CHUNKS.join(''));
  });
});

describe('a client that reads history first, then subscribes (the README\'s order)', () => {
  it('is told the reply as it stands when its subscription starts, so the deltas it missed meanwhile are in its text', async () => {
    const { bob, roomId, early, reply } = await midStreamReply();
    const seen = await settled(b.url, bob, roomId, reply.id, (m) => m.deltaCount >= 1); // history, read on b
    // Deltas past what it read go by before its subscription listens: it never receives them.
    await early.until(() => deltasOf(early, reply.id).some((d) => d.index >= seen.deltaCount + 2));
    const sub = await subscribe(b, bob, roomId);
    await endedIn(sub, reply.id, 'COMPLETE');
    // README's recipe, from the text read in history.
    const ofReply = eventsOf(sub).filter((e) => (e?.__typename === 'AssistantDelta' ? e.messageId : e?.__typename === 'MessageUpdated' && e.message.id) === reply.id);
    const { beforeEnd } = followReply(ofReply, { body: seen.body, deltaCount: seen.deltaCount });
    expect(updatesOf(sub, reply.id)[0].message).toMatchObject({ status: 'STREAMING' }); // the reply as it stood, first
    expect(beforeEnd).toEqual({ body: MID_CHUNKS.join(''), deltaCount: MID_CHUNKS.length });
  });
});

describe('the @assistant mention', () => {
  it('gets a reply in the thread of a message mentioning @assistant in an assistant-enabled room, without askAssistant', async () => {
    const ada = await signUpAs(a.url, 'Ada');
    const roomId = await makeRoom(a.url, ada, { assistantEnabled: true });
    const root = await send(a.url, ada, roomId, 'Root of the thread');
    const key = `[[${unique('mention')}]]`;
    const mention = await send(a.url, ada, roomId, `@assistant what do you think? ${key}`, { parentId: root.id });
    const reply = await waitFor(async () => assistantMessages(await history(a.url, ada, roomId))[0]);
    expect(reply.parent).toEqual({ id: root.id });
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done).toMatchObject({ status: 'COMPLETE', body: FALLBACK });
    const requests = fake.requestsFor(key);
    expect(requests).toHaveLength(1);
    expect(requests[0].body.messages.slice(1)).toEqual([
      { role: 'user', content: named('Ada', ada, root.body) },
      { role: 'user', content: named('Ada', ada, mention.body) },
    ]);
    // Asking explicitly about the same message returns that reply.
    expect((await ask(a.url, ada, mention.id)).id).toBe(reply.id);
  });

  it('does not reply to a mention in a room without the assistant enabled', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const key = `[[${unique('ignored')}]]`;
    const mention = await send(a.url, ada, roomId, `@assistant hello? ${key}`);
    // A later explicit ask in the same room finishes long after the mention was handled.
    const later = await send(a.url, ada, roomId, 'Explicit question');
    await settled(a.url, ada, roomId, (await ask(a.url, ada, later.id)).id);
    const replies = assistantMessages(await history(a.url, ada, roomId));
    expect(replies).toHaveLength(1);
    expect(replies[0].parent).toEqual({ id: later.id });
    expect(fake.requestsFor(key)).toHaveLength(0);
    expect(mention.seq).toBe(1);
  });

  it('does not reply to the assistant’s own message mentioning @assistant', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada, { assistantEnabled: true });
    const key = `[[echo-mention]] ${unique('k')}`;
    await send(a.url, ada, roomId, `@assistant repeat after me ${key}`);
    const reply = await waitFor(async () => assistantMessages(await history(a.url, ada, roomId))[0]);
    const done = await settled(a.url, ada, roomId, reply.id);
    expect(done.body).toBe('Ask @assistant again');
    // A later explicit ask finishes after any reaction to the reply would have started.
    const later = await send(a.url, ada, roomId, 'Anything else?');
    await settled(a.url, ada, roomId, (await ask(a.url, ada, later.id)).id);
    expect(assistantMessages(await history(a.url, ada, roomId))).toHaveLength(2);
    expect(fake.requestsFor(key)).toHaveLength(1);
  });
});

describe('room assistant settings', () => {
  it('lets the OWNER change the instructions with updateRoom, used as the system prompt from the next ask on', async () => {
    const [ada, bob] = await Promise.all([signUp(a.url), signUp(a.url)]);
    const first = `Answer like a pirate. ${unique('i1')}`;
    const second = `Answer like a poet. ${unique('i2')}`;
    const roomId = await makeRoom(a.url, ada, { assistantInstructions: first });
    await join(a.url, bob, roomId);
    const systemFor = async (text: string) => {
      const key = `[[${unique('upd')}]]`;
      const q = await send(a.url, ada, roomId, `${text} ${key}`);
      await settled(a.url, ada, roomId, (await ask(a.url, ada, q.id)).id);
      return fake.requestsFor(key)[0].body.messages[0];
    };
    expect(await systemFor('one')).toEqual({ role: 'system', content: first });

    const updated = (await must(a.url, UPDATE_ROOM, { input: { roomId, assistantInstructions: second } }, ada.token)).updateRoom;
    expect(updated).toMatchObject({ id: roomId, assistantInstructions: second, assistantEnabled: false });
    expect(await systemFor('two')).toEqual({ role: 'system', content: second });

    const refused = await gql(a.url, UPDATE_ROOM, { input: { roomId, assistantInstructions: 'Bob was here' } }, bob.token);
    expect(codeOf(refused)).toBe('FORBIDDEN');
    expect((await must(a.url, ROOM, { id: roomId }, ada.token)).room.assistantInstructions).toBe(second);
    expect(await systemFor('three')).toEqual({ role: 'system', content: second });

    await must(a.url, UPDATE_ROOM, { input: { roomId, assistantInstructions: '' } }, ada.token);
    expect((await must(a.url, ROOM, { id: roomId }, ada.token)).room.assistantInstructions).toBeNull();
    expect(await systemFor('four')).toEqual({ role: 'system', content: DEFAULT_INSTRUCTIONS });
  });

  it('lets the OWNER enable the assistant with updateRoom, after which a mention gets a reply', async () => {
    const ada = await signUp(a.url);
    const roomId = await makeRoom(a.url, ada);
    const enabled = (await must(a.url, UPDATE_ROOM, { input: { roomId, assistantEnabled: true } }, ada.token)).updateRoom;
    expect(enabled.assistantEnabled).toBe(true);
    await send(a.url, ada, roomId, `@assistant now you are on ${unique('k')}`);
    const reply = await waitFor(async () => assistantMessages(await history(a.url, ada, roomId))[0]);
    expect((await settled(a.url, ada, roomId, reply.id)).status).toBe('COMPLETE');
  });

  it('refuses instructions over 4000 characters at createRoom and updateRoom with BAD_USER_INPUT, writing nothing', async () => {
    const ada = await signUp(a.url);
    const tooLong = 'x'.repeat(4001);
    const created = await gql(a.url, CREATE_ROOM, { input: { name: unique('room'), kind: 'PUBLIC', assistantInstructions: tooLong } }, ada.token);
    expect(codeOf(created)).toBe('BAD_USER_INPUT');
    expect(created.errors?.[0].extensions?.field).toBe('assistantInstructions');
    expect((await must(a.url, `{ rooms(first: 10) { edges { node { id } } } }`, {}, ada.token)).rooms.edges).toEqual([]);

    const roomId = await makeRoom(a.url, ada, { assistantInstructions: 'Be brief.' });
    const updated = await gql(a.url, UPDATE_ROOM, { input: { roomId, assistantInstructions: tooLong } }, ada.token);
    expect(codeOf(updated)).toBe('BAD_USER_INPUT');
    expect(updated.errors?.[0].extensions?.field).toBe('assistantInstructions');
    expect((await must(a.url, ROOM, { id: roomId }, ada.token)).room.assistantInstructions).toBe('Be brief.');
    // Exactly 4000 is allowed.
    const atLimit = 'y'.repeat(4000);
    expect((await must(a.url, UPDATE_ROOM, { input: { roomId, assistantInstructions: atLimit } }, ada.token)).updateRoom.assistantInstructions).toBe(atLimit);
  });
});

describe('limits and availability', () => {
  const expectRateLimited = (result: GqlResult) => {
    expect(codeOf(result)).toBe('RATE_LIMITED');
    expect(result.data).toBeNull();
    const retryAfterMs = result.errors?.[0].extensions?.retryAfterMs;
    expect(typeof retryAfterMs).toBe('number');
    expect(retryAfterMs).toBeGreaterThan(0);
    return retryAfterMs as number;
  };

  it('answers RATE_LIMITED with retryAfterMs past ASSISTANT_ASKS_PER_MINUTE, writing nothing and calling no model', async () => {
    const server = await serverWith(withModel({ ASSISTANT_ASKS_PER_MINUTE: '2' }));
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada);
    for (const text of ['first', 'second']) {
      const q = await send(server.url, ada, roomId, text);
      await settled(server.url, ada, roomId, (await ask(server.url, ada, q.id)).id);
    }
    const key = `[[${unique('over')}]]`;
    const third = await send(server.url, ada, roomId, `third ${key}`);
    const retryAfterMs = expectRateLimited(await gql(server.url, ASK, { m: third.id }, ada.token));
    expect(retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(await lastSeq(server.url, ada, roomId)).toBe(third.seq);
    expect(assistantMessages(await history(server.url, ada, roomId))).toHaveLength(2);
    expect(fake.requestsFor(key)).toHaveLength(0);
  });

  it('answers RATE_LIMITED with retryAfterMs past ASSISTANT_MAX_STREAMING_PER_USER, writing nothing, and allows asks again once a reply ends', async () => {
    const server = await serverWith(withModel({ ASSISTANT_MAX_STREAMING_PER_USER: '1' }));
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await makeRoom(server.url, ada);
    await join(server.url, bob, roomId);
    const holding = await send(server.url, ada, roomId, `hold on ${'[[cap]]'} ${unique('k')}`);
    const streaming = await ask(server.url, ada, holding.id);

    const key = `[[${unique('capped')}]]`;
    const next = await send(server.url, ada, roomId, `another ${key}`);
    expectRateLimited(await gql(server.url, ASK, { m: next.id }, ada.token));
    expect(await lastSeq(server.url, ada, roomId)).toBe(next.seq);
    expect(fake.requestsFor(key)).toHaveLength(0);

    // The cap is per user: bob may ask about the same message.
    const bobs = await ask(server.url, bob, next.id);
    expect(bobs.status).toBe('STREAMING');
    await settled(server.url, bob, roomId, bobs.id);

    await must(server.url, CANCEL, { m: streaming.id }, ada.token);
    const other = await send(server.url, ada, roomId, 'after the cancel');
    const afterCancel = await ask(server.url, ada, other.id);
    expect(afterCancel.status).toBe('STREAMING');
    await settled(server.url, ada, roomId, afterCancel.id);
  });

  it('sends a mention whose author is at ASSISTANT_MAX_STREAMING_PER_USER without a reply, which askAssistant starts later', async () => {
    const server = await serverWith(withModel({ ASSISTANT_MAX_STREAMING_PER_USER: '1' }));
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await makeRoom(server.url, ada, { assistantEnabled: true });
    await join(server.url, bob, roomId);
    const holding = await send(server.url, ada, roomId, `hold on ${'[[cap]]'} ${unique('k')}`);
    const streaming = await ask(server.url, ada, holding.id);
    const key = `[[${unique('over')}]]`;
    const mention = await send(server.url, ada, roomId, `@assistant are you there? ${key}`);
    // Bob's ask, sent after the mention and ended, is handled after it.
    const bobs = await send(server.url, bob, roomId, 'a question of bob');
    await settled(server.url, bob, roomId, (await ask(server.url, bob, bobs.id)).id);
    expect(assistantMessages(await history(server.url, ada, roomId)).map((m) => m.parent)).toEqual([{ id: holding.id }, { id: bobs.id }]);
    expect(fake.requestsFor(key)).toHaveLength(0);

    await must(server.url, CANCEL, { m: streaming.id }, ada.token);
    const reply = await ask(server.url, ada, mention.id);
    expect(reply.status).toBe('STREAMING');
    expect(await settled(server.url, ada, roomId, reply.id)).toMatchObject({ status: 'COMPLETE', parent: { id: mention.id } });
    expect(fake.requestsFor(key)).toHaveLength(1);
  });

  it('answers ASSISTANT_UNAVAILABLE without OPENAI_API_KEY, writing nothing, and ignores mentions', async () => {
    const server = await serverWith({ OPENAI_API_KEY: undefined, OPENAI_BASE_URL: fake.url });
    const ada = await signUp(server.url);
    const roomId = await makeRoom(server.url, ada, { assistantEnabled: true });
    const question = await send(server.url, ada, roomId, '@assistant are you there?');
    const result = await gql(server.url, ASK, { m: question.id }, ada.token);
    expect(codeOf(result)).toBe('ASSISTANT_UNAVAILABLE');
    expect(result.data).toBeNull();
    expect(result.errors?.[0].message).toBeTruthy();
    expect(await lastSeq(server.url, ada, roomId)).toBe(question.seq);
    expect(await history(server.url, ada, roomId)).toEqual([expect.objectContaining({ id: question.id, status: 'COMPLETE', body: question.body })]);
  });
});

/** Starts `src/main.ts` on the embedded database in `crashDir`; `childUrl` resolves when it is ready. */
function startChild(): void {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'NODE_OPTIONS', 'JEST_WORKER_ID']) delete env[name];
  Object.assign(env, {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: crashDir,
    JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: 'info',
    NODE_ENV: 'development',
    ...withModel(),
  });
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: path.resolve(__dirname, '../..'), env, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  childExit = new Promise((resolve) => proc.once('exit', () => resolve()));
  childUrl = new Promise<string>((resolve, reject) => {
    let buffered = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      childLog += chunk.toString();
      for (const line of buffered.split('\n').slice(0, -1)) {
        try {
          const entry = JSON.parse(line);
          if (typeof entry.port === 'number' && String(entry.msg).includes('ready')) resolve(`http://127.0.0.1:${entry.port}/graphql`);
        } catch {
          // not a log line
        }
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
    proc.stderr!.on('data', (chunk: Buffer) => (childLog += chunk.toString()));
    proc.once('exit', (code, signal) => reject(new Error(`the child server exited (${code ?? signal}) before it was ready:\n${childLog.slice(-2000)}`)));
  });
  childUrl.catch(() => undefined);
}
