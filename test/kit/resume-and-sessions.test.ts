// The client kit under Apollo Client 4 in Node, against the real server in this process: resume
// through every close code a proxy can produce, sessions refreshed in-band, logOut and refresh-token
// reuse from another device on another instance, and the kit's errors (docs/guarantees.md, "Sessions and the client kit").
import { parse } from 'graphql';
import { CreateRoomDocument, JoinRoomDocument, LogInDocument, MeDocument, MessagesDocument, MyEventsDocument, SendMessageDocument, type SessionLock } from '../../client';
import { codeOf as httpCodeOf, gql, must, startServer, waitFor, type TestServer } from '../support/harness';
import { FakeOpenAI } from '../support/fake-openai';
import { followReply } from '../support/reply-recipe';
import { startWsProxy, type WsProxy } from '../support/ws-proxy';
import { closeKitClients, codeOf, kitClient, logInSession, messageSeqs, PASSWORD, signUpSession, tally, watchEvents, watchMessages, watchRoomEvents, type KitClient, type SignedUp } from './support';

jest.setTimeout(90_000);

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());
afterEach(() => closeKitClients());

/**
 * A public room of `owner` that `member` joined, made through the kit's typed documents, and the
 * member's kit to send with. (The owner's kit is closed: two kits refreshing one session would
 * spend its refresh token twice, which is exactly what theft detection revokes.)
 */
async function roomOf(owner: SignedUp, member: SignedUp, s: TestServer = server) {
  const ownerKit = kitClient(s.url, s.wsUrl, owner.session);
  const created = await ownerKit.client.mutate({ mutation: CreateRoomDocument, variables: { input: { name: 'kit room', kind: 'PUBLIC' } } });
  await ownerKit.close();
  const roomId = created.data!.createRoom.id;
  const memberKit = kitClient(s.url, s.wsUrl, member.session);
  await memberKit.client.mutate({ mutation: JoinRoomDocument, variables: { roomId } });
  return { roomId, memberKit };
}

