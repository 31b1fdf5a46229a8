// Sessions over the wire (docs/guarantees.md, "Sessions and the client kit"): refreshSession rotates, a reused refresh token
// revokes the session, logOut ends it, a socket is renewed in place by refreshSession sent on it,
// and a deleted user's tokens are UNAUTHENTICATED over HTTP and closed with 4403 over WebSocket.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { codeOf, collect, createRoom, gql, holdRow, must, reachTheLock, send, signUp, startServer, unique, useServer, waitFor, wsClient, type GqlResult, type TestServer } from '../support/harness';
import { rawSocket, type RawSocket } from '../support/transports';

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ JWT_TTL_SECONDS: '3', SESSION_SWEEP_MS: '200' });
});
afterAll(() => server.stop());

const PASSWORD = 'correct horse battery';
const REFRESH = `mutation($r: String!) { refreshSession(refreshToken: $r) { token expiresAt refreshToken user { id } } }`;
const ME = `{ me { id } }`;
const MESSAGE_ADDED = `subscription($roomId: ID!) { messageAdded(roomId: $roomId) { seq body } }`;

interface Tokens {
  id: string;
  token: string;
  refreshToken: string;
  expiresAt: string;
}

async function signUpTokens(): Promise<Tokens> {
  const data = await must(server.url, `mutation($i: SignUpInput!) { signUp(input: $i) { token expiresAt refreshToken user { id } } }`, {
    i: { username: unique(), password: PASSWORD },
  });
  return { id: data.signUp.user.id, ...data.signUp };
}

const refresh = (refreshToken: unknown) => gql(server.url, REFRESH, { r: refreshToken });

function expectBadInput(result: GqlResult, field: string) {
  expect(codeOf(result)).toBe('BAD_USER_INPUT');
  expect(result.errors![0].extensions!.field).toBe(field);
}

describe('refreshSession', () => {
  it('rotates: a new access token and refresh token for the same user; the old refresh token stops working', async () => {
    const ada = await signUpTokens();
    const first = await refresh(ada.refreshToken);
    expect(first.errors).toBeUndefined();
    const next = first.data.refreshSession;
    expect(next.user.id).toBe(ada.id);
    expect(next.refreshToken).not.toBe(ada.refreshToken);
    expect(next.token).not.toBe(ada.token);
    expect(new Date(next.expiresAt).getTime()).toBeGreaterThan(Date.now());
    expect((await must(server.url, ME, {}, next.token)).me.id).toBe(ada.id);
    const second = await refresh(next.refreshToken);
    expect(second.errors).toBeUndefined();
  });

  it('revokes the whole session when a used refresh token comes back: every token of it fails', async () => {
    const ada = await signUpTokens();
    const rotated = (await refresh(ada.refreshToken)).data.refreshSession;
    const reuse = await refresh(ada.refreshToken);
    expect(codeOf(reuse)).toBe('UNAUTHENTICATED');
    expect(reuse.data ?? null).toBeNull();
    expect(codeOf(await refresh(rotated.refreshToken))).toBe('UNAUTHENTICATED');
    expect((await gql(server.url, ME, {}, rotated.token)).data.me).toBeNull();
    // Another session of the same account is untouched.
    const username = unique();
    const first = (await must(server.url, `mutation($i: SignUpInput!) { signUp(input: $i) { token refreshToken } }`, { i: { username, password: PASSWORD } })).signUp;
    const second = (await must(server.url, `mutation($i: LogInInput!) { logIn(input: $i) { token refreshToken } }`, { i: { username, password: PASSWORD } })).logIn;
    await refresh(first.refreshToken);
    await refresh(first.refreshToken); // reuse: revokes the first session only
    expect(codeOf(await refresh(second.refreshToken))).toBeUndefined();
  });

  it('ends nothing for a secret it never issued for the session: the session id is in every access token, the secret is not', async () => {
    const ada = await signUpTokens();
    const bob = await signUpTokens();
    const [sessionId, secret] = ada.refreshToken.split('.');
    const bobs = (await refresh(bob.refreshToken)).data.refreshSession.refreshToken.split('.')[1];
    const flipped = Buffer.from(secret, 'base64url');
    flipped[31] ^= 1; // the tag's last byte
    const madeUp = [
      'B'.repeat(43),
      bobs, // issued, and used, for another session
      flipped.toString('base64url'),
    ];
    for (const other of madeUp) {
      const answer = await refresh(`${sessionId}.${other}`);
      expect(answer.errors?.[0]).toMatchObject({ message: 'Session ended or refresh token unknown: sign in again', extensions: { code: 'UNAUTHENTICATED' } });
    }
    expect((await must(server.url, ME, {}, ada.token)).me.id).toBe(ada.id);
    expect(codeOf(await refresh(ada.refreshToken))).toBeUndefined();
  });

  it('revokes the session for a secret it rotated away generations ago', async () => {
    const ada = await signUpTokens();
    let current = ada.refreshToken;
    for (let i = 0; i < 3; i++) current = (await refresh(current)).data.refreshSession.refreshToken;
    const reuse = await refresh(ada.refreshToken);
    expect(reuse.errors?.[0]).toMatchObject({ message: 'This refresh token was already used: the session is revoked, sign in again', extensions: { code: 'UNAUTHENTICATED' } });
    expect(codeOf(await refresh(current))).toBe('UNAUTHENTICATED');
  });

  it('keeps one row per session however often it is refreshed', async () => {
    const ada = await signUpTokens();
    let token = ada.refreshToken;
    for (let i = 0; i < 5; i++) token = (await refresh(token)).data.refreshSession.refreshToken;
    const rows = await server.app.db.dataSource.query(`SELECT generation FROM sessions WHERE user_id = $1`, [ada.id]);
    expect(rows).toEqual([{ generation: 5 }]);
  });

  it('lets exactly one of two racing refreshes with the same token through, and the loser revokes the session', async () => {
    const ada = await signUpTokens();
    const results = await Promise.all([refresh(ada.refreshToken), refresh(ada.refreshToken)]);
    expect(results.filter((r) => !r.errors).length).toBe(1);
    expect(results.map(codeOf).filter(Boolean)).toEqual(['UNAUTHENTICATED']);
    const winner = results.find((r) => !r.errors)!.data.refreshSession;
    expect(codeOf(await refresh(winner.refreshToken))).toBe('UNAUTHENTICATED');
  });

  it('answers BAD_USER_INPUT on refreshToken for an empty or malformed one, UNAUTHENTICATED for an unknown one', async () => {
    expectBadInput(await refresh(''), 'refreshToken');
    expectBadInput(await refresh('x'.repeat(201)), 'refreshToken');
    expectBadInput(await refresh('not a token!'), 'refreshToken');
    const ada = await signUpTokens();
    expectBadInput(await refresh(ada.token), 'refreshToken'); // an access token is not a refresh token
    expectBadInput(await refresh('A'.repeat(43)), 'refreshToken'); // no session in it
    expect(codeOf(await refresh(`00000000-0000-4000-8000-000000000000.${'A'.repeat(43)}`))).toBe('UNAUTHENTICATED');
    const typeError = await refresh(42);
    expect(codeOf(typeError)).toBe('BAD_USER_INPUT'); // a variable of the wrong type
    expect(JSON.stringify([await refresh(''), await refresh(`00000000-0000-4000-8000-000000000000.${'A'.repeat(43)}`)])).not.toMatch(/sessions|SELECT|stack/i);
  });
});

