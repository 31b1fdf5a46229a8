import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from '../faults/support/backing';
import { collect, createRoom, gql, send, signUp, startServer, waitFor, wsClient, type GqlResult, type TestServer } from '../support/harness';

/** The throwaway servers of `test/support/servers.js` (plain CommonJS, shared with jest's global setup). */
interface Throwaway {
  url: string;
  port: number;
  start(): unknown;
  stop(): unknown;
  destroy(): unknown;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const servers = require('../support/servers.js') as {
  freePort(): Promise<number>;
  startPostgres(): Promise<Throwaway>;
  startRedis(): Promise<Throwaway>;
};

let server: TestServer;
let base: string;
beforeAll(async () => {
  server = await startServer();
  base = server.url.replace(/\/graphql$/, '');
});
afterAll(() => server.stop());
afterEach(() => jest.restoreAllMocks());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What a leaked stack trace looks like: `at fn (/path/file.js:12:34)` or `at /path/file.js:12:34`. */
const STACK_LINE = /\bat .*:\d+:\d+/;

const post = (body: string, headers: Record<string, string> = {}) =>
  fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

const readyz = async (origin: string) => {
  const res = await fetch(`${origin}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, string> };
};
/** `/readyz` once it answers as `ok` wants (a dependency stopped or back). */
const readyzWhen = (origin: string, ok: (r: Awaited<ReturnType<typeof readyz>>) => boolean) =>
  waitFor(async () => {
    const r = await readyz(origin);
    return ok(r) ? r : undefined;
  });

/** Asserts that a response body is JSON errors with a code and nothing internal. */
/**
 * Writes `request` on a raw TCP connection and reads until the server closes it or 5 s pass;
 * `reply` may answer what has come so far (once) with more to write.
 */
function exchange(request: string, reply?: (text: string) => string | undefined): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname, () => socket.write(request));
    let text = '';
    let replied = false;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, 5000);
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const more = replied ? undefined : reply?.(text);
      if (more !== undefined) {
        replied = true;
        socket.write(more);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.on('error', reject);
  });
}

function expectCleanErrors(text: string) {
  const body = JSON.parse(text) as GqlResult;
  expect(body.errors?.length).toBeGreaterThan(0);
  for (const error of body.errors!) expect(typeof error.extensions?.code).toBe('string');
  expect(text).not.toMatch(STACK_LINE);
  expect(text).not.toMatch(/stacktrace|node_modules|SyntaxError/i);
  return body;
}

describe('health and metrics', () => {
  it('answers GET /healthz with 200', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers GET /readyz with 200 and both dependencies up', async () => {
    await waitFor(async () => (await readyz(base)).status === 200);
    expect(await readyz(base)).toEqual({ status: 200, body: { status: 'ready', database: 'up', pubsub: 'up' } });
  });

  it('answers GET /metrics in Prometheus text format, counting open WebSockets', async () => {
    const scrape = async () => {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      return res.text();
    };
    const count = (text: string) => Number(/^chat_websocket_connections (\d+)$/m.exec(text)?.[1]);
    const first = await scrape();
    expect(first).toContain('# TYPE chat_websocket_connections gauge');
    expect(first).toContain('# HELP chat_websocket_connections');
    const before = count(first);
    const ada = await signUp(server.url);
    const client = wsClient(server.wsUrl, ada, { lazy: false });
    try {
      await waitFor(async () => count(await scrape()) === before + 1);
    } finally {
      await client.dispose();
    }
    await waitFor(async () => count(await scrape()) === before);
  });

  it('answers an unknown path with 404 and JSON errors', async () => {
    const res = await fetch(`${base}/nowhere`);
    expect(res.status).toBe(404);
    expectCleanErrors(await res.text());
  });
});

describe('readiness follows the dependencies', () => {
  it('refuses to start when the database is unreachable', async () => {
    const port = await servers.freePort();
    await expect(startServer({ DATABASE_URL: `postgresql://app@127.0.0.1:${port}/chat` })).rejects.toThrow();
  });