describe('resume through reconnects', () => {
  let proxy: WsProxy;
  beforeEach(async () => {
    proxy = await startWsProxy(server.wsUrl);
  });
  afterEach(() => proxy.stop());

  it('resumes a document written without an after argument too: the kit binds after to a variable of its own', async () => {
    const [ada, bob] = await Promise.all([signUpSession(server.url), signUpSession(server.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob);
    const reader = kitClient(server.url, proxy.url, ada.session);
    const seqs: number[] = [];
    const plain = parse(`subscription Plain($roomId: ID!) { roomEvents(roomId: $roomId) { __typename ... on MessageAdded { message { seq } } } }`);
    const subscription = reader.client.subscribe({ query: plain, variables: { roomId }, fetchPolicy: 'no-cache' }).subscribe({
      next: ({ data }) => {
        const event = (data as { roomEvents?: { __typename: string; message?: { seq: number } } } | undefined)?.roomEvents;
        if (event?.__typename === 'MessageAdded') seqs.push(event.message!.seq);
      },
    });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const TOTAL = 60;
    for (let i = 1; i <= TOTAL; i++) {
      if (i === 20) {
        await proxy.refuse(); // away while messages 20 to 29 are sent
        proxy.closeAll(1001, 'going away');
      }
      if (i === 30) await proxy.resume();
      if (i === 45) proxy.dropAll();
      await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: `p${i}`, clientId: `p${i}` } } });
    }
    await waitFor(() => seqs.length >= TOTAL, 30_000, () => `${seqs.length} of ${TOTAL}`);
    await new Promise((r) => setTimeout(r, 300)); // anything repeated late would show now
    expect(tally(seqs, TOTAL)).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
    subscription.unsubscribe();
  });

  it("subscribes from an empty room's history page (Apollo's endCursor \"\") without missing what was sent meanwhile", async () => {
    const [ada, bob] = await Promise.all([signUpSession(server.url), signUpSession(server.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob);
    const reader = kitClient(server.url, proxy.url, ada.session);
    const page = await reader.client.query({ query: MessagesDocument, variables: { roomId, last: 50 } });
    const after = page.data!.messages.pageInfo.endCursor;
    expect(after).toBe(''); // relayStylePagination's name for an empty page's end (the server answered null)
    await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'sent while the page was shown' } } });
    const messages = watchMessages(reader, roomId, after!);
    const events = watchEvents(reader, roomId, after!);
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'sent after subscribing' } } });
    await messages.until(() => messages.items.length >= 2);
    await events.until(() => messageSeqs(events.items).length >= 2);
    expect(messages.items.map((m) => m.seq)).toEqual([1, 2]); // before: refused BAD_USER_INPUT
    expect(messageSeqs(events.items)).toEqual([1, 2]);
    expect([...messages.errors, ...events.errors]).toEqual([]);
  });

  it('delivers every message and event exactly once, in order, through closes 1001, 1011, 1012, 1013, a drop (1006) and a refused reconnect', async () => {
    const [ada, bob] = await Promise.all([signUpSession(server.url), signUpSession(server.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob);
    const reader = kitClient(server.url, proxy.url, ada.session);
    const messages = watchMessages(reader, roomId);
    const events = watchEvents(reader, roomId);
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);

    const TOTAL = 300;
    let sent = 0;
    const sending = (async () => {
      for (; sent < TOTAL; sent++) {
        await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: `m${sent + 1}`, clientId: `c${sent + 1}` } } });
      }
    })();
    const faults: Array<() => Promise<void> | void> = [
      () => proxy.closeAll(1001, 'going away'),
      () => proxy.closeAll(1011, 'internal error'),
      () => proxy.closeAll(1012, 'service restart'),
      () => proxy.closeAll(1013, 'try again later'),
      () => proxy.dropAll(),
      async () => {
        await proxy.refuse();
        await new Promise((r) => setTimeout(r, 1500));
        await proxy.resume();
      },
    ];
    for (const [i, fault] of faults.entries()) {
      await waitFor(() => sent >= ((i + 1) * TOTAL) / (faults.length + 1), 60_000);
      const before = proxy.connections;
      await fault();
      await waitFor(() => proxy.connections > before, 30_000); // reconnected (and re-subscribed)
    }
    await sending;
    await messages.until(() => messages.items.length >= TOTAL);
    await events.until(() => events.items.length >= TOTAL);
    await new Promise((r) => setTimeout(r, 500)); // anything repeated late would show now

    const counts = { messages: tally(messages.items.map((m) => m.seq), TOTAL), events: tally(messageSeqs(events.items), TOTAL) };
    console.log(JSON.stringify({ scenario: 'kit through proxy closes', sent: TOTAL, faults: faults.length, connections: proxy.connections, ...counts }));
    expect(counts.messages).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
    expect(counts.events).toEqual({ delivered: TOTAL, lost: 0, duplicated: 0, outOfOrder: 0 });
    expect(messages.items.map((m) => m.body)).toEqual(Array.from({ length: TOTAL }, (_, i) => `m${i + 1}`));
    expect([...messages.errors, ...events.errors]).toEqual([]);
    expect(proxy.connections).toBeGreaterThanOrEqual(faults.length + 1);
  });

  it('keeps an assistant reply streaming on the screen through a dropped connection: the reply told again on the resume reaches the application, and README\'s recipe appends on', async () => {
    const REPLY = Array.from({ length: 60 }, (_, i) => `k${i} `);
    const fake = new FakeOpenAI({ '[[kit-long]]': { kind: 'stream', chunks: REPLY, delayMs: 50 } });
    await fake.start();
    const s = await startServer({ OPENAI_API_KEY: 'sk-test-kit', OPENAI_BASE_URL: fake.url, OPENAI_MODEL: 'fake' });
    const p = await startWsProxy(s.wsUrl);
    try {
      const [ada, bob] = await Promise.all([signUpSession(s.url), signUpSession(s.url)]);
      const { roomId, memberKit: asker } = await roomOf(ada, bob, s);
      const reader = kitClient(s.url, p.url, ada.session);
      const events = watchRoomEvents(reader, roomId);
      await waitFor(() => s.app.hubs.listeners(roomId) === 1);
      const question = await asker.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'Tell me [[kit-long]]' } } });
      const token = (await asker.link.session())!.token;
      const reply = (await must(s.url, `mutation($m: ID!) { askAssistant(input: { messageId: $m }) { id } }`, { m: question.data!.sendMessage.id }, token)).askAssistant;
      const ofReply = () => events.items.filter((e) => (e.message?.id ?? e.messageId) === reply.id);
      await events.until(() => ofReply().filter((e) => e.__typename === 'AssistantDelta').length >= 10);
      const before = p.connections;
      p.dropAll(); // deltas go by while it reconnects
      await waitFor(() => p.connections > before, 30_000);
      await events.until(() => ofReply().some((e) => e.message && e.message.status !== 'STREAMING'));
      const { beforeEnd, final, received, retold } = followReply(ofReply());
      expect({ retold: retold > 0, live: beforeEnd!.deltaCount >= received, text: REPLY.join('').startsWith(beforeEnd!.body) }).toEqual({ retold: true, live: true, text: true });
      expect(final).toEqual({ body: REPLY.join(''), deltaCount: REPLY.length });
      expect(events.errors).toEqual([]);
    } finally {
      await closeKitClients();
      await p.stop();
      await s.stop();
      await fake.stop();
    }
  });

  it('notices a half-open connection by its missing keep-alive pong, reconnects and resumes', async () => {
    const [ada, bob] = await Promise.all([signUpSession(server.url), signUpSession(server.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob);
    const send = (body: string) => sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body } } });
    const reader = kitClient(server.url, proxy.url, ada.session, { keepAliveMs: 1000 });
    const messages = watchMessages(reader, roomId);
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await send('before');
    await messages.until(() => messages.items.length === 1);
    proxy.freeze(); // the graphql-ws ping/pong frames stop too: only the kit's keep-alive can tell
    await send('during 1');
    await send('during 2');
    await waitFor(() => proxy.connections === 2, 15_000);
    await send('after');
    await messages.until(() => messages.items.length === 4);
    await new Promise((r) => setTimeout(r, 300));
    expect(messages.items.map((m) => m.body)).toEqual(['before', 'during 1', 'during 2', 'after']);
    expect(messages.errors).toEqual([]);
  });

  it('resumes after the after it was started with, not from it again', async () => {
    const [ada, bob] = await Promise.all([signUpSession(server.url), signUpSession(server.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob);
    const send = (body: string) => sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body } } });
    const first = await send('one');
    await send('two');
    const reader = kitClient(server.url, proxy.url, ada.session);
    const messages = watchMessages(reader, roomId, first.data!.sendMessage.cursor);
    await messages.until(() => messages.items.length === 1);
    proxy.closeAll(1012);
    await send('three');
    await messages.until(() => messages.items.length === 2);
    proxy.dropAll();
    await send('four');
    await messages.until(() => messages.items.length === 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(messages.items.map((m) => m.body)).toEqual(['two', 'three', 'four']);
  });
});