describe('logOut', () => {
  it('ends the session: its access and refresh tokens fail; a second logOut is UNAUTHENTICATED', async () => {
    const ada = await signUpTokens();
    expect((await must(server.url, `mutation { logOut }`, {}, ada.token)).logOut).toBe(true);
    expect((await gql(server.url, ME, {}, ada.token)).data.me).toBeNull();
    expect(codeOf(await refresh(ada.refreshToken))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(server.url, `mutation { logOut }`, {}, ada.token))).toBe('UNAUTHENTICATED');
  });

  it('is UNAUTHENTICATED without a token', async () => {
    expect(codeOf(await gql(server.url, `mutation { logOut }`))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(server.url, `mutation { logOut(allSessions: true) }`))).toBe('UNAUTHENTICATED');
  });

  it('closes the session\'s open sockets with 4403 and refuses new ones before connection_ack', async () => {
    const ada = await signUpTokens();
    const roomId = await createRoom(server.url, { id: ada.id, username: '', token: ada.token });
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${ada.token}` });
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await must(server.url, `mutation { logOut }`, {}, ada.token);
    const closed = await sub.done.then(() => undefined, (e) => e);
    expect(closed?.code).toBe(4403);
    await client.dispose();

    const acked: boolean[] = [];
    const again = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { authorization: `Bearer ${ada.token}` }, on: { connected: () => acked.push(true) } });
    const refused = await collect(again, MESSAGE_ADDED, { roomId }).done.then(() => undefined, (e) => e);
    expect(refused?.code).toBe(4403);
    expect(acked).toEqual([]);
    await again.dispose();
  });
});

describe('logOut sent on a WebSocket', () => {
  it('answers true on that socket, then closes it and the session\'s other sockets with 4403', async () => {
    const ada = await signUpTokens();
    const roomId = await createRoom(server.url, { id: ada.id, username: '', token: ada.token });
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${ada.token}` });
    const other = wsClient(server.wsUrl, { authorization: `Bearer ${ada.token}` });
    const subs = [collect(client, MESSAGE_ADDED, { roomId }), collect(other, MESSAGE_ADDED, { roomId })];
    await waitFor(() => server.app.hubs.listeners(roomId) === 2);
    const logOut = collect(client, `mutation { logOut(allSessions: true) }`);
    await logOut.done; // completed, not cut off by the close
    expect(logOut.results).toEqual([{ data: { logOut: true } }]);
    const closes = await Promise.all(subs.map((sub) => sub.done.then(() => undefined, (e) => e?.code)));
    expect(closes).toEqual([4403, 4403]);
    expect((await gql(server.url, ME, {}, ada.token)).data.me).toBeNull();
    await Promise.all([client.dispose(), other.dispose()]);
  });
});