  it('refuses to start on a port in use or an address it cannot have, naming HOST and PORT', async () => {
    const taken = new URL(base).port;
    await expect(startServer({ PORT: taken, HOST: '127.0.0.1' })).rejects.toThrow(`cannot listen on HOST=127.0.0.1 PORT=${taken}: listen EADDRINUSE`);
    await expect(startServer({ HOST: '192.0.2.1' })).rejects.toThrow(/^cannot listen on HOST=192\.0\.2\.1 PORT=0: listen EADDRNOTAVAIL/); // TEST-NET-1: no machine's own
  });

  it('answers 503 with database down while PostgreSQL is stopped, and 200 once it is back', async () => {
    const pg = await servers.startPostgres();
    let app: TestServer | undefined;
    try {
      app = await startServer({ DATABASE_URL: pg.url });
      const origin = app.url.replace(/\/graphql$/, '');
      await readyzWhen(origin, (r) => r.status === 200);
      pg.stop();
      const down = await readyzWhen(origin, (r) => r.status === 503);
      expect(down.body).toEqual({ status: 'unavailable', database: 'down', pubsub: 'up' });
      pg.start();
      const up = await readyzWhen(origin, (r) => r.status === 200);
      expect(up.body).toEqual({ status: 'ready', database: 'up', pubsub: 'up' });
    } finally {
      await app?.stop();
      pg.destroy();
    }
  });

  it('is not ready while the database takes no writes (a failed-over primary), and answers sends SERVICE_UNAVAILABLE meanwhile', async () => {
    const pg = await servers.startPostgres();
    let app: TestServer | undefined;
    // As an operator: on a connection that may write while the database's default is read-only.
    const admin = (text: string) => sql(`${pg.url}?options=${encodeURIComponent('-c default_transaction_read_only=off')}`, text);
    const endConnections = () => admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'chat' AND pid <> pg_backend_pid()`);
    const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }`;
    try {
      app = await startServer({ DATABASE_URL: pg.url });
      const origin = app.url.replace(/\/graphql$/, '');
      const ada = await signUp(app.url);
      const roomId = await createRoom(app.url, ada);
      await admin(`ALTER DATABASE chat SET default_transaction_read_only = on`);
      await endConnections();
      const down = await readyzWhen(origin, (r) => r.status === 503);
      expect(down.body).toEqual({ status: 'unavailable', database: 'down', pubsub: 'up' });
      const refused = await waitFor(async () => {
        const r = await gql(app!.url, SEND, { input: { roomId, body: 'hello' } }, ada.token);
        return r.errors?.[0]?.extensions?.code === 'SERVICE_UNAVAILABLE' ? r : undefined; // the first may meet a terminated connection
      });
      expect(refused.status).toBe(503);
      await admin(`ALTER DATABASE chat SET default_transaction_read_only = off`);
      await endConnections();
      await readyzWhen(origin, (r) => r.status === 200);
      await waitFor(async () => (await gql(app!.url, SEND, { input: { roomId, body: 'again' } }, ada.token)).data?.sendMessage);
    } finally {
      await app?.stop();
      pg.destroy();
    }
  });

