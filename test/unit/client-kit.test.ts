// The client kit's pure parts: a typed document for every operation of the schema, the resume
// position (drop at or below it), the selections it adds, and the backoff.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Kind, parse, print, type OperationDefinitionNode } from 'graphql';
import { createSchema } from '../../src/graphql/schema';
import { backoffDelay } from '../../client/src/backoff';
import { ResumeTracker, resumableFieldOf, withResumeSelections } from '../../client/src/resume';
import { ApolloClient, InMemoryCache, type ApolloLink } from '@apollo/client';
import { createChatLink } from '../../client/src/link';
import { NewestMessages } from '../../client/src/newest';
import type { Client } from 'graphql-ws';
import { SessionKeeper, type Session } from '../../client/src/session';
import { SessionEndedError } from '../../client/src/errors';
import { subscribe } from '../../client/src/subscription';
import { createSocket } from '../../client/src/socket';
import net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { waitFor } from '../support/fakes';

const OPERATIONS = path.resolve(__dirname, '../../client/operations');
const b64 = (text: string) => Buffer.from(text).toString('base64url');

describe('client/operations', () => {
  it('has a document for every query, mutation and subscription field of the schema', () => {
    const schema = createSchema();
    const used = new Set<string>();
    for (const file of readdirSync(OPERATIONS).filter((f) => f.endsWith('.graphql'))) {
      for (const def of parse(readFileSync(path.join(OPERATIONS, file), 'utf8')).definitions) {
        if (def.kind !== Kind.OPERATION_DEFINITION) continue;
        for (const sel of def.selectionSet.selections) if (sel.kind === Kind.FIELD) used.add(`${def.operation}.${sel.name.value}`);
      }
    }
    const roots = [
      ['query', schema.getQueryType()],
      ['mutation', schema.getMutationType()],
      ['subscription', schema.getSubscriptionType()],
    ] as const;
    const missing = roots.flatMap(([op, type]) => Object.keys(type!.getFields()).map((f) => `${op}.${f}`)).filter((f) => !used.has(f));
    expect(missing).toEqual([]);
  });
});

describe('ResumeTracker', () => {
  const room = '11111111-1111-4111-8111-111111111111';
  const m = (seq: number) => ({ messageAdded: { __typename: 'Message', id: `id${seq}`, seq, cursor: b64(`m1:${room}:${seq}`) } });

  it('follows the last delivered messageAdded and drops anything at or below it', () => {
    const tracker = new ResumeTracker('messageAdded', 'messageAdded');
    expect([1, 2, 3].map((n) => tracker.accept(m(n)))).toEqual([true, true, true]);
    expect(tracker.cursor).toBe(b64(`m1:${room}:3`));
    expect([2, 3, 4].map((n) => tracker.accept(m(n)))).toEqual([false, false, true]);
    expect(tracker.cursor).toBe(b64(`m1:${room}:4`));
  });

  it('follows roomEvents by their event cursor, lets unchanged deltas through once, and passes errors', () => {
    const tracker = new ResumeTracker('roomEvents', 'events');
    // Event cursors carry more after the change number (what the stream had added): it must not be read as the position.
    const e = (n: number, typename = 'MessageUpdated') => ({ events: { __typename: typename, cursor: b64(`e1:${room}:${n}:${100 - n}`), message: { id: 'x' } } });
    const delta = (index: number) => ({ events: { __typename: 'AssistantDelta', messageId: 'r', index } });
    expect([e(5, 'MessageAdded'), e(6), delta(0), delta(1), e(6), delta(1), e(7)].map((x) => tracker.accept(x))).toEqual([true, true, true, true, false, false, true]);
    expect(tracker.cursor).toBe(b64(`e1:${room}:7:93`));
    expect(tracker.accept(null)).toBe(true);
  });

  it('lets a streaming reply told again at the last position through, once per text (a resume mid-reply, deltas lost), and nothing else there', () => {
    const tracker = new ResumeTracker('roomEvents', 'events');
    const cursor = b64(`e1:${room}:9:91`);
    const told = (deltaCount: number, status = 'STREAMING', typename = 'MessageUpdated') => ({ events: { __typename: typename, cursor, message: { id: 'r', status, deltaCount } } });
    expect(tracker.accept(told(3))).toBe(true); // the event at 9 itself
    expect([told(24), told(24), told(30, 'STREAMING', 'MessageAdded'), told(30, 'COMPLETE')].map((x) => tracker.accept(x))).toEqual([true, false, true, false]);
    expect(tracker.accept({ events: { __typename: 'MessageUpdated', cursor: b64(`e1:${room}:8:92`), message: { id: 'r', status: 'STREAMING', deltaCount: 40 } } })).toBe(false); // below it
    expect(tracker.cursor).toBe(cursor);
  });

  it('falls back to the seen set for cursors it cannot read', () => {
    const tracker = new ResumeTracker('messageAdded', 'messageAdded');
    const odd = { messageAdded: { cursor: 'opaque-one' } };
    expect(tracker.accept(odd)).toBe(true);
    expect(tracker.accept(odd)).toBe(false);
  });
});