describe('a socket whose session ended while a mutation runs on it', () => {
  it('answers the mutation, then closes with 4403, and delivers no subscription event meanwhile', async () => {
    const own = await startServer(); // tokens that outlive the test's steps
    let release: (() => Promise<void>) | undefined;
    try {
      const signUpHere = async () => (await must(own.url, `mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } } }`, { i: { username: unique(), password: PASSWORD } })).signUp;
      const [ada, bob] = await Promise.all([signUpHere(), signUpHere()]);
      const slowRoom = await createRoom(own.url, { id: ada.user.id, username: '', token: ada.token });
      const liveRoom = await createRoom(own.url, { id: ada.user.id, username: '', token: ada.token });
      await must(own.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: liveRoom }, bob.token);
      const socket = await rawSocket(own.wsUrl, ada.token);
      socket.send({ id: 'sub', type: 'subscribe', payload: { query: MESSAGE_ADDED, variables: { roomId: liveRoom } } });
      await waitFor(() => own.app.hubs.listeners(liveRoom) === 1);
      release = await holdRow('SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE', [slowRoom]); // holds up sends into it
      socket.send({ id: 'slow', type: 'subscribe', payload: { query: `mutation($i: SendMessageInput!) { sendMessage(input: $i) { seq } }`, variables: { i: { roomId: slowRoom, body: 'slow' } } } });
      await reachTheLock();
      expect((await must(own.url, `mutation { logOut }`, {}, ada.token)).logOut).toBe(true);
      await must(own.url, `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`, { i: { roomId: liveRoom, body: 'after logOut' } }, bob.token);
      await new Promise((r) => setTimeout(r, 500)); // the hub has fanned it out
      expect(socket.closed()).toBeUndefined(); // waiting for the running send's answer
      await release();
      release = undefined;
      const answer = await socket.next((f) => f.id === 'slow' && f.type === 'next');
      expect(answer.payload.data.sendMessage.seq).toBe(1);
      expect(await socket.whenClosed).toBe(4403);
      expect(socket.frames.filter((f) => f.id === 'sub' && f.type === 'next')).toEqual([]);
    } finally {
      await release?.();
      await own.stop();
    }
  });
});

describe('a WebSocket renewed by refreshSession sent on it', () => {
  it('stays open past the old token\'s expiry with its subscription untouched', async () => {
    const slow = await startServer({ JWT_TTL_SECONDS: '8' }); // room for a slow machine between the steps
    try {
      await renewedSocketOutlivesItsFirstToken(slow);
    } finally {
      await slow.stop();
    }
  });

  async function renewedSocketOutlivesItsFirstToken(server: TestServer) {
    const signUpHere = async () =>
      (await must(server.url, `mutation($i: SignUpInput!) { signUp(input: $i) { token expiresAt refreshToken user { id } } }`, { i: { username: unique(), password: PASSWORD } })).signUp;
    const ada = await signUpHere();
    const roomId = await createRoom(server.url, { id: ada.user.id, username: '', token: ada.token });
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${ada.token}` });
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await new Promise((r) => setTimeout(r, 3000));
    const renewed = await new Promise<any>((resolve, reject) =>
      client.subscribe({ query: REFRESH, variables: { r: ada.refreshToken } }, { next: resolve, error: reject, complete: () => undefined }),
    );
    expect(renewed.errors).toBeUndefined();
    expect(renewed.data.refreshSession.user.id).toBe(ada.user.id);
    await new Promise((r) => setTimeout(r, Date.parse(ada.expiresAt) - Date.now() + 500)); // the first token has expired
    const bob = await signUpHere();
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, bob.token);
    await must(server.url, `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`, { i: { roomId, body: 'after expiry' } }, bob.token);
    await sub.until((results) => results.length === 1);
    expect(sub.results[0].data.messageAdded.body).toBe('after expiry');
    // Without another refresh, the renewed token's expiry closes it.
    const closed = await sub.done.then(() => undefined, (e) => e);
    expect(closed).toMatchObject({ code: 4403, reason: 'Token expired' });
    await client.dispose();
  }

  it('is not renewed by a refresh token of another session (that session is refreshed, this socket still expires)', async () => {
    const [ada, other] = await Promise.all([signUpTokens(), signUpTokens()]);
    const roomId = await createRoom(server.url, { id: ada.id, username: '', token: ada.token });
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${ada.token}` });
    const sub = collect(client, MESSAGE_ADDED, { roomId });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    const answer = await new Promise<any>((resolve, reject) =>
      client.subscribe({ query: REFRESH, variables: { r: other.refreshToken } }, { next: resolve, error: reject, complete: () => undefined }),
    );
    expect(answer.data.refreshSession.user.id).toBe(other.id);
    const closed = await sub.done.then(() => undefined, (e) => e);
    expect(closed).toMatchObject({ code: 4403, reason: 'Token expired' });
    await client.dispose();
  });
});

