import WebSocket from 'ws';
import { collect, createRoom, gql, MESSAGE_ADDED, signUp, startServer, waitFor, wsClient, type TestServer } from '../support/harness';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

describe('CORS', () => {
  it('lets browsers on any origin call the API by default', async () => {
    const res = await fetch(server.url, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toMatch(/authorization/i);
  });

  it('allows only the listed origins when CORS_ORIGINS is set', async () => {
    const strict = await startServer({ CORS_ORIGINS: 'https://app.example.com, https://admin.example.com' });
    try {
      const ask = (origin: string) => fetch(strict.url, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
      expect((await ask('https://admin.example.com')).headers.get('access-control-allow-origin')).toBe('https://admin.example.com');
      expect((await ask('https://evil.example.com')).headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await strict.stop();
    }
  });
});

describe('WebSocket limits', () => {
  it('closes a socket that sends a message over 1 MiB, and the server goes on', async () => {
    const ada = await signUp(server.url);
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${ada.token}`, junk: 'x'.repeat(1024 * 1024 + 10) } }));
    expect(await closed).toBe(1009);
    expect((await fetch(server.url.replace('/graphql', '/healthz'))).status).toBe(200);
  });

  it('refuses more than 100 subscriptions on one connection with BAD_REQUEST', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const client = wsClient(server.wsUrl, ada);
    const subs = Array.from({ length: 100 }, () => collect(client, MESSAGE_ADDED, { roomId }));
    await waitFor(() => server.app.hubs.listeners(roomId) === 100, 10_000, () => `listeners: ${server.app.hubs.listeners(roomId)}`);
    const extra = collect(client, MESSAGE_ADDED, { roomId });
    const error = await extra.done.then(() => undefined, (e) => e);
    expect(error?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    subs.forEach((s) => s.stop());
    await waitFor(() => server.app.hubs.listeners(roomId) === 0);
    await client.dispose();
  });
});

describe('operation cost', () => {
  const bomb = (n: number) =>
    `query($r: ID!) { ${Array.from({ length: n }, (_, i) => `p${i}: messages(roomId: $r, last: 200) { edges { node { id body author { username } } } }`).join(' ')} }`;

  it('refuses an operation of many large pages with 400 BAD_REQUEST before running it', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const spy = jest.spyOn(server.app.services.messages, 'page');
    const result = await gql(server.url, bomb(50), { r: roomId }, ada.token);
    expect(result.status).toBe(400);
    expect(result.errors![0].extensions).toEqual({ code: 'BAD_REQUEST' });
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  it('runs a few pages of ordinary size', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const result = await gql(server.url, bomb(3), { r: roomId }, ada.token);
    expect(result.errors).toBeUndefined();
  });

  it('refuses the same operation over WebSocket', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const client = wsClient(server.wsUrl, ada);
    const error = await collect(client, bomb(50), { r: roomId }).done.then(() => undefined, (e) => e);
    expect(error?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    await client.dispose();
  });
});

describe('mutation cost', () => {
  it('refuses hundreds of aliased sends in one request and writes nothing', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const sends = Array.from({ length: 300 }, (_, i) => `s${i}: sendMessage(input: { roomId: $r, body: "spam" }) { id }`).join(' ');
    const result = await gql(server.url, `mutation($r: ID!) { ${sends} }`, { r: roomId }, ada.token);
    expect(result.errors![0].extensions).toEqual({ code: 'BAD_REQUEST' });
    const room = await gql(server.url, `query($r: ID!) { room(id: $r) { lastSeq } }`, { r: roomId }, ada.token);
    expect(room.data.room.lastSeq).toBe(0);
  });

  it('refuses dozens of aliased sign-ups (each a slow password hash)', async () => {
    const signUps = Array.from({ length: 30 }, (_, i) => `u${i}: signUp(input: { username: "x${i}_${Date.now()}", password: "password123" }) { token }`).join(' ');
    const result = await gql(server.url, `mutation { ${signUps} }`);
    expect(result.errors![0].extensions).toEqual({ code: 'BAD_REQUEST' });
  });
});