describe('withResumeSelections', () => {
  it('adds the position fields to the resumable root field, keeping its alias', () => {
    const doc = parse(`subscription S($r: ID!) { events: roomEvents(roomId: $r) { ... on MessageAdded { message { body } } } }`);
    expect(resumableFieldOf(doc)).toEqual({ field: 'roomEvents', key: 'events' });
    const printed = print(withResumeSelections(doc, 'roomEvents').document);
    expect(printed).toContain('__typename');
    expect(printed).toMatch(/\.\.\. on MessageAdded \{[^}]*message \{[^}]*cursor/);
    const added = parse(`subscription { messageAdded(roomId: "r") { body } }`);
    const op = withResumeSelections(added, 'messageAdded').document.definitions[0] as OperationDefinitionNode;
    expect(print(op)).toMatch(/body\s+__typename\s+id\s+seq\s+cursor/);
    expect(resumableFieldOf(parse(`query { me { id } }`))).toBeUndefined();
  });

  it('binds after to a variable it can move: the application’s own, or one it declares when the document has none or a literal', () => {
    const own = withResumeSelections(parse(`subscription($r: ID!, $from: String) { roomEvents(roomId: $r, after: $from) { __typename } }`), 'roomEvents');
    expect(own.afterVariable).toBe('from');
    expect(print(own.document)).toContain('roomEvents(roomId: $r, after: $from)');
    const none = withResumeSelections(parse(`subscription($r: ID!) { roomEvents(roomId: $r) { __typename } }`), 'roomEvents');
    expect(print(none.document)).toMatch(/subscription \(\$r: ID!, \$(\w+): String\) \{\s+roomEvents\(roomId: \$r, after: \$\1\)/);
    expect(none.initialAfter).toBeUndefined();
    const literal = withResumeSelections(parse(`subscription { messageAdded(roomId: "r", after: "c1") { body } }`), 'messageAdded');
    expect(print(literal.document)).toContain(`messageAdded(roomId: "r", after: $${literal.afterVariable})`);
    expect(literal.initialAfter).toBe('c1');
  });
});

describe('NewestMessages (a message\'s older state never replaces a newer one)', () => {
  const msg = (id: string, version: number, body: string, extra: Record<string, unknown> = {}) => ({ __typename: 'Message', id, version, body, ...extra });

  it('gives, in place of a state older than one seen, the newest seen with the same selection; newer and unversioned states pass', () => {
    const newest = new NewestMessages();
    const edited = msg('m1', 5, 'edited', { author: { __typename: 'User', id: 'u1' } });
    expect(newest.apply({ data: { messageUpdated: { message: edited } } })).toEqual({ data: { messageUpdated: { message: edited } } });
    // A RoomActivity that left before the edit, arriving after it (myEvents and roomEvents race).
    const stale = { data: { myEvents: { __typename: 'RoomActivity', room: { id: 'r1', unreadCount: 3 }, message: msg('m1', 3, 'as sent', { author: { __typename: 'User', id: 'u1' } }) } } };
    expect(newest.apply(stale)).toEqual({ data: { myEvents: { __typename: 'RoomActivity', room: { id: 'r1', unreadCount: 3 }, message: edited } } });
    expect(stale.data.myEvents.message.body).toBe('as sent'); // the result given is not changed in place
    // Another selection of it cannot be filled from what was seen: it passes as it came.
    expect(newest.apply({ data: { x: msg('m1', 3, 'as sent') } })).toEqual({ data: { x: msg('m1', 3, 'as sent') } });
    // Newer passes and becomes the newest; so does a message without a version, and anything in a list.
    const deleted = msg('m1', 7, '', { author: { __typename: 'User', id: 'u1' } });
    expect(newest.apply({ data: { list: [deleted, { __typename: 'Message', id: 'm2', body: 'no version' }] } })).toEqual({ data: { list: [deleted, { __typename: 'Message', id: 'm2', body: 'no version' }] } });
    expect(newest.apply({ data: { list: [msg('m1', 5, 'edited', { author: { __typename: 'User', id: 'u1' } })] } })).toEqual({ data: { list: [deleted] } });
    // At one version (a streaming reply's text growing) fewer pieces are older.
    newest.apply({ data: { r: msg('m3', 9, 'Hello', { deltaCount: 2 }) } });
    expect(newest.apply({ data: { r: msg('m3', 9, 'He', { deltaCount: 1 }) } })).toEqual({ data: { r: msg('m3', 9, 'Hello', { deltaCount: 2 }) } });
    expect(newest.apply({ errors: [{ message: 'x' }] })).toEqual({ errors: [{ message: 'x' }] });
  });

  it('remembers a bounded number of messages, the least recently seen going first', () => {
    const newest = new NewestMessages(2);
    for (const id of ['a', 'b', 'c']) newest.apply({ data: { m: msg(id, 5, 'new') } });
    expect(newest.apply({ data: { m: msg('a', 1, 'old') } })).toEqual({ data: { m: msg('a', 1, 'old') } }); // forgotten
    expect(newest.apply({ data: { m: msg('c', 1, 'old') } })).toEqual({ data: { m: msg('c', 5, 'new') } });
  });
});

describe('backoffDelay', () => {
  it('grows exponentially to the ceiling, with jitter between half and all of it', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const ceiling = Math.min(10_000, 250 * 2 ** attempt);
      for (let i = 0; i < 20; i++) {
        const delay = backoffDelay(attempt);
        expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay).toBeLessThanOrEqual(ceiling);
      }
    }
  });
});