describe('a refreshSession running on a socket that is about to close', () => {
  // The refresh rotates the refresh token in the database; were its answer lost with the socket, the
  // client would present the used one next time, and that ends the session (theft detection). So a
  // socket closes only once the refresh running on it is answered. The refresh is held up here by a
  // lock on its session's row, taken by the test.
  const refreshFrame = (refreshToken: string) => ({ id: 'refresh', type: 'subscribe', payload: { query: REFRESH, variables: { r: refreshToken } } });
  const holdSession = (refreshToken: string) => holdRow('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [refreshToken.split('.')[0]]);
  /** Sends a refresh on `socket` with its session's row held: it waits there until `release`. */
  async function heldRefresh(socket: RawSocket, refreshToken: string): Promise<() => Promise<void>> {
    const release = await holdSession(refreshToken);
    socket.send(refreshFrame(refreshToken));
    await reachTheLock();
    return release;
  }
  const answerTo = (socket: RawSocket, id: string) => socket.next((f) => f.id === id && (f.type === 'next' || f.type === 'error'), 15_000);

  it('is answered before the socket closes when its instance stops (1001), and the rotated token works on another instance', async () => {
    const stopping = await startServer();
    const ada = await signUpTokens();
    const socket = await rawSocket(stopping.wsUrl, ada.token);
    const late = await rawSocket(stopping.wsUrl, null); // connected before the stop, initialised after it
    const release = await heldRefresh(socket, ada.refreshToken);
    let stopped: Promise<void>;
    try {
      stopped = stopping.stop();
      await new Promise((r) => setTimeout(r, 300));
      expect(socket.closed()).toBeUndefined(); // waiting for the refresh's answer
      socket.send({ id: 'later', type: 'subscribe', payload: { query: ME } });
      const refused = await answerTo(socket, 'later');
      expect(refused.payload[0].extensions.code).toBe('SERVICE_UNAVAILABLE'); // not UNAUTHENTICATED: the session stands
      // Meanwhile nothing new is taken on: no socket is initialised, no connection accepted.
      late.send({ type: 'connection_init', payload: { authorization: `Bearer ${ada.token}` } });
      expect(await late.whenClosed).toBe(1001);
      await expect(rawSocket(stopping.wsUrl, ada.token)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await release();
    }
    const answer = await answerTo(socket, 'refresh');
    expect(answer.type).toBe('next');
    const next = answer.payload.data.refreshSession;
    expect(next.user.id).toBe(ada.id);
    expect(await socket.whenClosed).toBe(1001);
    await stopped!;
    expect((await refresh(next.refreshToken)).data.refreshSession.user.id).toBe(ada.id); // on the instance still up
  });

  it('changes nothing when its answer cannot reach the client: the refresh token it was given still works', async () => {
    const ada = await signUpTokens();
    const socket = await rawSocket(server.wsUrl, ada.token);
    const release = await heldRefresh(socket, ada.refreshToken);
    try {
      socket.close(); // the client goes away: the answer has nowhere to go
      await socket.whenClosed;
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await release();
    }
    await new Promise((r) => setTimeout(r, 300)); // the refresh runs on, and must roll back
    const again = await refresh(ada.refreshToken);
    expect(again.errors).toBeUndefined(); // not "already used": the session stands
    expect(again.data.refreshSession.user.id).toBe(ada.id);
  });

  it('ends nothing when a refresh token already rotated arrives with no one left to answer (a refresh its client gave up and sent again elsewhere)', async () => {
    const ada = await signUpTokens();
    // The client's retry, elsewhere, rotated the token; the refresh it gave up (its instance
    // stalled) runs only now, with the token rotated away, and its client is gone.
    const rotated = (await refresh(ada.refreshToken)).data.refreshSession;
    const socket = await rawSocket(server.wsUrl, ada.token);
    const release = await heldRefresh(socket, ada.refreshToken);
    try {
      socket.close();
      await socket.whenClosed;
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await release();
    }
    await new Promise((r) => setTimeout(r, 300)); // the one given up runs on
    const again = await refresh(rotated.refreshToken);
    expect(again.errors).toBeUndefined(); // before: "Session ended or refresh token unknown" (revoked as reuse)
    expect(again.data.refreshSession.user.id).toBe(ada.id);
  });

  it('gives up waiting for a held session row after a second, changing nothing (SERVICE_UNAVAILABLE, answered before the socket closes)', async () => {
    const stopping = await startServer();
    const ada = await signUpTokens();
    const socket = await rawSocket(stopping.wsUrl, ada.token);
    const release = await heldRefresh(socket, ada.refreshToken);
    try {
      const stopped = stopping.stop(); // its sockets wait up to 2 s for their answers
      const answer = await answerTo(socket, 'refresh');
      expect(answer.payload.errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      expect(answer.payload.data).toBeNull();
      expect(await socket.whenClosed).toBe(1001);
      await stopped;
    } finally {
      await release();
    }
    expect((await refresh(ada.refreshToken)).data.refreshSession.user.id).toBe(ada.id); // the token it held still works
  });

  it('renews the socket when it is answered after the old token expired: the socket stays open, its subscription goes on', async () => {
    const ada = await signUpTokens(); // 3-second tokens on this file's server
    const roomId = await createRoom(server.url, { id: ada.id, username: '', token: ada.token });
    const socket = await rawSocket(server.wsUrl, ada.token);
    socket.send({ id: 'sub', type: 'subscribe', payload: { query: MESSAGE_ADDED, variables: { roomId } } });
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    // Sent shortly before the expiry and held up past it (less than the second a refresh waits for its row).
    await new Promise((r) => setTimeout(r, Date.parse(ada.expiresAt) - Date.now() - 400));
    const release = await holdSession(ada.refreshToken);
    try {
      socket.send(refreshFrame(ada.refreshToken));
      await new Promise((r) => setTimeout(r, Date.parse(ada.expiresAt) - Date.now() + 250)); // the first token has expired
      expect(socket.closed()).toBeUndefined();
    } finally {
      await release();
    }
    const answer = await answerTo(socket, 'refresh');
    expect(answer.payload.data.refreshSession.user.id).toBe(ada.id);
    await must(server.url, `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }`, { i: { roomId, body: 'after the renewal' } }, answer.payload.data.refreshSession.token);
    const delivered = await socket.next((f) => f.id === 'sub' && f.type === 'next');
    expect(delivered.payload.data.messageAdded.body).toBe('after the renewal');
    expect(socket.closed()).toBeUndefined();
    socket.close();
  });
});

describe('a user who no longer exists', () => {
  it('is UNAUTHENTICATED over HTTP and refused with 4403 before connection_ack', async () => {
    const gone = await signUpTokens();
    await must(server.url, ME, {}, gone.token); // found standing: its next requests are checked while they run
    await server.app.db.dataSource.query(`DELETE FROM users WHERE id = $1`, [gone.id]);

    expect(codeOf(await gql(server.url, `mutation { createRoom(input: { name: "x", kind: PUBLIC }) { id } }`, {}, gone.token))).toBe('UNAUTHENTICATED');
    expect((await gql(server.url, ME, {}, gone.token)).data.me).toBeNull();
    expect(codeOf(await refresh(gone.refreshToken))).toBe('UNAUTHENTICATED');

    const acked: boolean[] = [];
    const client = createClient({ url: server.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { authorization: `Bearer ${gone.token}` }, on: { connected: () => acked.push(true) } });
    const refused = await collect(client, MESSAGE_ADDED, { roomId: '00000000-0000-4000-8000-000000000000' }).done.then(() => undefined, (e) => e);
    expect(refused?.code).toBe(4403);
    expect(acked).toEqual([]);
    await client.dispose();
  });

  it('has the sockets they opened before the deletion closed with 4403', async () => {
    const [owner, gone] = await Promise.all([signUpTokens(), signUpTokens()]);
    const roomId = await createRoom(server.url, { id: owner.id, username: '', token: owner.token });
    await must(server.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, gone.token);
    // Not lazy: the socket stays open if the subscription ends first (the room's hub may notice
    // the lost membership before the session sweep notices the lost user), so its close is seen.
    const closes: number[] = [];
    const client = wsClient(server.wsUrl, { authorization: `Bearer ${gone.token}` }, { lazy: false, onNonLazyError: () => undefined, on: { closed: (e) => void closes.push((e as { code: number }).code) } });
    collect(client, MESSAGE_ADDED, { roomId }).done.catch(() => undefined);
    await waitFor(() => server.app.hubs.listeners(roomId) === 1);
    await server.app.db.dataSource.query(`DELETE FROM users WHERE id = $1`, [gone.id]);
    await waitFor(() => closes.length > 0);
    expect(closes).toEqual([4403]);
    await client.dispose();
  });
});

describe('sessions found standing (which HTTP requests spend budgets while their session is checked)', () => {
  const standing = (sessions: TestServer['app']['services']['sessions'], token: string) => sessions.viewerOf(`Bearer ${token}`);

  it('counts a session only once a check found it standing, and no longer once it ended here, elsewhere or in the database', async () => {
    const twin = await startServer({ JWT_TTL_SECONDS: '3', SESSION_SWEEP_MS: '200' });
    try {
      const { sessions } = server.app.services;
      const [here, elsewhere, inSql] = await Promise.all([signUpTokens(), signUpTokens(), signUpTokens()]);
      for (const user of [here, elsewhere, inSql]) {
        const first = standing(sessions, user.token);
        expect(first.standing).toBe(false); // new on this instance
        expect(await first.check!.result()).toMatchObject({ id: user.id });
        expect(standing(sessions, user.token).standing).toBe(true);
      }
      await must(server.url, 'mutation { logOut }', {}, here.token);
      expect(standing(sessions, here.token).standing).toBe(false);
      await must(twin.url, 'mutation { logOut }', {}, elsewhere.token);
      await waitFor(() => !standing(sessions, elsewhere.token).standing); // the revocation signal
      await server.app.db.dataSource.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, [inSql.id]); // no signal
      expect(standing(sessions, inSql.token).standing).toBe(true); // not known yet; its check says otherwise:
      expect(await standing(sessions, inSql.token).check!.result()).toBeNull();
      expect(standing(sessions, inSql.token).standing).toBe(false);
    } finally {
      await twin.stop();
    }
  });
});

describe('a refused token', () => {
  // Tokens that live long enough for the whole test, however slow the machine.
  let roomy: TestServer;
  beforeAll(async () => {
    roomy = await startServer();
  });
  afterAll(() => roomy.stop());

  /** An answer over HTTP, with its WWW-Authenticate header. */
  async function answer(query: string, token?: string) {
    const res = await fetch(roomy.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query }),
    });
    return { challenge: res.headers.get('www-authenticate'), body: (await res.json()) as GqlResult };
  }
  const REFUSED = 'Bearer error="invalid_token"';
  const endInSql = (userId: string) => roomy.app.db.dataSource.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, [userId]);

  it('is said in the answer (WWW-Authenticate, RFC 6750) also where the operation runs signed out: malformed, logged out, or ended while found standing', async () => {
    const [ada, bob, cy] = await Promise.all([signUp(roomy.url), signUp(roomy.url), signUp(roomy.url)]);
    const room = await createRoom(roomy.url, cy);
    expect(await answer(ME)).toEqual({ challenge: null, body: { data: { me: null } } });
    expect(await answer(ME, ada.token)).toEqual({ challenge: null, body: { data: { me: { id: ada.id } } } });
    expect(await answer(ME, 'garbage')).toEqual({ challenge: REFUSED, body: { data: { me: null } } });
    // No bearer token presented (RFC 6750: no error code for a request without one).
    for (const authorization of ['', 'Basic dXNlcjpwYXNz', 'Bearer ']) {
      const res = await fetch(roomy.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization }, body: JSON.stringify({ query: ME }) });
      expect([authorization, res.headers.get('www-authenticate')]).toEqual([authorization, null]);
    }
    // Found standing by these answers, then ended in the database (no signal): its check, run beside the operation, says so,
    // also for an operation refused before it executes.
    const dan = await signUp(roomy.url);
    expect((await answer(ME, dan.token)).challenge).toBeNull();
    await Promise.all([endInSql(ada.id), endInSql(dan.id)]);
    expect(await answer(ME, ada.token)).toEqual({ challenge: REFUSED, body: { data: { me: null } } });
    const invalid = await answer('{ me { nope } }', dan.token);
    expect([invalid.challenge, codeOf(invalid.body)]).toEqual([REFUSED, 'GRAPHQL_VALIDATION_FAILED']);
    // A send checks its session in its own statement.
    expect((await answer(ME, bob.token)).challenge).toBeNull();
    await endInSql(bob.id);
    const sent = await answer(`mutation { sendMessage(input: { roomId: "${room}", body: "hi" }) { id } }`, bob.token);
    expect([sent.challenge, codeOf(sent.body)]).toEqual([REFUSED, 'UNAUTHENTICATED']);
    // Logged out: not standing any more, checked before the operation.
    await must(roomy.url, 'mutation { logOut }', {}, cy.token);
    expect(await answer(ME, cy.token)).toEqual({ challenge: REFUSED, body: { data: { me: null } } });
  });
});

