// The embedded mode (DESIGN.md, Modes): PGlite in DATA_DIR behind a lock file, in-memory pub/sub.
// PGlite's first start takes seconds, so one app serves the whole file; only the restart and the
// lock tests start others, on the same DATA_DIR.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataDirLockedError, LOCK_RENEW_MS, LOCK_STALE_MS } from '../../src/db/embedded';
import {
  collect,
  createRoom,
  gql,
  MESSAGE_ADDED,
  must,
  send,
  seqsOf,
  signUp,
  startServer,
  unique,
  waitFor,
  wsClient,
  type TestServer,
  type TestUser,
} from '../support/harness';
import { presenceOf, ROOM_EVENTS, SET_TYPING, typingOf } from '../support/ephemeral';

const SLOW = 60_000;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chat-embedded-'));
const lockFile = path.join(dataDir, 'pglite.lock');
const embedded = (dir = dataDir) => ({ DATABASE_URL: undefined, REDIS_URL: undefined, DATA_DIR: dir });

let server: TestServer;
beforeAll(async () => {
  server = await startServer(embedded());
}, SLOW);
afterAll(async () => {
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}, SLOW);

const PAGE = `query($roomId: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  messages(roomId: $roomId, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id seq body cursor } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;
const LOG_IN = `mutation($input: LogInInput!) { logIn(input: $input) { token user { id username } } }`;
const seqsOfPage = (data: any) => data.messages.edges.map((e: any) => e.node.seq);

/** What starting an app on `env` threw; one that started after all is stopped at once, so that the rest of the file can go on. */
async function startFailure(env: Record<string, string | undefined>): Promise<unknown> {
  let intruder: TestServer | undefined;
  const failure = await startServer(env).then(
    (s) => {
      intruder = s;
      return undefined;
    },
    (err: unknown) => err,
  );
  await intruder?.stop();
  return failure;
}

async function logIn(url: string, username: string): Promise<TestUser> {
  const data = await must(url, LOG_IN, { input: { username, password: 'correct horse battery' } });
  return { id: data.logIn.user.id, username, token: data.logIn.token };
}

describe('embedded mode (PGlite and in-memory pub/sub)', () => {
  it('runs on PGlite in DATA_DIR with in-memory pub/sub, holding the lock file and renewing it', async () => {
    expect(server.app.config.databaseUrl).toBeUndefined();
    expect(server.app.config.redisUrl).toBeUndefined();
    expect(server.app.config.dataDir).toBe(dataDir);
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${process.pid} ${os.hostname()}`);
    // Renewed while held, so that other hosts sharing the directory see it held.
    const past = new Date(Date.now() - 60_000);
    utimesSync(lockFile, past, past);
    await waitFor(() => Date.now() - statSync(lockFile).mtimeMs < LOCK_STALE_MS, 2 * LOCK_RENEW_MS);
  }, SLOW);

  it('signs up, logs in and answers me', async () => {
    const ada = await signUp(server.url);
    const again = await logIn(server.url, ada.username.toUpperCase());
    expect(again.id).toBe(ada.id);
    const data = await must(server.url, `{ me { id username } }`, {}, again.token);
    expect(data.me).toEqual({ id: ada.id, username: ada.username });
    // The purge of ended sessions runs on PGlite too: a session revoked two days ago goes, the others stay.
    const db = server.app.db.dataSource;
    await db.query(`UPDATE sessions SET revoked_at = now() - interval '2 days' WHERE user_id = $1 AND id = (SELECT min(id::text)::uuid FROM sessions WHERE user_id = $1)`, [ada.id]);
    await server.app.services.sessions.purge(); // (or its own timed purge, which may come first)
    expect(await db.query(`SELECT count(*)::int AS n FROM sessions WHERE user_id = $1`, [ada.id])).toEqual([{ n: 1 }]);
  }, SLOW);

  it('refuses a log-in as a username written with a letter outside ASCII, which PGlite\'s lower() folds onto it (İ onto i)', async () => {
    const victim = await signUp(server.url, unique('victim'));
    expect((await server.app.db.dataSource.query(`SELECT lower('vİctim') = 'victim' AS folds`))[0].folds).toBe(true);
    // The log-in budgets count it under a name of its own, so it must not find the account.
    const lookalike = await gql(server.url, LOG_IN, { input: { username: victim.username.replace('i', 'İ'), password: 'correct horse battery' } });
    expect(lookalike.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect((await logIn(server.url, victim.username)).id).toBe(victim.id);
  }, SLOW);

  it('numbers messages without a gap and returns the first message for a repeated clientId, also when retries race', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const first = await send(server.url, ada, roomId, 'one');
    const clientId = unique('c');
    const raced = await Promise.all(Array.from({ length: 6 }, () => send(server.url, ada, roomId, 'two', { clientId })));
    expect(new Set(raced.map((m) => m.id)).size).toBe(1);
    expect(raced[0].seq).toBe(2);
    const retried = await send(server.url, ada, roomId, 'another body, same key', { clientId });
    expect(retried).toEqual(raced[0]);
    const third = await send(server.url, ada, roomId, 'three');
    expect([first.seq, third.seq]).toEqual([1, 3]);
    const data = await must(server.url, `query($id: ID!) { room(id: $id) { lastSeq } }`, { id: roomId }, ada.token);
    expect(data.room.lastSeq).toBe(3);
  }, SLOW);

  it('pages history forwards and backwards', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    for (let i = 1; i <= 5; i++) await send(server.url, ada, roomId, `m${i}`);
    const p1 = await must(server.url, PAGE, { roomId, first: 2 }, ada.token);
    expect(seqsOfPage(p1)).toEqual([1, 2]);
    expect(p1.messages.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const p2 = await must(server.url, PAGE, { roomId, first: 10, after: p1.messages.pageInfo.endCursor }, ada.token);
    expect(seqsOfPage(p2)).toEqual([3, 4, 5]);
    expect(p2.messages.pageInfo.hasNextPage).toBe(false);
    const back = await must(server.url, PAGE, { roomId, last: 2, before: p2.messages.pageInfo.endCursor }, ada.token);
    expect(seqsOfPage(back)).toEqual([3, 4]);
    expect(back.messages.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: true });
  }, SLOW);

  it('delivers live messages to a subscriber and resumes with after, without a gap or duplicate', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);

    const c1 = wsClient(server.wsUrl, ada);
    const live = collect(c1, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    for (let i = 1; i <= 4; i++) await send(server.url, bob, roomId, `live ${i}`);
    await live.until((r) => r.length >= 4);
    expect(seqsOf(live.results)).toEqual([1, 2, 3, 4]);
    const lastSeen = live.results[3].data!.messageAdded.cursor;
    live.stop();
    await c1.dispose();
    await waitFor(() => server.app.hubs.listeners(roomId) === 0);

    for (let i = 5; i <= 7; i++) await send(server.url, bob, roomId, `missed ${i}`);
    const c2 = wsClient(server.wsUrl, ada);
    const resumed = collect(c2, MESSAGE_ADDED, { roomId, after: lastSeen });
    await Promise.all(Array.from({ length: 3 }, (_, i) => send(server.url, bob, roomId, `during ${i}`)));
    await resumed.until((r) => r.length >= 6);
    expect(seqsOf(resumed.results)).toEqual([5, 6, 7, 8, 9, 10]);
    expect(resumed.results.every((r) => !r.errors)).toBe(true);
    resumed.stop();
    await c2.dispose();
  }, SLOW);

  it('checks a replay window kept from an earlier resume before serving it again: an edit made in between arrives in its current state', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const anchor = await send(server.url, ada, roomId, 'anchor');
    const sent = [];
    for (let i = 1; i <= 5; i++) sent.push(await send(server.url, ada, roomId, `body ${i}`));
    const resume = async () => {
      const client = wsClient(server.wsUrl, ada);
      const sub = collect(client, `subscription($r: ID!, $after: String) { messageAdded(roomId: $r, after: $after) { seq body } }`, { r: roomId, after: anchor.cursor });
      await sub.until((r) => r.length >= 5);
      await client.dispose();
      return sub.results.map((r) => r.data!.messageAdded.body);
    };
    expect(await resume()).toEqual(['body 1', 'body 2', 'body 3', 'body 4', 'body 5']);
    await must(server.url, `mutation($input: EditMessageInput!) { editMessage(input: $input) { id } }`, { input: { messageId: sent[2].id, body: 'body 3, edited' } }, ada.token);
    expect(await resume()).toEqual(['body 1', 'body 2', 'body 3, edited', 'body 4', 'body 5']);
  }, SLOW);

  it('edits, deletes, reacts, counts unread and replays those changes to a resuming roomEvents subscriber', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const first = await send(server.url, bob, roomId, 'first');
    const second = await send(server.url, bob, roomId, 'second');
    const EVENTS = `subscription($r: ID!, $after: String) { roomEvents(roomId: $r, after: $after) { __typename
      ... on MessageAdded { cursor message { id body } }
      ... on MessageUpdated { cursor message { id body deleted reactions { emoji count viewerReacted } } } } }`;

    await must(server.url, `mutation($i: EditMessageInput!) { editMessage(input: $i) { id } }`, { i: { messageId: first.id, body: 'first, edited' } }, bob.token);
    await must(server.url, `mutation($i: ReactionInput!) { addReaction(input: $i) { id } }`, { i: { messageId: first.id, emoji: '👍' } }, ada.token);
    await must(server.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: second.id }, ada.token); // the OWNER may
    const client = wsClient(server.wsUrl, ada);
    const resumed = collect(client, EVENTS, { r: roomId, after: second.cursor });
    await resumed.until((r) => r.length >= 2);
    expect(resumed.results.map((r) => r.data!.roomEvents.message)).toEqual([
      { id: first.id, body: 'first, edited', deleted: false, reactions: [{ emoji: '👍', count: 1, viewerReacted: true }] },
      { id: second.id, body: '', deleted: true, reactions: [] },
    ]);
    const third = await send(server.url, bob, roomId, 'third');
    await resumed.until((r) => r.length >= 3);
    expect(resumed.results[2].data!.roomEvents).toMatchObject({ __typename: 'MessageAdded', message: { id: third.id } });

    const room = `query($id: ID!) { room(id: $id) { unreadCount lastReadSeq lastMessage { id } } }`;
    expect((await must(server.url, room, { id: roomId }, ada.token)).room).toEqual({ unreadCount: 3, lastReadSeq: 0, lastMessage: { id: third.id } });
    await must(server.url, `mutation($r: ID!, $c: String!) { markRead(roomId: $r, cursor: $c) { id } }`, { r: roomId, c: resumed.results[2].data!.roomEvents.cursor }, ada.token);
    expect((await must(server.url, room, { id: roomId }, ada.token)).room).toMatchObject({ unreadCount: 0, lastReadSeq: 3 });
    resumed.stop();
    await client.dispose();
  }, SLOW);

  it('shows typing and presence on roomEvents (in memory: no Redis, nothing in the database)', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const adaClient = wsClient(server.wsUrl, ada);
    const watcher = collect(adaClient, ROOM_EVENTS, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const bobClient = wsClient(server.wsUrl, bob);
    collect(bobClient, ROOM_EVENTS, { roomId });
    await watcher.until(() => presenceOf(watcher, bob).length >= 1);
    expect(await server.app.services.presence.online([ada.id, bob.id])).toEqual(new Set([ada.id, bob.id]));
    for (const typing of [true, true, false]) await must(server.url, SET_TYPING, { roomId, typing }, bob.token);
    await bobClient.dispose();
    await watcher.until(() => typingOf(watcher, bob).length >= 2 && presenceOf(watcher, bob).length >= 2);
    expect({ typing: typingOf(watcher, bob), presence: presenceOf(watcher, bob) }).toEqual({ typing: [true, false], presence: [true, false] });
    await adaClient.dispose();
  }, SLOW);

  it("heals myEvents from PGlite too: a membership gone without its signal is told by the feeds' check", async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const client = wsClient(server.wsUrl, bob);
    const before = server.app.services.activity.size;
    const feed = collect(client, `subscription { myEvents { __typename ... on RemovedFromRoom { roomId } ... on RoomActivity { message { body } } } }`);
    await waitFor(() => server.app.services.activity.size > before);
    await send(server.url, ada, roomId, 'seen');
    await feed.until((r) => r.length >= 1);
    // No signal: the row goes in SQL, so only the check (digest, then memberships) can find it.
    await server.app.db.dataSource.query(`DELETE FROM memberships WHERE room_id = $1 AND user_id = $2`, [roomId, bob.id]);
    await server.app.services.activity.check();
    await feed.until((r) => r.length >= 2);
    expect(feed.results.map((r) => r.data!.myEvents)).toEqual([
      { __typename: 'RoomActivity', message: { body: 'seen' } },
      { __typename: 'RemovedFromRoom', roomId },
    ]);
    await client.dispose();
  }, SLOW);

  it('searches messages in full text, opens one direct room per pair and counts mentions on PGlite too', async () => {
    const [ada, bob] = await Promise.all([signUp(server.url), signUp(server.url)]);
    const roomId = await createRoom(server.url, ada);
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    const word = unique('walrus').replace('_', '');
    await send(server.url, ada, roomId, `a ${word} swims`);
    await send(server.url, ada, roomId, `the ${word} is swimming with @${bob.username}`);
    const found = await must(server.url, `query($q: String!) { searchMessages(query: $q) { edges { node { body } } } }`, { q: `${word} swim` }, bob.token);
    expect(found.searchMessages.edges).toHaveLength(2);
    expect((await must(server.url, `query($id: ID!) { room(id: $id) { mentionCount } }`, { id: roomId }, bob.token)).room.mentionCount).toBe(1);
    const OPEN = `mutation($u: ID!) { openDirectRoom(userId: $u) { id kind } }`;
    const [a, b] = await Promise.all([must(server.url, OPEN, { u: bob.id }, ada.token), must(server.url, OPEN, { u: ada.id }, bob.token)]);
    expect(a.openDirectRoom).toEqual(b.openDirectRoom);
    expect(a.openDirectRoom.kind).toBe('DIRECT');
  }, SLOW);

  it('keeps users, rooms and messages across a restart on the same DATA_DIR, and seq continues without a gap', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const sent = [];
    for (let i = 1; i <= 3; i++) sent.push(await send(server.url, ada, roomId, `before restart ${i}`));

    await server.stop();
    expect(() => readFileSync(lockFile)).toThrow(); // a clean stop releases the lock
    server = await startServer(embedded());

    const again = await logIn(server.url, ada.username);
    expect(again.id).toBe(ada.id);
    const history = await must(server.url, PAGE, { roomId }, again.token);
    expect(history.messages.edges.map((e: any) => [e.node.seq, e.node.body, e.cursor])).toEqual(
      sent.map((m) => [m.seq, m.body, m.cursor]),
    );

    const client = wsClient(server.wsUrl, again);
    const sub = collect(client, MESSAGE_ADDED, { roomId, after: sent[1].cursor });
    const next = await send(server.url, again, roomId, 'after restart');
    expect(next.seq).toBe(4);
    await sub.until((r) => r.length >= 2);
    expect(seqsOf(sub.results)).toEqual([3, 4]);
    sub.stop();
    await client.dispose();
  }, SLOW);

  it('refuses a second app on a DATA_DIR in use with DataDirLockedError and leaves the first working', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    await send(server.url, ada, roomId, 'before the second app');

    const failure = await startFailure(embedded());

    const next = await send(server.url, ada, roomId, 'after the second app');
    expect(next.seq).toBe(2);
    const history = await must(server.url, PAGE, { roomId }, ada.token);
    expect(history.messages.edges.map((e: any) => e.node.body)).toEqual(['before the second app', 'after the second app']);

    expect(failure).toBeInstanceOf(DataDirLockedError);
    expect((failure as Error).message).toContain(dataDir);
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${process.pid} ${os.hostname()}`);
  }, SLOW);

  it('refuses a DATA_DIR locked by another live process, naming the process', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-embedded-locked-'));
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(dir, 'pglite.lock'), String(holder.pid));
      const failure = await startFailure(embedded(dir));
      expect(failure).toBeInstanceOf(DataDirLockedError);
      expect((failure as Error).message).toContain(String(holder.pid));
      expect(readFileSync(path.join(dir, 'pglite.lock'), 'utf8').trim()).toBe(String(holder.pid));
    } finally {
      holder.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, SLOW);

  /** An app starts on `dir`, its lock now naming this process. */
  async function expectTakenOver(dir: string): Promise<void> {
    const next = await startServer(embedded(dir));
    try {
      expect(readFileSync(path.join(dir, 'pglite.lock'), 'utf8')).toBe(`${process.pid} ${os.hostname()}`);
    } finally {
      await next.stop();
    }
  }

  it('takes over at once a DATA_DIR locked by a process that was killed and not yet reaped (a zombie)', async () => {
    if (process.platform !== 'linux') return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-embedded-zombie-'));
    // `sleep 0.1` ends, and its parent (`sh` replaced by `sleep 30`) never waits for it.
    const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const zombie = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (chunk) => resolve(String(chunk)))));
      await waitFor(() => /\) Z /.test(readFileSync(`/proc/${zombie}/stat`, 'utf8')));
      writeFileSync(path.join(dir, 'pglite.lock'), `${zombie} ${os.hostname()}`);
      // Before: signal 0 reached it, and the directory was refused as "in use by process <zombie>".
      await expectTakenOver(dir);
    } finally {
      parent.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, SLOW);

  it('refuses a DATA_DIR locked on another host or under its own process id (containers sharing the volume) while the lock is renewed, and takes it over once it is not', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-embedded-shared-'));
    try {
      // As two containers' first processes, both would be process 1: the host tells them apart.
      writeFileSync(path.join(dir, 'pglite.lock'), `${process.pid} another-container`);
      const failure = await startFailure(embedded(dir));
      expect(failure).toBeInstanceOf(DataDirLockedError);
      expect((failure as Error).message).toContain('on host another-container');
      expect(readFileSync(path.join(dir, 'pglite.lock'), 'utf8')).toBe(`${process.pid} another-container`);
      // Our own id on our own host, renewed lately: another process namespace (two containers with one hostname).
      writeFileSync(path.join(dir, 'pglite.lock'), `${process.pid} ${os.hostname()}`);
      expect(((await startFailure(embedded(dir))) as Error).message).toMatch(/in use by process \d+ \(its lock renewed 0 s ago\)/);
      // Not renewed for LOCK_STALE_MS: its holder is gone (a container killed), and the lock is taken over.
      writeFileSync(path.join(dir, 'pglite.lock'), `${process.pid} another-container`);
      const past = new Date(Date.now() - LOCK_STALE_MS - 1000);
      utimesSync(path.join(dir, 'pglite.lock'), past, past);
      await expectTakenOver(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, SLOW);

  it('takes over a stale lock file whose process is gone', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    await send(server.url, ada, roomId, 'before the crash');
    await server.stop();

    const dead = spawnSync('true');
    expect(dead.pid).toBeGreaterThan(0);
    writeFileSync(lockFile, String(dead.pid)); // what a killed process leaves behind
    server = await startServer(embedded());
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${process.pid} ${os.hostname()}`);

    const again = await logIn(server.url, ada.username);
    const next = await send(server.url, again, roomId, 'after the takeover');
    expect(next.seq).toBe(2);
  }, SLOW);
});