/** Sends a message into `roomId` every half second for `ms` through `sender`'s kit; resolves to how many. */
async function tickFor(sender: KitClient, roomId: string, ms: number): Promise<number> {
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < ms) {
    sent++;
    await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: `tick ${sent}` } } });
    await new Promise((r) => setTimeout(r, 500));
  }
  return sent;
}

describe('sessions through the kit', () => {
  let short: TestServer;
  let other: TestServer;
  beforeAll(async () => {
    // Two instances on one PostgreSQL and Redis, with 5-second access tokens.
    [short, other] = await Promise.all([startServer({ JWT_TTL_SECONDS: '5' }), startServer({ JWT_TTL_SECONDS: '5', SESSION_SWEEP_MS: '500' })]);
  });
  afterAll(async () => {
    await closeKitClients();
    await Promise.all([short?.stop(), other?.stop()]);
  });

  it('keeps a subscription open 16 s on 5-second access tokens: refreshed in-band on the same socket, again and again, nothing lost', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob, short);
    const reader = kitClient(short.url, short.wsUrl, ada.session);
    const events = watchEvents(reader, roomId);
    await waitFor(() => short.app.hubs.listeners(roomId) === 1);
    const sent = await tickFor(sender, roomId, 16_000);
    await events.until(() => events.items.length >= sent);
    const me = await reader.client.query({ query: MeDocument, fetchPolicy: 'network-only' });

    console.log(JSON.stringify({ scenario: '5 s tokens for 16 s', sent, delivered: events.items.length, refreshes: reader.changes.length, sockets: reader.sockets() }));
    expect(tally(messageSeqs(events.items), sent)).toEqual({ delivered: sent, lost: 0, duplicated: 0, outOfOrder: 0 });
    expect(reader.sockets()).toBe(1); // never closed for auth
    expect(events.errors).toEqual([]);
    expect(reader.changes.length).toBeGreaterThanOrEqual(3);
    expect(new Set(reader.changes.map((s) => s.refreshToken)).size).toBe(reader.changes.length);
    expect(me.data!.me!.id).toBe(ada.id);
    expect(reader.ended).toEqual([]);
  });

  it('ends a device\'s subscription on one instance at once with UNAUTHENTICATED when its session logs out on the other', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId } = await roomOf(ada, bob, short);
    const phone = kitClient(short.url, short.wsUrl, ada.session);
    const events = watchEvents(phone, roomId);
    await waitFor(() => short.app.hubs.listeners(roomId) === 1);
    const socketsBefore = phone.sockets();

    // Another device holding the same session logs it out, through the other instance.
    const current = (await phone.link.session())!;
    expect((await must(other.url, `mutation { logOut }`, {}, current.token)).logOut).toBe(true);

    await events.until(() => events.errors.length > 0, 10_000);
    expect(codeOf(events.errors[0])).toBe('UNAUTHENTICATED');
    expect(phone.ended.length).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(phone.sockets()).toBe(socketsBefore); // not retried
    const me = await gql(short.url, `{ me { id } }`, {}, current.token);
    expect(me.data.me).toBeNull();
    const refreshed = await gql(other.url, `mutation($r: String!) { refreshSession(refreshToken: $r) { token } }`, { r: current.refreshToken });
    expect(httpCodeOf(refreshed)).toBe('UNAUTHENTICATED');

    // Signing in again through the same client, as the README says: logIn needs no session.
    const again = await phone.client.mutate({ mutation: LogInDocument, variables: { input: { username: ada.username, password: PASSWORD } } });
    phone.link.setSession(again.data!.logIn);
    const back = await phone.client.query({ query: MeDocument, fetchPolicy: 'network-only' });
    expect(back.data!.me!.id).toBe(ada.id);
  });

  it('tells an application with no subscription of a logOut elsewhere from its next answer, also one that needs no session (me: null)', async () => {
    // Fifteen-minute tokens: no refresh falls due meanwhile that would find it out by itself.
    const ada = await signUpSession(server.url);
    const app = kitClient(server.url, server.wsUrl, ada.session);
    expect((await app.client.query({ query: MeDocument, fetchPolicy: 'network-only' })).data!.me!.id).toBe(ada.id);
    const current = (await app.link.session())!;
    await must(server.url, `mutation { logOut }`, {}, current.token);
    expect((await app.client.query({ query: MeDocument, fetchPolicy: 'network-only' })).data!.me).toBeNull();
    await waitFor(() => app.ended.length === 1, 5000);
    expect(app.sockets()).toBe(0);
  });

  it('does not end a session signed in while the refresh of the one that ended was still unanswered', async () => {
    const ada = await signUpSession(server.url);
    let slow = true; // the refresh that finds the old session ended answers late
    const app = kitClient(server.url, server.wsUrl, ada.session, {
      fetch: async (input, init) => {
        if (slow && String(init?.body).includes('RefreshSession')) await new Promise((r) => setTimeout(r, 300));
        return fetch(input, init);
      },
    });
    const current = (await app.link.session())!;
    await must(server.url, `mutation { logOut }`, {}, current.token);
    expect((await app.client.query({ query: MeDocument, fetchPolicy: 'network-only' })).data!.me).toBeNull(); // starts that refresh
    const again = await app.client.mutate({ mutation: LogInDocument, variables: { input: { username: ada.username, password: PASSWORD } } });
    app.link.setSession(again.data!.logIn);
    slow = false;
    await new Promise((r) => setTimeout(r, 600)); // the old session's refusal has come
    expect(app.ended).toEqual([]);
    expect((await app.client.query({ query: MeDocument, fetchPolicy: 'network-only' })).data!.me!.id).toBe(ada.id);
  });

  it('gives up a refresh over HTTP that never answers (a pooled connection dead after a network switch) and refreshes on a new one: the subscription goes on', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob, short);
    const send = (body: string) => sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body } } });
    const wsProxy = await startWsProxy(short.wsUrl);
    // The next refresh over HTTP goes to a connection that never answers (it only ends when given up).
    let toHang = 0;
    let hung = 0;
    const deadConnection: typeof fetch = (input, init) => {
      if (toHang > 0 && String(init?.body).includes('RefreshSession')) {
        toHang--;
        hung++;
        return new Promise((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason)));
      }
      return fetch(input, init);
    };
    try {
      const reader = kitClient(short.url, wsProxy.url, ada.session, { keepAliveMs: 1000, refreshTimeoutMs: 1000, fetch: deadConnection });
      const messages = watchMessages(reader, roomId);
      await waitFor(() => short.app.hubs.listeners(roomId) === 1);
      await send('before');
      await messages.until(() => messages.items.length === 1);
      // The network switches: the socket goes half-open, no new one can open for a while, and the
      // refresh that falls due meanwhile goes over HTTP to the dead connection.
      toHang = 1;
      wsProxy.freeze();
      await wsProxy.refuse();
      await waitFor(() => hung === 1, 10_000);
      const changes = reader.changes.length;
      await waitFor(() => reader.changes.length > changes, 10_000); // tried again, on a new connection
      await wsProxy.resume();
      await send('after');
      await messages.until(() => messages.items.length === 2, 20_000);
      expect(messages.items.map((m) => m.body)).toEqual(['before', 'after']);
      expect(messages.errors).toEqual([]);
      expect(reader.ended).toEqual([]);
    } finally {
      await wsProxy.stop();
    }
  });

  it('ends every session of the account with logOut(allSessions: true) from another device', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId } = await roomOf(ada, bob, short);
    const laptop = kitClient(short.url, short.wsUrl, ada.session);
    const events = watchEvents(laptop, roomId);
    await waitFor(() => short.app.hubs.listeners(roomId) === 1);
    const phone = await logInSession(other.url, ada.username);
    await must(other.url, `mutation { logOut(allSessions: true) }`, {}, phone.token);
    await events.until(() => events.errors.length > 0, 10_000);
    expect(codeOf(events.errors[0])).toBe('UNAUTHENTICATED');
    expect(httpCodeOf(await gql(short.url, `mutation { logOut }`, {}, phone.token))).toBe('UNAUTHENTICATED');
  });

  it('revokes the whole session when a refresh token the kit already used is presented again from another device', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId } = await roomOf(ada, bob, short);
    const stolen = ada.session.refreshToken;
    const device = kitClient(short.url, short.wsUrl, ada.session);
    const events = watchEvents(device, roomId);
    await waitFor(() => device.changes.length >= 1, 15_000); // the kit refreshed: `stolen` is spent

    const replay = await gql(other.url, `mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken } }`, { r: stolen });
    expect(httpCodeOf(replay)).toBe('UNAUTHENTICATED');
    expect(replay.data ?? null).toBeNull();

    await events.until(() => events.errors.length > 0, 10_000);
    expect(codeOf(events.errors[0])).toBe('UNAUTHENTICATED');
    expect(device.ended.length).toBe(1);
    const latest = device.changes[device.changes.length - 1];
    expect(httpCodeOf(await gql(other.url, `mutation($r: String!) { refreshSession(refreshToken: $r) { token } }`, { r: latest.refreshToken }))).toBe('UNAUTHENTICATED');
    expect((await gql(short.url, `{ me { id } }`, {}, latest.token)).data.me).toBeNull();
    // A query through the kit now fails at once, without a request.
    const me = await device.client.query({ query: MeDocument, fetchPolicy: 'network-only' }).then(() => undefined, (e: unknown) => e);
    expect(codeOf(me)).toBe('UNAUTHENTICATED');
  });

  it('starts from a stored session whose access token has expired: refreshed first, then subscribed', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob, short);
    await new Promise((r) => setTimeout(r, Date.parse(ada.session.expiresAt!) - Date.now() + 500)); // the app was closed meanwhile
    const device = kitClient(short.url, short.wsUrl, async () => ada.session);
    const messages = watchMessages(device, roomId);
    await waitFor(() => short.app.hubs.listeners(roomId) === 1, 10_000);
    await sender.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'welcome back' } } });
    await messages.until(() => messages.items.length === 1, 10_000);
    expect(messages.items[0].body).toBe('welcome back');
    expect(device.changes.length).toBeGreaterThanOrEqual(1);
    expect(device.sockets()).toBe(1);
    expect(messages.errors).toEqual([]);
  });

  it('shares one stored session between two tabs started together on an expired token: refreshes take turns (the session lock), none is spent twice, no socket closes for auth', async () => {
    const [ada, bob] = await Promise.all([signUpSession(short.url), signUpSession(short.url)]);
    const { roomId, memberKit: sender } = await roomOf(ada, bob, short);
    await new Promise((r) => setTimeout(r, Date.parse(ada.session.expiresAt!) - Date.now() + 500)); // the browser was closed meanwhile
    // The store both tabs read and write (localStorage), and the lock they share (Web Locks in a browser).
    let stored = ada.session;
    let turns: Promise<unknown> = Promise.resolve();
    const sessionLock: SessionLock = (_name, refresh) => {
      const turn = turns.then(refresh);
      turns = turn.catch(() => undefined);
      return turn;
    };
    const tab = () => kitClient(short.url, short.wsUrl, async () => stored, { sessionLock, onSessionChange: (s) => void (stored = s) });
    const tabs = [tab(), tab()];
    const seen = tabs.map((t) => watchMessages(t, roomId));
    await waitFor(() => short.app.hubs.listeners(roomId) === 2, 10_000);
    const sent = await tickFor(sender, roomId, 15_000);
    await Promise.all(seen.map((m) => m.until(() => m.items.length >= sent)));
    console.log(JSON.stringify({ scenario: 'two tabs, one stored session, 5 s tokens for 15 s', sent, sockets: tabs.map((t) => t.sockets()) }));
    for (const [i, t] of tabs.entries()) {
      expect({ tab: i, ended: t.ended, errors: seen[i].errors }).toEqual({ tab: i, ended: [], errors: [] });
      expect(tally(seen[i].items.map((m) => m.seq), sent)).toEqual({ delivered: sent, lost: 0, duplicated: 0, outOfOrder: 0 });
      // Its socket renewed in place each time it took the other tab's session (before: closed `Token expired`).
      expect({ tab: i, sockets: t.sockets() }).toEqual({ tab: i, sockets: 1 });
    }
    expect((await gql(short.url, `{ me { id } }`, {}, stored.token)).data.me).toEqual({ id: ada.id }); // the session stands
  });

  it('fails a subscription at once as UNAUTHENTICATED when signed out, without ending anything', async () => {
    const device = kitClient(short.url, short.wsUrl, async () => null);
    const events = watchEvents(device, '00000000-0000-4000-8000-000000000000');
    await events.until(() => events.errors.length > 0, 5000);
    expect(codeOf(events.errors[0])).toBe('UNAUTHENTICATED');
    expect(device.sockets()).toBe(0);
    expect(device.ended).toEqual([]);
  });

  it('ends a running myEvents as UNAUTHENTICATED when the application signs out, without telling onSessionEnd', async () => {
    const ada = await signUpSession(short.url);
    let stored: typeof ada.session | null = ada.session; // the application's store, as the README keeps it
    const device = kitClient(short.url, short.wsUrl, async () => stored, { onSessionChange: (s) => (stored = s) });
    const errors: unknown[] = [];
    device.client.subscribe({ query: MyEventsDocument }).subscribe({ next: ({ error }) => void (error && errors.push(error)), error: (e) => void errors.push(e) });
    await waitFor(() => device.sockets() === 1);
    await new Promise((r) => setTimeout(r, 1500));
    stored = null;
    device.link.setSession(null);
    await waitFor(() => errors.length > 0);
    await new Promise((r) => setTimeout(r, 1000));
    expect(codeOf(errors[0])).toBe('UNAUTHENTICATED');
    expect(device.ended).toEqual([]);
  });

  it('sends a request again with a refreshed token when its token expired on the way (an instance that stalled took it up late), not UNAUTHENTICATED', async () => {
    const ada = await signUpSession(short.url);
    const roomId = (await must(short.url, `mutation { createRoom(input: { name: "r", kind: PUBLIC }) { id } }`, {}, ada.session.token)).createRoom.id;
    let held = false;
    // The first send reaches the server only once the token it carries has expired.
    const late: typeof fetch = async (input, init) => {
      const auth = (init?.headers as Record<string, string> | undefined)?.authorization;
      if (!held && auth && String(init?.body).includes('SendMessage')) {
        held = true;
        const { exp } = JSON.parse(Buffer.from(auth.split('.')[1], 'base64url').toString('utf8')) as { exp: number };
        await new Promise((r) => setTimeout(r, exp * 1000 + 1100 - Date.now()));
      }
      return fetch(input, init);
    };
    const device = kitClient(short.url, short.wsUrl, ada.session, { fetch: late });
    const sent = await device.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'late but sent', clientId: 'late-1' } } });
    expect(held).toBe(true);
    expect(sent.data?.sendMessage.body).toBe('late but sent');
    expect(device.ended).toEqual([]);
    const history = await must(short.url, `query($r: ID!) { messages(roomId: $r) { edges { node { body } } } }`, { r: roomId }, (await device.link.session())!.token);
    expect(history.messages.edges).toEqual([{ node: { body: 'late but sent' } }]);
  });

  it('sends a request whose token expired on the way again also when the first refresh for it fails (the next one serves)', async () => {
    const ada = await signUpSession(short.url);
    const roomId = (await must(short.url, `mutation { createRoom(input: { name: "r", kind: PUBLIC }) { id } }`, {}, ada.session.token)).createRoom.id;
    let held = false;
    let refused = false; // the held send's refusal has come back
    let failNext = 1; // refreshes that fail (the network) once it has
    const late: typeof fetch = async (input, init) => {
      const body = String(init?.body);
      if (body.includes('RefreshSession') && (!refused || failNext-- > 0)) throw new TypeError('fetch failed');
      const auth = (init?.headers as Record<string, string> | undefined)?.authorization;
      if (held || !auth || !body.includes('SendMessage')) return fetch(input, init);
      held = true;
      const { exp } = JSON.parse(Buffer.from(auth.split('.')[1], 'base64url').toString('utf8')) as { exp: number };
      await new Promise((r) => setTimeout(r, exp * 1000 + 1100 - Date.now()));
      const answer = await fetch(input, init);
      refused = true;
      return answer;
    };
    const device = kitClient(short.url, short.wsUrl, ada.session, { fetch: late });
    const sent = await device.client.mutate({ mutation: SendMessageDocument, variables: { input: { roomId, body: 'after a failed refresh', clientId: 'late-2' } } });
    expect(failNext).toBeLessThan(1); // a refresh failed after the refusal
    expect(sent.data?.sendMessage.body).toBe('after a failed refresh');
    expect(device.ended).toEqual([]);
  });

  it('surfaces a refused session at once as UNAUTHENTICATED, not after retries', async () => {
    const ada = await signUpSession(short.url);
    const roomId = (await must(short.url, `mutation { createRoom(input: { name: "r", kind: PUBLIC }) { id } }`, {}, ada.session.token)).createRoom.id;
    await must(short.url, `mutation { logOut }`, {}, ada.session.token);
    const device = kitClient(short.url, short.wsUrl, ada.session);
    const events = watchEvents(device, roomId);
    await events.until(() => events.errors.length > 0, 10_000);
    expect(codeOf(events.errors[0])).toBe('UNAUTHENTICATED');
    expect(device.sockets()).toBe(1); // one refused connection, no retry
    expect(device.ended.length).toBe(1);
  });
});