describe('session checks', () => {
  it('answers the checks of one turn in one statement and a lone one by its own, each for its own session', async () => {
    const { sessions } = server.app.services;
    const [ada, bob, cyd] = await Promise.all([signUpTokens(), signUpTokens(), signUpTokens()]);
    const viewer = (user: Tokens) => sessions.viewerOf(`Bearer ${user.token}`).claimed!;
    await server.app.db.dataSource.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, [bob.id]);
    const adaInCyds = { ...viewer(ada), sessionId: viewer(cyd).sessionId }; // a session is its own user's only
    const liveOf = jest.spyOn(sessions as unknown as { liveOf: (viewers: unknown[]) => Promise<boolean[]> }, 'liveOf');
    try {
      expect(await Promise.all([viewer(ada), viewer(bob), adaInCyds, viewer(cyd)].map((v) => sessions.isLive(v)))).toEqual([true, false, false, true]);
      expect(liveOf.mock.calls.map(([viewers]) => viewers.length)).toEqual([4]);
      for (const [v, live] of [[viewer(ada), true], [viewer(bob), false], [adaInCyds, false], [viewer(cyd), true]] as const) {
        expect(await sessions.isLive(v)).toBe(live);
      }
      expect(liveOf.mock.calls.map(([viewers]) => viewers.length)).toEqual([4, 1, 1, 1, 1]);
    } finally {
      liveOf.mockRestore();
    }
  });
});