  it('answers every request that failed with the database down with its own request id, the one in its x-request-id header', async () => {
    const pg = await servers.startPostgres();
    let a: TestServer | undefined;
    let b: TestServer | undefined;
    try {
      [a, b] = await Promise.all([startServer({ DATABASE_URL: pg.url }), startServer({ DATABASE_URL: pg.url })]);
      const ada = await signUp(a.url); // a has seen the session standing; b has not, and checks it before running the request
      pg.stop();
      for (const app of [a, b]) {
        const answers = await Promise.all(
          Array.from({ length: 6 }, async () => {
            const res = await fetch(app.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ada.token}` }, body: JSON.stringify({ query: '{ me { id } }' }) });
            const body = (await res.json()) as GqlResult;
            return { status: res.status, header: res.headers.get('x-request-id'), code: body.errors?.[0]?.extensions?.code, id: body.errors?.[0]?.extensions?.requestId };
          }),
        );
        expect(answers.map((x) => [x.status, x.code])).toEqual(answers.map(() => [503, 'SERVICE_UNAVAILABLE']));
        expect(answers.filter((x) => x.id !== x.header)).toEqual([]);
        expect(new Set(answers.map((x) => x.id)).size).toBe(6);
      }
    } finally {
      await Promise.all([a?.stop(), b?.stop()]);
      pg.destroy();
    }
  });

  it('answers 503 with pubsub down while Redis is stopped (database and pub/sub reachable, or not ready), also in /metrics, and 200 once it is back', async () => {
    const redis = await servers.startRedis();
    let app: TestServer | undefined;
    let lenient: TestServer | undefined;
    try {
      [app, lenient] = await Promise.all([startServer({ REDIS_URL: redis.url }), startServer({ REDIS_URL: redis.url, READY_WITHOUT_PUBSUB: 'true' })]);
      const [origin, lenientOrigin] = [app, lenient].map((s) => s.url.replace(/\/graphql$/, ''));
      const pubsubUp = async () => Number(/^chat_pubsub_up (\d+)$/m.exec(await (await fetch(`${origin}/metrics`)).text())?.[1]);
      await readyzWhen(origin, (r) => r.body.pubsub === 'up');
      expect(await pubsubUp()).toBe(1);
      await redis.stop();
      const down = await readyzWhen(origin, (r) => r.body.pubsub === 'down');
      expect(down).toEqual({ status: 503, body: { status: 'unavailable', database: 'up', pubsub: 'down' } });
      expect(await pubsubUp()).toBe(0);
      // READY_WITHOUT_PUBSUB: the database alone decides.
      expect(await readyzWhen(lenientOrigin, (r) => r.body.pubsub === 'down')).toEqual({ status: 200, body: { status: 'ready', database: 'up', pubsub: 'down' } });
      await redis.start();
      const up = await readyzWhen(origin, (r) => r.body.pubsub === 'up');
      expect(up).toEqual({ status: 200, body: { status: 'ready', database: 'up', pubsub: 'up' } });
    } finally {
      await Promise.all([app?.stop(), lenient?.stop()]);
      await redis.destroy();
    }
  });
});

describe('GraphiQL', () => {
  it('redirects GET / to /graphql', async () => {
    const res = await fetch(`${base}/`, { redirect: 'manual' });
    expect([301, 302, 303, 307, 308]).toContain(res.status);
    expect(res.headers.get('location')).toBe('/graphql');
  });

  it('serves GraphiQL to a browser with nothing loaded from another origin', async () => {
    const res = await fetch(server.url, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain('<div id="root">');
    expect(html).not.toMatch(/\b(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import\s+url\(\s*["']?https?:/i);
  });

  it('does not serve GraphiQL nor answer introspection when INTROSPECTION=false', async () => {
    const closed = await startServer({ INTROSPECTION: 'false' });
    try {
      const page = await fetch(closed.url, { headers: { accept: 'text/html' } });
      expect(page.status).toBe(404);
      expect(page.headers.get('content-type') ?? '').not.toMatch(/text\/html/);
      expect(await page.text()).not.toContain('<div id="root">');
      const schema = await gql(closed.url, `{ __schema { types { name } } }`);
      expect(schema.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
      expect(schema.errors?.[0].message).toBe('Introspection is disabled on this server');
      expect(schema.data ?? null).toBeNull();
      const type = await gql(closed.url, `{ __type(name: "Room") { fields { name } } }`);
      expect(type.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
      // Ordinary operations still work.
      expect(await gql(closed.url, `{ me { id } }`)).toEqual({ status: 200, data: { me: null } });
    } finally {
      await closed.stop();
    }
  });

  it('sends the GraphiQL page gzipped to browsers that accept it, and 304 when unchanged', async () => {
    const http = await import('node:http');
    const get = (headers: Record<string, string>) =>
      new Promise<{ status: number; headers: Record<string, unknown>; bytes: number }>((resolve, reject) => {
        http.get(server.url, { headers: { accept: 'text/html', ...headers } }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, bytes }));
        }).on('error', reject);
      });
    const zipped = await get({ 'accept-encoding': 'gzip' });
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.bytes).toBeLessThan(4_000_000);
    const again = await get({ 'accept-encoding': 'gzip', 'if-none-match': String(zipped.headers.etag) });
    expect(again.status).toBe(304);
  });

  it('answers introspection by default', async () => {
    const result = await gql(server.url, `{ __type(name: "Room") { name } }`);
    expect(result.data).toEqual({ __type: { name: 'Room' } });
  });
});

describe('GraphQL over HTTP', () => {
  it('answers a malformed JSON body with 400 and JSON errors without a stack trace', async () => {
    const res = await post('{"query": "{ me { id } ');
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/json/);
    const body = expectCleanErrors(await res.text());
    expect(body.errors![0].extensions!.code).toBe('BAD_REQUEST');
  });

  it.each([
    ['no query', '{}'],
    ['a query that is not a string', '{"query": 42}'],
    ['a batch (not supported)', '[{"query": "{ me { id } }"}]'],
    ['a bare JSON string', '"{ me { id } }"'],
  ])('answers a body with %s with 400 and JSON errors', async (_name, body) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/json/);
    expectCleanErrors(await res.text());
  });

  it('answers POST /graphql alike on the hot path and through the router (a trailing slash, another letter case, a query string)', async () => {
    const answer = async (path: string, body: string) => {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://app.example' }, body });
      return { status: res.status, type: res.headers.get('content-type'), cors: res.headers.get('access-control-allow-origin'), id: UUID.test(res.headers.get('x-request-id') ?? ''), body: await res.text() };
    };
    for (const body of ['{"query":"{ __typename }"}', '{"query":', JSON.stringify({ query: '{ __typename }', pad: 'x'.repeat(1_100_000) }), '[{"query":"{ __typename }"}]']) {
      const hot = await answer('/graphql', body);
      expect(hot.id).toBe(true);
      for (const path of ['/graphql/', '/GraphQL', '/graphql?x=1']) expect(await answer(path, body)).toEqual(hot);
    }
    // Nothing is served under it, as over WebSocket.
    const under = await answer('/graphql/x', '{"query":"{ __typename }"}');
    expect([under.status, JSON.parse(under.body)]).toEqual([404, { errors: [{ message: 'Not found', extensions: { code: 'NOT_FOUND' } }] }]);
  });

  it('answers a missing required variable with BAD_USER_INPUT', async () => {
    const result = await gql(server.url, 'query($id: ID!) { room(id: $id) { id } }', {});
    expect(result.status).toBe(400);
    expect(result.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('answers a body over the size limit with 413 and JSON errors', async () => {
    const res = await post(JSON.stringify({ query: '{ me { id } }', variables: { pad: 'x'.repeat(1_100_000) } }));
    expect(res.status).toBe(413);
    expectCleanErrors(await res.text());
  });

  it('answers a body declared over the size limit with 413 at once, unread, and closes the connection', async () => {
    const head = (length: number, more = '') =>
      `POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${more}\r\n`;
    // 50 MiB declared, none of it sent: the answer comes without waiting for it.
    const declared = await exchange(head(50 * 1024 * 1024));
    expect(declared.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(declared.closed).toBe(true);
    expectCleanErrors(declared.text.slice(declared.text.indexOf('\r\n\r\n') + 4));
    // Asked first (Expect: 100-continue), a body too large is refused without a 100 Continue; one within the limit is let in.
    const asked = await exchange(head(5_000_000, 'Expect: 100-continue\r\n'));
    expect(asked.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(asked.text).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/i); // tagged as every answer of /graphql is
    const body = '{"query":"{ __typename }"}';
    const small = await exchange(head(body.length, 'Expect: 100-continue\r\nConnection: close\r\n'), (text) => (text.startsWith('HTTP/1.1 100 Continue') ? body : undefined));
    expect(small.text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    // A body of exactly 1 MiB is read and answered.
    const limit = await post(`{"query":"{ __typename }","pad":"${'x'.repeat(1024 * 1024 - 35)}"}`);
    expect(limit.status).toBe(200);
  });

  it('answers a chunked body 413 once it passes the size limit, without waiting for its end, and reads one within it', async () => {
    const head = 'POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
    const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    // Over the limit by one chunk, and never ended: the answer comes all the same.
    const pad = `{"query":"{ __typename }","pad":"${'x'.repeat(1024 * 1024)}`;
    const over = await exchange(head + chunk(pad.slice(0, 600_000)) + chunk(pad.slice(600_000)));
    expect(over.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(over.text).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/i);
    expect(over.closed).toBe(true);
    expectCleanErrors(over.text.slice(over.text.indexOf('\r\n\r\n') + 4));
    // Within it, in pieces: read and answered.
    const body = `{"query":"{ __typename }","pad":"${'y'.repeat(1024 * 1024 - 35)}"}`;
    const within = await exchange(head.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n') + chunk(body.slice(0, 500_000)) + chunk(body.slice(500_000)) + '0\r\n\r\n');
    expect(within.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(within.text).toContain('"__typename":"Query"');
  });

  it('refuses a GET whose query string is not percent-encoded UTF-8 with BAD_REQUEST, and runs one that is', async () => {
    const get = async (search: string) => {
      const res = await fetch(`${server.url}?${search}`, { headers: { 'apollo-require-preflight': 'true' } });
      const text = await res.text();
      return { status: res.status, body: res.status === 200 ? JSON.parse(text) : expectCleanErrors(text) };
    };
    /** The operation asking for type `name`, percent-encoded; `raw` goes into the encoded name as written. */
    const operation = (name: string, raw = '') => `query=${encodeURIComponent(`{ __type(name: "${name}`)}${raw}${encodeURIComponent('") { name } }')}`;
    for (const bad of [operation('Room', '%FF'), operation('Ro', '%C3'), `${operation('Room')}&x=%E2%82`, operation('Room', '%zz')]) {
      expect(await get(bad)).toEqual({ status: 400, body: { errors: [{ message: 'Query string is not valid percent-encoded UTF-8', extensions: { code: 'BAD_REQUEST' } }] } });
    }
    expect(await get(operation('Room'))).toEqual({ status: 200, body: { data: { __type: { name: 'Room' } } } });
    expect(await get(operation('Ré'))).toEqual({ status: 200, body: { data: { __type: null } } });
  });

  it('answers what the HTTP parser refuses with its status and JSON errors, not an empty body', async () => {
    const long = await fetch(`${server.url}?query=${encodeURIComponent(`{ room(id: "${'x'.repeat(20_000)}") { id } }`)}`, { headers: { 'apollo-require-preflight': 'true' } });
    expect(long.status).toBe(431);
    expect(expectCleanErrors(await long.text()).errors![0]).toEqual({ message: 'The request line and headers are too large (over 16 KiB): send a long query by POST', extensions: { code: 'BAD_REQUEST' } });
    for (const request of ['GARBAGE\r\n\r\n', 'POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n']) {
      const answer = await exchange(request);
      expect(answer.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(answer.closed).toBe(true);
      expect(expectCleanErrors(answer.text.slice(answer.text.indexOf('\r\n\r\n') + 4)).errors![0]).toEqual({ message: 'Malformed HTTP request', extensions: { code: 'BAD_REQUEST' } });
    }
    expect((await post('{"query":"{ __typename }"}')).status).toBe(200);
    const expectation = await exchange('POST /graphql HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect(expectation.text).toMatch(/^HTTP\/1\.1 417 /);
    expect(expectCleanErrors(expectation.text.slice(expectation.text.indexOf('\r\n\r\n') + 4)).errors![0]).toEqual({ message: 'Only Expect: 100-continue is understood', extensions: { code: 'BAD_REQUEST' } });
    // Pipelined behind a request still being answered: that answer first, then the refusal.
    const body = '{"query":"{ __typename }"}';
    const pipelined = await exchange(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}GARBAGE\r\n\r\n`);
    expect(pipelined.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*"__typename":"Query"[\s\S]*HTTP\/1\.1 400 Bad Request\r\n/);
    expect(pipelined.closed).toBe(true);
  });

  it('refuses a body that is not valid UTF-8 with BAD_REQUEST, and stores nothing of it', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    const query = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id body } }';
    const before = Buffer.from(JSON.stringify({ query, variables: { i: { roomId, body: 'hi' } } }));
    const at = before.indexOf('"hi"') + 3;
    const body = Buffer.concat([before.subarray(0, at), Buffer.from([0xff, 0xc3, 0x28]), before.subarray(at)]);
    const res = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ada.token}` }, body });
    expect(res.status).toBe(400);
    const answer = expectCleanErrors(await res.text());
    expect(answer.errors![0]).toMatchObject({ message: 'Body is not valid UTF-8', extensions: { code: 'BAD_REQUEST' } });
    const history = await gql(server.url, 'query($r: ID!) { messages(roomId: $r) { edges { node { body } } } }', { r: roomId }, ada.token);
    expect(history.data?.messages.edges).toEqual([]);
  });

  it('answers an unknown field with GRAPHQL_VALIDATION_FAILED', async () => {
    const result = await gql(server.url, `{ me { id shoeSize } }`);
    expect(result.status).toBe(400);
    expect(result.errors?.[0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(result.errors?.[0].message).toContain('shoeSize');
  });

  it('answers a syntax error with GRAPHQL_PARSE_FAILED', async () => {
    const result = await gql(server.url, `{ me { id `);
    expect(result.errors?.[0].extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
  });

  it('answers application/graphql-response+json when asked', async () => {
    const res = await post(JSON.stringify({ query: '{ me { id } }' }), { accept: 'application/graphql-response+json' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/graphql-response\+json/);
    expect(await res.json()).toEqual({ data: { me: null } });
  });

  it('carries a distinct x-request-id header on every response', async () => {
    const [a, b] = await Promise.all([post(JSON.stringify({ query: '{ me { id } }' })), post(JSON.stringify({ query: '{ me { id } }' }))]);
    expect(a.headers.get('x-request-id')).toMatch(UUID);
    expect(b.headers.get('x-request-id')).toMatch(UUID);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
  });

  describe('idle connections (HTTP_KEEP_ALIVE_MS)', () => {
    /** One query on `agent`'s one connection: whether it reused the connection, and the connection. */
    const ask = (url: string, agent: http.Agent) =>
      new Promise<{ status: number; reused: boolean; socket: Socket }>((resolve, reject) => {
        const body = JSON.stringify({ query: '{ me { id } }' });
        const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket, socket: req.socket! }));
        });
        req.on('error', reject);
        req.end(body);
      });

    it('keeps a connection idle for longer than clients keep theirs (past the 6 s after which Node\'s default closes it), so the client closes it first', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await ask(server.url, agent);
        await sleep(6500);
        const second = await ask(server.url, agent);
        expect([first.status, second.status]).toEqual([200, 200]);
        expect(second.reused).toBe(true);
        expect(second.socket).toBe(first.socket);
      } finally {
        agent.destroy();
      }
    });

    it('closes a connection idle for HTTP_KEEP_ALIVE_MS, and not before', async () => {
      // 2 s: an agent keeps no connection whose server says (`Keep-Alive: timeout=1`) it may close within a second.
      const short = await startServer({ HTTP_KEEP_ALIVE_MS: '2000' });
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await ask(short.url, agent);
        await sleep(500);
        const second = await ask(short.url, agent);
        expect(second.reused).toBe(true);
        const answered = Date.now();
        await new Promise((resolve) => second.socket.once('close', resolve));
        const idle = Date.now() - answered;
        expect(idle).toBeGreaterThanOrEqual(1900);
        expect(idle).toBeLessThan(6000);
        const third = await ask(short.url, agent);
        expect([first.status, second.status, third.status]).toEqual([200, 200, 200]);
        expect(third.reused).toBe(false);
      } finally {
        agent.destroy();
        await short.stop();
      }
    });
  });

  it('tells caches to keep no answer: queries over POST and GET, mutations, refusals', async () => {
    const answers = await Promise.all([
      post(JSON.stringify({ query: '{ me { id } }' })),
      fetch(`${server.url}?query=${encodeURIComponent('{ me { id } }')}`, { headers: { 'apollo-require-preflight': 'true' } }),
      post(JSON.stringify({ query: 'mutation { logOut }' })),
      post(JSON.stringify({ query: '{ nope }' })),
    ]);
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 400]);
    for (const res of answers) expect(res.headers.get('cache-control')).toBe('no-store');
  });
});