describe('subscribe (the kit\'s subscription through graphql-ws)', () => {
  const room = '11111111-1111-4111-8111-111111111111';
  const added = (seq: number) => ({ data: { messageAdded: { __typename: 'Message', id: `id${seq}`, seq, cursor: b64(`m1:${room}:${seq}`) } } });

  it('subscribes again after the last cursor when the server ends the stream with SERVICE_UNAVAILABLE, and ends on any other error', async () => {
    const sent: Array<Record<string, unknown>> = [];
    const sinks: Array<{ next(value: unknown): void; error(err: unknown): void }> = [];
    const client = {
      subscribe: (payload: { variables: Record<string, unknown> }, sink: (typeof sinks)[number]) => {
        sent.push({ ...payload.variables });
        sinks.push(sink);
        return () => undefined;
      },
    } as unknown as Client;
    const keeper = { ended: undefined, session: async () => ({}) } as unknown as SessionKeeper;
    const operation = {
      query: parse(`subscription($roomId: ID!, $after: String) { messageAdded(roomId: $roomId, after: $after) { id seq } }`),
      variables: { roomId: room },
      operationName: undefined,
      extensions: {},
    } as unknown as ApolloLink.Operation;
    const seen: unknown[] = [];
    let failure: unknown;
    subscribe(operation, client, keeper, { active: new Set(), running: new Set() }, { initialDelayMs: 1, maxDelayMs: 2 }).subscribe({
      next: (r) => seen.push((r.data as { messageAdded: { seq: number } }).messageAdded.seq),
      error: (err) => (failure = err),
    });
    await waitFor(() => sinks.length === 1, 'the subscription');
    sinks[0].next(added(1));
    sinks[0].next(added(2));
    sinks[0].error([{ message: 'The database is unreachable', extensions: { code: 'SERVICE_UNAVAILABLE' } }]);
    await waitFor(() => sent.length === 2, 'the subscription again');
    expect(sent.map((v) => v.after)).toEqual([undefined, b64(`m1:${room}:2`)]);
    sinks[1].next(added(2)); // already delivered: dropped
    sinks[1].next(added(3));
    expect(seen).toEqual([1, 2, 3]);
    expect(failure).toBeUndefined();
    sinks[1].error([{ message: 'Internal server error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }]);
    await waitFor(() => failure !== undefined, 'the error');
    await new Promise((r) => setTimeout(r, 20)); // past the retry delay: not subscribed again
    expect(sent).toHaveLength(2);
  });
});

describe("createSocket's refresh over the open socket", () => {
  it('keeps the answer it received when the socket closes before its complete (the old refresh token is spent)', async () => {
    const server = new WebSocketServer({ port: 0, handleProtocols: () => 'graphql-transport-ws' });
    const answer = { data: { refreshSession: { token: 'new-token', expiresAt: '2030-01-01T00:00:00.000Z', refreshToken: 'new-refresh' } } };
    server.on('connection', (socket) => {
      socket.on('message', (data) => {
        const message = JSON.parse(String(data)) as { type: string; id?: string; payload?: { operationName?: string } };
        if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
        // The answer goes out, then the connection is lost before its `complete`.
        if (message.type === 'subscribe' && message.payload?.operationName === 'RefreshSession') {
          socket.send(JSON.stringify({ id: message.id, type: 'next', payload: answer }), () => socket.terminate());
        }
      });
    });
    const port = (server.address() as { port: number }).port;
    const keeper = { token: async () => 'old-token' } as unknown as SessionKeeper;
    const ws = createSocket({ httpUrl: 'http://unused', wsUrl: `ws://127.0.0.1:${port}`, session: null as never, webSocketImpl: WebSocket, } as never, keeper);
    const connected = new Promise<void>((resolve) => ws.client.on('connected', () => resolve()));
    const stopHolding = ws.client.subscribe({ query: 'subscription { held }' }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    try {
      await connected;
      const refreshed = ws.refresh('old-refresh');
      expect(refreshed).toBeDefined();
      await expect(refreshed).resolves.toEqual(answer); // before: rejected, and the kit refreshed again with the spent token
    } finally {
      stopHolding();
      ws.dispose();
      await ws.client.dispose();
      server.close();
    }
  });
});

describe("createSocket's connection", () => {
  const keeper = { token: async () => 'a-token' } as unknown as SessionKeeper;
  const servers: Array<() => void> = [];
  afterEach(() => {
    for (const close of servers.splice(0)) close();
  });
  const closing = (server: WebSocketServer) => () => {
    for (const socket of server.clients) socket.terminate();
    server.close();
  };

  /** A graphql-transport-ws server that acknowledges and answers every subscription with `{ from: name }` once (then, with `cut`, drops the connection). */
  function answering(name: string, cut = false): number {
    const server = new WebSocketServer({ port: 0, handleProtocols: () => 'graphql-transport-ws' });
    servers.push(closing(server));
    server.on('connection', (socket) => {
      socket.on('message', (data) => {
        const message = JSON.parse(String(data)) as { type: string; id?: string };
        if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
        if (message.type === 'ping') socket.send(JSON.stringify({ type: 'pong' }));
        if (message.type === 'subscribe') socket.send(JSON.stringify({ id: message.id, type: 'next', payload: { data: { from: name } } }));
        if (message.type === 'subscribe' && cut) socket.terminate();
      });
    });
    return (server.address() as { port: number }).port;
  }

  /** Connects through `urls` in turn (the last one stays) and collects what one subscription receives. */
  function subscribeThrough(urls: string[], extra: Record<string, unknown> = {}) {
    let connects = 0;
    const ws = createSocket({ httpUrl: 'http://unused', wsUrl: () => urls[Math.min(connects++, urls.length - 1)], session: null as never, webSocketImpl: WebSocket, retry: { initialDelayMs: 10, maxDelayMs: 20 }, ...extra } as never, keeper);
    const received: Array<{ data: unknown; afterClose: boolean }> = [];
    let closed = false;
    ws.client.on('closed', () => (closed = true));
    const stop = ws.client.subscribe({ query: 'subscription { from }' }, { next: (r) => received.push({ data: r.data, afterClose: closed }), error: () => undefined, complete: () => undefined });
    return {
      received,
      connects: () => connects,
      stop: async () => {
        stop();
        ws.dispose();
        await ws.client.dispose();
      },
    };
  }

  it('gives up an opening handshake that is never answered (a stopped process whose kernel still accepts) and connects again', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket)); // accepts, never answers the upgrade
    servers.push(() => {
      for (const socket of held) socket.destroy();
      silent.close();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentUrl = `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const kit = subscribeThrough([silentUrl, `ws://127.0.0.1:${answering('second')}`], { connectTimeoutMs: 300 });
    try {
      await waitFor(() => kit.received.length > 0, 'an event through the second server', 5000); // before: nothing, ever
      expect(kit.received.map((r) => r.data)).toEqual([{ from: 'second' }]);
      expect(kit.connects()).toBe(2);
    } finally {
      await kit.stop();
    }
  });

  it('tells onReconnected each time the socket is acknowledged again, not the first time', async () => {
    let reconnects = 0;
    const kit = subscribeThrough([`ws://127.0.0.1:${answering('first', true)}`, `ws://127.0.0.1:${answering('second')}`], { onReconnected: () => reconnects++ });
    try {
      await waitFor(() => kit.received.length === 2, 'an event through each server', 5000);
      expect(reconnects).toBe(1);
    } finally {
      await kit.stop();
    }
  });

  it('gives up a socket the server opened but never acknowledges (nor answers its close), and connects again', async () => {
    const mute = new WebSocketServer({ port: 0, handleProtocols: () => 'graphql-transport-ws' });
    // No connection_ack, and no reading at all: a close handshake goes unanswered too.
    mute.on('connection', (socket) => (socket as unknown as { _socket: net.Socket })._socket.pause());
    servers.push(closing(mute));
    const kit = subscribeThrough([`ws://127.0.0.1:${(mute.address() as { port: number }).port}`, `ws://127.0.0.1:${answering('second')}`], { connectTimeoutMs: 300 });
    try {
      await waitFor(() => kit.received.length > 0, 'an event through the second server', 5000);
      expect(kit.received.map((r) => r.data)).toEqual([{ from: 'second' }]);
    } finally {
      await kit.stop();
    }
  });

  it('passes on nothing a socket it gave up still receives (its keep-alive unanswered: the server no longer reads, yet writes)', async () => {
    const deaf = new WebSocketServer({ port: 0, handleProtocols: () => 'graphql-transport-ws' });
    servers.push(closing(deaf));
    const writers: Array<ReturnType<typeof setInterval>> = [];
    deaf.on('connection', (socket) => {
      socket.on('message', (data) => {
        const message = JSON.parse(String(data)) as { type: string; id?: string };
        if (message.type === 'connection_init') socket.send(JSON.stringify({ type: 'connection_ack' }));
        if (message.type === 'subscribe') {
          // From here on it reads nothing (no pong, no close handshake) and keeps writing.
          (socket as unknown as { _socket: net.Socket })._socket.pause();
          writers.push(setInterval(() => socket.send(JSON.stringify({ id: message.id, type: 'next', payload: { data: { from: 'deaf' } } })), 5));
        }
      });
    });
    const kit = subscribeThrough([`ws://127.0.0.1:${(deaf.address() as { port: number }).port}`, `ws://127.0.0.1:${answering('second')}`], { keepAliveMs: 200 });
    try {
      await waitFor(() => kit.received.some((r) => (r.data as { from: string }).from === 'second'), 'an event through the second server', 5000);
      await new Promise((r) => setTimeout(r, 200)); // the deaf server writes on meanwhile
      expect(kit.received.filter((r) => r.afterClose && (r.data as { from: string }).from === 'deaf')).toEqual([]);
      expect(kit.received.some((r) => !r.afterClose)).toBe(true); // it did deliver while the socket was the kit's
    } finally {
      for (const w of writers) clearInterval(w);
      await kit.stop();
    }
  });
});

describe('SessionKeeper', () => {
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  it("counts a refreshed token's lifetime from when its request was sent, not from its answer (a slow round trip)", async () => {
    jest.useFakeTimers({ now: 1_700_000_000_000 });
    jest.spyOn(Math, 'random').mockReturnValue(0); // no jitter on the refresh margin
    const seconds = () => Math.floor(Date.now() / 1000);
    const session = (iat: number, n: number): Session => ({
      token: `${b64('{"alg":"none"}')}.${b64(JSON.stringify({ iat, exp: iat + 30 }))}.x`,
      refreshToken: `refresh-${n}`,
      expiresAt: new Date((iat + 30) * 1000).toISOString(),
    });
    const requests: number[] = [];
    const slowServer = (async () => {
      requests.push(Date.now());
      await new Promise((r) => setTimeout(r, 5000)); // the answer takes 5 s; the token was issued as it left
      return new Response(JSON.stringify({ data: { refreshSession: session(seconds(), requests.length) } }));
    }) as typeof fetch;
    const keeper = new SessionKeeper(session(seconds() - 30, 0), { httpUrl: 'http://unused', fetch: slowServer });
    const sentAt = Date.now();
    const token = keeper.token(); // expired: refreshes first
    await jest.advanceTimersByTimeAsync(5000);
    await token;
    // Lifetime 29 s (30 s of claims, less their rounding), refreshed a third of it before the end:
    // 19.3 s after the request was sent (before: 24.3 s, after the answer came).
    await jest.advanceTimersByTimeAsync(15_000);
    expect(requests.map((at) => at - sentAt)).toEqual([0, 19_333]);
    keeper.dispose();
  });

  it('takes a session of another sign-in the store holds (another tab), ended or not; a newer token of its own session is the refresh\'s to take', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const session = (sid: string, n: number, expires = exp): Session => ({ token: `${b64('{"alg":"none"}')}.${b64(JSON.stringify({ sid, exp: expires }))}.${n}`, refreshToken: `r${n}`, expiresAt: new Date(expires * 1000).toISOString() });
    const stored = { current: session('s1', 1) };
    const keeper = new SessionKeeper(async () => stored.current, { httpUrl: 'http://unused', fetch: (async () => new Response('{}')) as typeof fetch });
    let signIns = 0;
    keeper.onSignIn = () => signIns++;
    expect(await keeper.token()).toBe(stored.current.token);
    // Another tab refreshed this session: not taken here (the refresh takes it, renewing the socket).
    const own = stored.current.token;
    stored.current = session('s1', 2, exp + 10);
    expect(await keeper.token()).toBe(own);
    // Another tab logged out and in again: taken at the next operation, before anything fails.
    stored.current = session('s2', 3, exp + 20);
    expect(await keeper.token()).toBe(stored.current.token);
    expect(signIns).toBe(1);
    // An older sign-in left in the store is not.
    stored.current = session('s0', 4, exp - 100);
    expect(await keeper.token()).toBe(session('s2', 3, exp + 20).token);
    // Ended, then signed in again elsewhere.
    keeper.end('Session ended');
    await expect(keeper.token()).rejects.toBeInstanceOf(SessionEndedError);
    stored.current = session('s3', 5, exp + 30);
    expect(await keeper.token()).toBe(stored.current.token);
    expect(keeper.ended).toBeUndefined();
    // Signed out by the application: what the store still holds does not sign it in again.
    keeper.set(null);
    stored.current = session('s4', 6, exp + 40);
    expect(await keeper.token()).toBeNull();
    keeper.dispose();
  });
});

describe('createChatLink', () => {
  /** A link subscribed through a server at `port`, disposed once its connection is under way: how long `dispose()` took. */
  async function disposeWhileConnecting(port: number): Promise<number> {
    // Timeouts far beyond the test's: only the dispose itself may end the attempt.
    const link = createChatLink({ httpUrl: 'http://unused', wsUrl: `ws://127.0.0.1:${port}`, session: { token: 'a.b.c', refreshToken: 'r' }, webSocketImpl: WebSocket, connectTimeoutMs: 60_000, keepAliveMs: 120_000 });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const subscription = client.subscribe({ query: parse('subscription { anything }') }).subscribe({ error: () => undefined });
    await new Promise((r) => setTimeout(r, 300)); // the attempt is under way
    const started = Date.now();
    await link.dispose();
    subscription.unsubscribe();
    client.stop();
    return Date.now() - started;
  }

  it('gives up a connection under way when disposed: a handshake never answered, or a socket never acknowledged', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket)); // never answers the upgrade
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const mute = new WebSocketServer({ port: 0, handleProtocols: () => 'graphql-transport-ws' });
    mute.on('connection', (socket) => (socket as unknown as { _socket: net.Socket })._socket.pause()); // no ack, reads nothing
    try {
      // Before: until the attempt's own timeout (here a minute; by default 10 s, and for a socket
      // opened but not acknowledged until the keep-alive gave it up).
      expect(await disposeWhileConnecting((silent.address() as net.AddressInfo).port)).toBeLessThan(5000);
      expect(await disposeWhileConnecting((mute.address() as { port: number }).port)).toBeLessThan(5000);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
      for (const socket of mute.clients) socket.terminate();
      mute.close();
    }
  }, 30_000);

  it('keeps an older state of a message that comes after a newer one out of the cache', async () => {
    const answers = [
      { data: { a: { __typename: 'Message', id: 'm1', version: 5, body: 'edited' } } },
      { data: { b: { __typename: 'Message', id: 'm1', version: 3, body: 'as sent' } } },
    ];
    const fetchStub = (async () => new Response(JSON.stringify(answers.shift()), { headers: { 'content-type': 'application/json' } })) as typeof fetch;
    const link = createChatLink({ httpUrl: 'http://unused', wsUrl: 'ws://unused', webSocketImpl: WebSocket, session: { token: 'a.b.c', refreshToken: 'r', expiresAt: new Date(Date.now() + 3_600_000).toISOString() }, fetch: fetchStub });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    await client.query({ query: parse('{ a { id version body } }') });
    const later = await client.query({ query: parse('{ b { id version body } }') });
    expect(later.data).toEqual({ b: { __typename: 'Message', id: 'm1', version: 5, body: 'edited' } });
    expect((client.cache.extract() as Record<string, unknown>)['Message:m1']).toMatchObject({ version: 5, body: 'edited' });
    client.stop();
    await link.dispose();
  });

  it('disposes of itself while its WebSocket cannot connect (the server unreachable), without rejecting', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const link = createChatLink({ httpUrl: 'http://unused', wsUrl: `ws://127.0.0.1:${port}`, session: { token: 'a.b.c', refreshToken: 'r' }, webSocketImpl: WebSocket });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const errors: unknown[] = [];
    const subscription = client.subscribe({ query: parse('subscription { anything }') }).subscribe({ error: (e) => errors.push(e) });
    await new Promise((r) => setTimeout(r, 200)); // its first attempt refused
    await expect(link.dispose()).resolves.toBeUndefined(); // before: rejected with the close event (1006)
    subscription.unsubscribe();
    client.stop();
  });
});