describe("a send's session, checked by the send's own statement (an HTTP request of a session found standing)", () => {
  const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id body } }`;
  const isStanding = (on: TestServer, token: string) => on.app.services.sessions.viewerOf(`Bearer ${token}`).standing;
  /** A user whose session `on` found standing (a query checked it), in a room of theirs or `roomId`. */
  async function standingUser(on: TestServer, roomId?: string) {
    const user = await signUp(on.url);
    const room = roomId ?? (await createRoom(on.url, user));
    if (roomId) await must(on.url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, user.token);
    await must(on.url, ME, {}, user.token);
    expect(isStanding(on, user.token)).toBe(true);
    return { user, roomId: room };
  }
  const endInDatabase = (on: TestServer, userId: string) => on.app.db.dataSource.query(`UPDATE sessions SET revoked_at = now() WHERE user_id = $1`, [userId]); // no signal

  it('makes no check of its own, a retry answered by the unique index included; other requests still make theirs', async () => {
    const { user, roomId } = await standingUser(server);
    const isLive = jest.spyOn(server.app.services.sessions, 'isLive');
    try {
      const input = { roomId, body: 'one', clientId: unique('c') };
      const first = await must(server.url, SEND, { input }, user.token);
      expect(await must(server.url, SEND, { input }, user.token)).toEqual(first);
      expect(isLive).not.toHaveBeenCalled();
      expect(isStanding(server, user.token)).toBe(true);
      await must(server.url, ME, {}, user.token);
      expect(isLive).toHaveBeenCalledTimes(1);
    } finally {
      isLive.mockRestore();
    }
  });

  describe('once the session ended without a signal', () => {
    const own = useServer({ SENDS_PER_USER_PER_10S: '1' });
    const stored = async (roomId: string) => Number((await own.app.db.dataSource.query('SELECT count(*)::int AS n FROM messages WHERE room_id = $1', [roomId]))[0].n);

    it("is UNAUTHENTICATED, stores nothing, and gives the user's budgets back", async () => {
      const { user, roomId } = await standingUser(own);
      await endInDatabase(own, user.id);
      expect(codeOf(await gql(own.url, SEND, { input: { roomId, body: 'after the end' } }, user.token))).toBe('UNAUTHENTICATED');
      expect(await stored(roomId)).toBe(0);
      expect(isStanding(own, user.token)).toBe(false);
      // The budget of one send per 10 s is whole: a new session's send goes through, its next does not.
      const again = await must(own.url, `mutation($i: LogInInput!) { logIn(input: $i) { token } }`, { i: { username: user.username, password: PASSWORD } });
      await must(own.url, SEND, { input: { roomId, body: 'signed in again' } }, again.logIn.token);
      expect(codeOf(await gql(own.url, SEND, { input: { roomId, body: 'one too many' } }, again.logIn.token))).toBe('RATE_LIMITED');
      expect(await stored(roomId)).toBe(1);
    });

    it('is UNAUTHENTICATED for a reply, and for one that would be refused for what it names or for bad input: nothing tells of the room', async () => {
      const owner = await signUp(own.url);
      const roomId = await createRoom(own.url, owner);
      const parent = await send(own.url, owner, roomId, 'a thread');
      const inputs = [
        { roomId, body: 'a reply', parentId: parent.id },
        { roomId, body: 'to no thread', parentId: '00000000-0000-4000-8000-000000000000' }, // BAD_USER_INPUT for a session that stands
        { roomId: '00000000-0000-4000-8000-000000000000', body: 'into no room' }, // FORBIDDEN for one that stands
        { roomId, body: '' }, // BAD_USER_INPUT for one that stands
      ];
      for (const input of inputs) {
        const { user } = await standingUser(own, roomId);
        await endInDatabase(own, user.id);
        // Its first send (checked by the statement), its next (checked first), and one without a token.
        for (const token of [user.token, user.token, undefined]) expect([input, codeOf(await gql(own.url, SEND, { input }, token))]).toEqual([input, 'UNAUTHENTICATED']);
      }
      expect(await stored(roomId)).toBe(1);
    });

    it('runs the rest of a document signed out once its logOut ended the session: a send after it is UNAUTHENTICATED and stores nothing', async () => {
      const { user, roomId } = await standingUser(own);
      const both = await gql(own.url, `mutation($input: SendMessageInput!) { l: logOut s: sendMessage(input: $input) { id } }`, { input: { roomId, body: 'after my logOut' } }, user.token);
      expect(codeOf(both)).toBe('UNAUTHENTICATED');
      expect(await stored(roomId)).toBe(0);
      expect(codeOf(await gql(own.url, ME, {}, user.token))).toBeUndefined(); // signed out: me is null
      expect((await gql(own.url, ME, {}, user.token)).data).toEqual({ me: null });
    });
  });
});

describe('a send the database cannot serve', () => {
  const slow = useServer({ DATABASE_TIMEOUT_MS: '1000' });

  it('answers SERVICE_UNAVAILABLE with HTTP 503 whether its session was checked first or by its statement', async () => {
    const owner = await signUp(slow.url);
    const roomId = await createRoom(slow.url, owner);
    const post = async (token: string) => {
      const res = await fetch(slow.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`, variables: { input: { roomId, body: 'into a held room' } } }),
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), code: codeOf((await res.json()) as GqlResult) };
    };
    const fresh = await must(slow.url, `mutation($i: LogInInput!) { logIn(input: $i) { token } }`, { i: { username: owner.username, password: 'correct horse battery' } });
    const release = await holdRow('SELECT 1 FROM rooms WHERE id = $1 FOR UPDATE', [roomId]); // the statement waits, then is cancelled
    try {
      expect(await post(fresh.logIn.token)).toEqual({ status: 503, retryAfter: '1', code: 'SERVICE_UNAVAILABLE' }); // new here: checked first
      expect(await post(owner.token)).toEqual({ status: 503, retryAfter: '1', code: 'SERVICE_UNAVAILABLE' }); // standing: checked by the statement
    } finally {
      await release();
    }
  });
});