describe('internal faults are masked', () => {
  const SECRET_FAULT = 'SELECT password_hash FROM users WHERE secret = 1';

  it('answers INTERNAL_SERVER_ERROR with the request id and no SQL or stack over HTTP', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    jest.spyOn(server.app.services.rooms, 'get').mockRejectedValue(new Error(SECRET_FAULT));
    const res = await post(JSON.stringify({ query: 'query($id: ID!) { room(id: $id) { id } }', variables: { id: roomId } }), {
      authorization: `Bearer ${ada.token}`,
    });
    const text = await res.text();
    const body = expectCleanErrors(text);
    expect(text).not.toMatch(/SELECT|password_hash|secret/i);
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0].extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: expect.stringMatching(UUID) });
    expect(body.errors![0].message).not.toContain('SELECT');
    expect(body.errors![0].path).toEqual(['room']);
    // The id in the answer is the one in the header, so a report can be matched with the logs.
    expect(body.errors![0].extensions!.requestId).toBe(res.headers.get('x-request-id'));
  });

  it('masks a fault thrown synchronously, too', async () => {
    const ada = await signUp(server.url);
    jest.spyOn(server.app.services.auth, 'me').mockImplementation(() => {
      throw new TypeError("Cannot read properties of undefined (reading 'SELECT')");
    });
    const res = await post(JSON.stringify({ query: '{ me { id } }' }), { authorization: `Bearer ${ada.token}` });
    const text = await res.text();
    const body = expectCleanErrors(text);
    expect(text).not.toMatch(/SELECT|TypeError|undefined/);
    expect(body.errors![0].extensions!.code).toBe('INTERNAL_SERVER_ERROR');
  });

  it('answers INTERNAL_SERVER_ERROR with a request id and no SQL or stack over WebSocket', async () => {
    const ada = await signUp(server.url);
    const roomId = await createRoom(server.url, ada);
    jest.spyOn(server.app.services.subscriptions, 'open').mockRejectedValue(new Error(SECRET_FAULT));
    const client = wsClient(server.wsUrl, ada);
    try {
      const sub = collect(client, `subscription($roomId: ID!) { messageAdded(roomId: $roomId) { id } }`, { roomId });
      await sub.done;
      const text = JSON.stringify(sub.results);
      expect(text).not.toMatch(/SELECT|password_hash|secret/i);
      expect(text).not.toMatch(STACK_LINE);
      expect(sub.results).toHaveLength(1);
      expect(sub.results[0].errors?.[0].extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR', requestId: expect.stringMatching(UUID) });
    } finally {
      await client.dispose();
    }
  });
});

describe('subscriptions over HTTP', () => {
  it('answers 400 BAD_REQUEST pointing at the WebSocket, not a server fault', async () => {
    const s = await startServer();
    try {
      const result = await gql(s.url, `subscription { messageAdded(roomId: "00000000-0000-4000-8000-000000000000") { id } }`);
      expect(result.status).toBe(400);
      expect(result.errors![0].extensions).toEqual({ code: 'BAD_REQUEST' });
      expect(result.errors![0].message).toMatch(/WebSocket/);
    } finally {
      await s.stop();
    }
  });
});

describe('metrics', () => {
  it('counts sent messages', async () => {
    const s = await startServer();
    try {
      const read = async () => Number(/^chat_messages_sent_total (\d+)/m.exec(await (await fetch(s.url.replace('/graphql', '/metrics'))).text())?.[1]);
      const before = await read();
      const ada = await signUp(s.url);
      const roomId = await createRoom(s.url, ada);
      await send(s.url, ada, roomId, 'one', { clientId: 'k' });
      await send(s.url, ada, roomId, 'one again', { clientId: 'k' }); // a retry is not a new message
      await waitFor(async () => (await read()) === before + 1);
    } finally {
      await s.stop();
    }
  });
});