describe('the purge of sessions that can no longer be used', () => {
  it('deletes revoked ones after a day, and expired ones once their access tokens have expired too; keeps the others', async () => {
    const users = await Promise.all([0, 1, 2, 3, 4].map(() => signUpTokens()));
    const [revokedLong, revokedLately, expiredLong, expiredLately, live] = users;
    const db = server.app.db.dataSource;
    await db.query(`UPDATE sessions SET revoked_at = now() - interval '25 hours' WHERE user_id = $1`, [revokedLong.id]);
    await db.query(`UPDATE sessions SET revoked_at = now() - interval '23 hours' WHERE user_id = $1`, [revokedLately.id]);
    await db.query(`UPDATE sessions SET refresh_expires_at = now() - interval '1 minute' WHERE user_id = $1`, [expiredLong.id]);
    // Expired just now: JWT_TTL_SECONDS is 3 here, so an access token issued with it may still be valid.
    await db.query(`UPDATE sessions SET refresh_expires_at = now() WHERE user_id = $1`, [expiredLately.id]);
    await server.app.services.sessions.purge(); // (or an instance's own timed purge, which may come first: what is left is the same)
    const left: Array<{ user_id: string }> = await db.query(`SELECT user_id FROM sessions WHERE user_id = ANY($1::uuid[])`, [users.map((u) => u.id)]);
    expect(left.map((r) => r.user_id).sort()).toEqual([revokedLately.id, expiredLately.id, live.id].sort());
    // A purged session's tokens are refused as a revoked one's; the others are untouched.
    expect(codeOf(await refresh(expiredLong.refreshToken))).toBe('UNAUTHENTICATED');
    expect(codeOf(await refresh(revokedLong.refreshToken))).toBe('UNAUTHENTICATED');
    expect((await gql(server.url, ME, {}, live.token)).data.me).toEqual({ id: live.id });
    expect(codeOf(await refresh(live.refreshToken))).toBeUndefined();
  });
});
