import { createHash } from 'node:crypto';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
// Operation limits (issue 9, point 1): one pipeline for HTTP and WebSocket, each limit with its
// boundary on both sides and on both transports, and a bad operation over WebSocket answered with
// an `error` message carrying HTTP's code while the socket and its other subscriptions stay up.
import { parse } from 'graphql';
import WebSocket from 'ws';
import { subscriptionDocument } from '../../src/graphql/pipeline';
import { MAX_SUBSCRIPTION_BYTES_PER_SOCKET } from '../../src/http/websocket';
import { collect, createRoom, gql, MESSAGE_ADDED, send, signUp, startServer, unique, waitFor, wsClient, type TestServer, type TestUser } from '../support/harness';
import { bothTransports, rawSocket } from '../support/transports';

let server: TestServer;
/** A server with small limits, so that each boundary is a short document. */
let tight: TestServer;
let ada: TestUser;
let roomId: string;
beforeAll(async () => {
  [server, tight] = await Promise.all([
    startServer(),
    startServer({
      MAX_QUERY_TOKENS: '200',
      MAX_QUERY_DEPTH: '5',
      MAX_QUERY_ALIASES: '3',
      MAX_QUERY_ROOT_FIELDS: '2',
      MAX_QUERY_DIRECTIVES: '2',
      MAX_QUERY_COST: '821',
    }),
  ]);
  ada = await signUp(tight.url);
  roomId = await createRoom(tight.url, ada);
});
afterAll(() => Promise.all([server.stop(), tight.stop()]));

const repeat = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join(' ');

/** A full collection, for reading what the server (in this process) keeps. */
v8.setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

describe('each limit: exactly at it runs, one past it is refused, on both transports', () => {
  const cases: Array<[limit: string, at: string, past: string, code: string]> = [
    // `{`, `}` and 66 × `aN: __typename` (3 tokens each; aliases of __typename are free): 200 tokens.
    ['MAX_QUERY_TOKENS=200', `{ ${repeat(66, (i) => `a${i}: __typename`)} }`, `{ ${repeat(66, (i) => `a${i}: __typename`)} __typename }`, 'GRAPHQL_PARSE_FAILED'],
    // messages › edges › node › parent › id is 5 deep.
    ['MAX_QUERY_DEPTH=5', '{ messages(roomId: $r) { edges { node { parent { id } } } } }', '{ messages(roomId: $r) { edges { node { parent { parent { id } } } } } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['MAX_QUERY_ALIASES=3', `{ me { ${repeat(3, (i) => `a${i}: id`)} } }`, `{ me { ${repeat(4, (i) => `a${i}: id`)} } }`, 'GRAPHQL_VALIDATION_FAILED'],
    ['MAX_QUERY_ROOT_FIELDS=2', '{ me { id } room(id: $r) { id } }', '{ me { id } room(id: $r) { id } rooms { pageInfo { hasNextPage } } }', 'GRAPHQL_VALIDATION_FAILED'],
    ['MAX_QUERY_DIRECTIVES=2', `{ ${repeat(2, () => '__typename @include(if: true)')} }`, `{ ${repeat(3, () => '__typename @include(if: true)')} }`, 'GRAPHQL_VALIDATION_FAILED'],
    // A fragment's directives count at each spread, and so do each spread's own.
    ['MAX_QUERY_DIRECTIVES=2 (spreads)', `{ me { ...F @include(if: true) ...F @include(if: true) } } fragment F on User { id }`, `{ me { ...F @include(if: true) ...F @include(if: true) ...F @include(if: true) } } fragment F on User { id }`, 'GRAPHQL_VALIDATION_FAILED'],
    ['MAX_QUERY_DIRECTIVES=2 (in a fragment)', `{ me { ...F ...F } } fragment F on User { id @include(if: true) }`, `{ me { ...F ...F ...F } } fragment F on User { id @include(if: true) }`, 'GRAPHQL_VALIDATION_FAILED'],
    // me (10 + id 1) + messages (10 + 200 × (edges 1 + cursor 1 + node 1 + id 1)) = 821; one more field of me: 822.
    [
      'MAX_QUERY_COST=821',
      '{ me { id } messages(roomId: $r, first: 200) { edges { cursor node { id } } } }',
      '{ me { id username } messages(roomId: $r, first: 200) { edges { cursor node { id } } } }',
      'BAD_REQUEST',
    ],
    // A page that is a list: users (10 + first × id 1) + the same messages (810) = 821 with first: 1, 822 with first: 2.
    [
      'MAX_QUERY_COST=821 (users, a page that is a list)',
      '{ users(query: "a", first: 1) { id } messages(roomId: $r, first: 200) { edges { cursor node { id } } } }',
      '{ users(query: "a", first: 2) { id } messages(roomId: $r, first: 200) { edges { cursor node { id } } } }',
      'BAD_REQUEST',
    ],
  ];

  it.each(cases)('%s', async (_limit, at, past, code) => {
    const variables = at.includes('$r') || past.includes('$r') ? { r: roomId } : {};
    const wrap = (q: string) => (q.includes('$r') ? `query($r: ID!) ${q}` : q);
    const passing = await bothTransports(tight, wrap(at), variables, ada.token);
    expect(passing).toEqual({ http: 'ok', ws: 'ok' });
    const refused = await bothTransports(tight, wrap(past), variables, ada.token);
    expect(refused).toEqual({ http: code, ws: code });
  });

  it('says what a too costly operation costs', async () => {
    const result = await gql(tight.url, 'query($r: ID!) { me { id username } messages(roomId: $r, first: 200) { edges { cursor node { id } } } }', { r: roomId }, ada.token);
    expect(result.status).toBe(400);
    expect(result.errors![0].extensions).toEqual({ code: 'BAD_REQUEST', cost: 822, maxCost: 821 });
  });
});

describe('the words of a refusal', () => {
  it('names the limit, and does not call a document that parsed a syntax error', async () => {
    const messageOf = async (query: string) => (await gql(tight.url, query, { r: roomId }, ada.token)).errors![0].message;
    expect(await messageOf('query($r: ID!) { messages(roomId: $r) { edges { node { parent { parent { id } } } } } }')).toBe('Query depth limit of 5 exceeded, found 6.');
    expect(await messageOf(`{ me { ${repeat(4, (i) => `a${i}: id`)} } }`)).toMatch(/^Aliases limit of 3 exceeded, found 4\b/);
    expect(await messageOf(`{ ${repeat(3, () => '__typename @include(if: true)')} }`)).toMatch(/^Directives limit of 2 exceeded, found 3\b/);
    // Each alias of a root field counts: it runs once per alias.
    expect(await messageOf('{ a: me { id } b: me { id } c: me { id } }')).toBe('Root fields limit of 2 exceeded, found 3.');
  });
});

describe('refusals alike on both transports', () => {
  /** Every error of the answer (message and code), over HTTP and over a fresh WebSocket. */
  async function errorsOfBoth(payload: Record<string, unknown>) {
    const res = await fetch(tight.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ada.token}` }, body: JSON.stringify(payload) });
    const errorsOf = (list?: Array<{ message: string; extensions?: { code?: string } }>) => (list ?? []).map((e) => [e.extensions?.code, e.message] as const);
    const http = errorsOf(((await res.json()) as { errors?: [] }).errors);
    const socket = await rawSocket(tight.wsUrl, ada.token);
    try {
      socket.send({ id: 'one', type: 'subscribe', payload });
      const frame = await socket.next((f) => f.id === 'one' && (f.type === 'error' || f.type === 'next'));
      return { http, ws: errorsOf(frame.type === 'error' ? frame.payload : frame.payload.errors) };
    } finally {
      socket.close();
    }
  }

  it('answers every validation error, and every limit exceeded, not only the first', async () => {
    const unknown = await errorsOfBoth({ query: '{ nope1 nope2 }' });
    expect(unknown.http).toHaveLength(2);
    expect(unknown.ws).toEqual(unknown.http);
    const twoLimits = await errorsOfBoth({ query: `{ me { ${repeat(4, (i) => `a${i}: id @include(if: true)`)} } }` });
    expect(twoLimits.http.map(([code, message]) => [code, message.split(' exceeded')[0]])).toEqual([
      ['GRAPHQL_VALIDATION_FAILED', 'Aliases limit of 3'],
      ['GRAPHQL_VALIDATION_FAILED', 'Directives limit of 2'],
    ]);
    expect(twoLimits.ws).toEqual(twoLimits.http);
  });

  it('reads automatic persisted queries alike: a wrong hash refused, an unknown hash asked for, a registered one run', async () => {
    const query = `{ me { id } } # ${unique('apq')}`;
    const sha256Hash = createHash('sha256').update(query).digest('hex');
    const persisted = (hash: string) => ({ extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
    const wrong = await errorsOfBoth({ query, ...persisted('abc') });
    expect(wrong.http).toEqual([['GRAPHQL_VALIDATION_FAILED', 'provided sha does not match query']]);
    expect(wrong.ws).toEqual(wrong.http);
    // graphql-ws sends a text with every operation (none is a protocol error): an empty one asks for it.
    const unknown = await errorsOfBoth({ query: '', ...persisted(sha256Hash) });
    expect(unknown.ws).toEqual([['PERSISTED_QUERY_NOT_FOUND', 'PersistedQueryNotFound']]);
    const hashAlone = await fetch(tight.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(persisted(sha256Hash)) });
    expect(((await hashAlone.json()) as { errors: Array<{ extensions: { code: string } }> }).errors.map((e) => e.extensions.code)).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    const version = await errorsOfBoth({ query, extensions: { persistedQuery: { version: 2, sha256Hash } } });
    expect(version.http).toEqual([['GRAPHQL_VALIDATION_FAILED', 'Unsupported persisted query version']]);
    expect(version.ws).toEqual(version.http);
    expect(await errorsOfBoth({ query, ...persisted(sha256Hash) })).toEqual({ http: [], ws: [] });
    for (const none of [null, false]) expect(await errorsOfBoth({ query, extensions: { persistedQuery: none } })).toEqual({ http: [], ws: [] }); // no persisted query, as Apollo reads it
  });
});

describe('the cost of one document with other variables', () => {
  const PAGE = '{ edges { cursor node { id } } }';
  const priceOf = async (query: string, variables: Record<string, unknown>) => {
    const result = await gql(tight.url, query, { r: roomId, ...variables }, ada.token);
    return result.errors ? result.errors[0].extensions : 'ok';
  };

  it('measures anew a page size given by a variable, each time, in any order', async () => {
    const query = `query($r: ID!, $n: Int) { me { id } messages(roomId: $r, first: $n) ${PAGE} }`;
    for (const n of [200, 201, 200, 201]) {
      expect(await priceOf(query, { n })).toEqual(n === 200 ? 'ok' : { code: 'BAD_REQUEST', cost: 825, maxCost: 821 });
    }
  });

  it('measures anew a field that a variable includes or skips, each time, in any order', async () => {
    const query = `query($r: ID!, $more: Boolean!) { me { id username @include(if: $more) } messages(roomId: $r, first: 200) ${PAGE} }`;
    for (const more of [false, true, false, true]) {
      expect(await priceOf(query, { more })).toEqual(more ? { code: 'BAD_REQUEST', cost: 822, maxCost: 821 } : 'ok');
    }
  });

  it('refuses a too costly document every time, whatever its other variables', async () => {
    const query = `query($r: ID!) { me { id username } messages(roomId: $r, first: 200) ${PAGE} }`;
    expect(await priceOf(query, {})).toEqual({ code: 'BAD_REQUEST', cost: 822, maxCost: 821 });
    expect(await priceOf(query, { unused: 1 })).toEqual({ code: 'BAD_REQUEST', cost: 822, maxCost: 821 });
  });
});

describe('padded and nested operations (the attacks of issue 9)', () => {
  it('refuses ten large pages padded with ten thousand __typename on both transports, running none of them', async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const spy = jest.spyOn(server.app.services.messages, 'page');
    const padded = `query($r: ID!) { ${repeat(10, (i) => `p${i}: messages(roomId: $r, last: 200) { edges { node { id body } } }`)} ${repeat(10_000, () => '__typename')} }`;
    expect(await bothTransports(server, padded, { r: room }, user.token)).toEqual({ http: 'GRAPHQL_PARSE_FAILED', ws: 'GRAPHQL_PARSE_FAILED' });
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  it('refuses a field repeated more than ten times in one selection set (graphql-js compares them pairwise)', async () => {
    const user = await signUp(server.url);
    expect(await bothTransports(server, `{ ${repeat(10, () => 'me { id }')} }`, {}, user.token)).toEqual({ http: 'ok', ws: 'ok' });
    expect(await bothTransports(server, `{ ${repeat(11, () => 'me { id }')} }`, {}, user.token)).toEqual({ http: 'GRAPHQL_VALIDATION_FAILED', ws: 'GRAPHQL_VALIDATION_FAILED' });
    expect(await bothTransports(server, `{ ${repeat(11, () => '... on Query { me { id } }')} }`, {}, user.token)).toEqual({
      http: 'GRAPHQL_VALIDATION_FAILED',
      ws: 'GRAPHQL_VALIDATION_FAILED',
    });
    // Through named fragments too, each counted once however often it is spread.
    const spread = (a: number, b: number) => `{ me { ...A ...B ...A } } fragment A on User { ${repeat(a, () => 'id')} } fragment B on User { ${repeat(b, () => 'id')} }`;
    expect(await bothTransports(server, spread(5, 5), {}, user.token)).toEqual({ http: 'ok', ws: 'ok' });
    expect(await bothTransports(server, spread(6, 5), {}, user.token)).toEqual({ http: 'GRAPHQL_VALIDATION_FAILED', ws: 'GRAPHQL_VALIDATION_FAILED' });
  });

  it('names the rule a conditional subscription root breaks', async () => {
    const user = await signUp(server.url);
    const answer = await gql(server.url, 'subscription Feed { myEvents @skip(if: true) { __typename } }', {}, user.token);
    expect(answer.errors?.[0].message).toBe('Subscription "Feed" must not use `@skip` or `@include` directives in the top level selection.');
  });

  it('refuses an operation the cost cannot be measured for (fragments doubling 16 times), on both transports', async () => {
    const user = await signUp(server.url);
    const fragments = ['fragment F0 on Query { __typename }', ...Array.from({ length: 16 }, (_, i) => `fragment F${i + 1} on Query { ...F${i} ...F${i} }`)];
    const query = `{ ...F16 } ${fragments.join(' ')}`;
    expect(await bothTransports(server, query, {}, user.token)).toEqual({ http: 'BAD_REQUEST', ws: 'BAD_REQUEST' });
    expect((await gql(server.url, query, {}, user.token)).errors![0].message).toMatch(/cannot be measured/);
  });

  it('refuses many aliased `me` (each a database round trip) on both transports', async () => {
    const user = await signUp(server.url);
    expect(await bothTransports(server, `{ ${repeat(100, (i) => `m${i}: me { id }`)} }`, {}, user.token)).toEqual({
      http: 'GRAPHQL_VALIDATION_FAILED',
      ws: 'GRAPHQL_VALIDATION_FAILED',
    });
  });

  it('prices a page by its size: a dozen large pages are refused with BAD_REQUEST, three run', async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const pages = (n: number) => `query($r: ID!) { ${repeat(n, (i) => `p${i}: messages(roomId: $r, last: 200) { edges { node { id body author { username } } } }`)} }`;
    expect(await bothTransports(server, pages(12), { r: room }, user.token)).toEqual({ http: 'BAD_REQUEST', ws: 'BAD_REQUEST' });
    expect(await bothTransports(server, pages(3), { r: room }, user.token)).toEqual({ http: 'ok', ws: 'ok' });
  });

  it.each([
    ['3,000 nested selections', `{ me ${'{ id '.repeat(3000)}${'}'.repeat(3000)} }`],
    ['3,000 nested list values', `{ room(id: ${'['.repeat(3000)}"x"${']'.repeat(3000)}) { id } }`],
    ['100,000 nested list values', `{ room(id: ${'['.repeat(100_000)}) { id } }`],
  ])('answers %s with GRAPHQL_PARSE_FAILED on both transports', async (_name, query) => {
    const user = await signUp(server.url);
    expect(await bothTransports(server, query, {}, user.token)).toEqual({ http: 'GRAPHQL_PARSE_FAILED', ws: 'GRAPHQL_PARSE_FAILED' });
  });

  it('refuses hundreds of aliased sends in one request and writes nothing', async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const sends = repeat(300, (i) => `s${i}: sendMessage(input: { roomId: $r, body: "spam" }) { id }`);
    expect(await bothTransports(server, `mutation($r: ID!) { ${sends} }`, { r: room }, user.token)).toEqual({
      http: 'GRAPHQL_PARSE_FAILED',
      ws: 'GRAPHQL_PARSE_FAILED',
    });
    const after = await gql(server.url, `query($r: ID!) { room(id: $r) { lastSeq } }`, { r: room }, user.token);
    expect(after.data.room.lastSeq).toBe(0);
  });

  it('refuses dozens of aliased sign-ups (each a slow password hash)', async () => {
    const signUps = repeat(30, (i) => `u${i}: signUp(input: { username: "x${i}_${Date.now()}", password: "password123" }) { token }`);
    const result = await gql(server.url, `mutation { ${signUps} }`);
    expect(result.errors![0].extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});

describe('a bad operation over WebSocket', () => {
  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['an unfinished document', { query: '{ me { id ' }, 'GRAPHQL_PARSE_FAILED'],
    ['an empty query', { query: '' }, 'BAD_REQUEST'],
    ['3,000 nested brackets', { query: '{'.repeat(3000) }, 'GRAPHQL_PARSE_FAILED'],
    ['an unknown field', { query: '{ nope }' }, 'GRAPHQL_VALIDATION_FAILED'],
    ['an unknown operation name', { query: 'query A { me { id } }', operationName: 'B' }, 'OPERATION_RESOLUTION_FAILURE'],
    ['two operations and no name', { query: 'query A { me { id } } query B { me { id } }' }, 'OPERATION_RESOLUTION_FAILURE'],
    ['a variable of the wrong type', { query: 'query($r: ID!) { room(id: $r) { id } }', variables: { r: { no: 1 } } }, 'BAD_USER_INPUT'],
    ['a missing variable', { query: 'query($r: ID!) { room(id: $r) { id } }', variables: {} }, 'BAD_USER_INPUT'],
    // A subscription's root field cannot be conditional (graphql-js 16 threw on these: 4500 and HTTP 500).
    ['a subscription whose root field is skipped', { query: 'subscription { myEvents @skip(if: true) { __typename } }' }, 'GRAPHQL_VALIDATION_FAILED'],
    ['a subscription whose root field a variable includes', { query: 'subscription($s: Boolean!) { myEvents @include(if: $s) { __typename } }', variables: { s: true } }, 'GRAPHQL_VALIDATION_FAILED'],
    ['a subscription whose root fragment is conditional', { query: 'subscription { ...F @include(if: true) } fragment F on Subscription { myEvents { __typename } }' }, 'GRAPHQL_VALIDATION_FAILED'],
    ['a subscription whose root field is conditional inside a fragment', { query: 'subscription { ... on Subscription { ...F } } fragment F on Subscription { myEvents @skip(if: false) { __typename } }' }, 'GRAPHQL_VALIDATION_FAILED'],
  ];

  it.each(bad)('answers %s with an error message and the code HTTP gives, and the socket and its subscriptions stay up', async (_name, payload, code) => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const http = await gql(server.url, String(payload.query), (payload.variables as Record<string, unknown>) ?? {}, user.token).catch(() => undefined);
    if (payload.operationName === undefined) expect(http?.errors?.[0]?.extensions?.code).toBe(code);
    const socket = await rawSocket(server.wsUrl, user.token);
    socket.send({ id: 'live', type: 'subscribe', payload: { query: MESSAGE_ADDED, variables: { roomId: room } } });
    await waitFor(() => server.app.hubs.listeners(room) === 1);
    socket.send({ id: 'bad', type: 'subscribe', payload });
    const answer = await socket.next((m) => m.id === 'bad');
    expect(answer.type).toBe('error');
    expect(answer.payload[0].extensions.code).toBe(code);
    expect(JSON.stringify(answer)).not.toMatch(/\bat .*:\d+:\d+|node_modules/);
    const sent = await send(server.url, user, room, 'still here');
    const event = await socket.next((m) => m.id === 'live');
    expect(event.payload.data.messageAdded.id).toBe(sent.id);
    expect(socket.closed()).toBeUndefined();
    socket.close();
  });

  it('answers an unknown operation name over HTTP with OPERATION_RESOLUTION_FAILURE too', async () => {
    const res = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'query A { me { id } }', operationName: 'B' }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('OPERATION_RESOLUTION_FAILURE');
  });
});

describe('introspection and suggestions follow INTROSPECTION on both transports', () => {
  let closed: TestServer;
  beforeAll(async () => {
    closed = await startServer({ INTROSPECTION: 'false' });
  });
  afterAll(() => closed.stop());

  it('refuses __schema and __type over HTTP and WebSocket alike when INTROSPECTION=false', async () => {
    const user = await signUp(closed.url);
    for (const query of ['{ __schema { types { name } } }', '{ __type(name: "Room") { fields { name } } }']) {
      expect(await bothTransports(closed, query, {}, user.token)).toEqual({ http: 'GRAPHQL_VALIDATION_FAILED', ws: 'GRAPHQL_VALIDATION_FAILED' });
    }
    expect(await bothTransports(closed, '{ __typename }', {}, user.token)).toEqual({ http: 'ok', ws: 'ok' });
  });

  it('suggests no field names when INTROSPECTION=false, and does when it is true', async () => {
    const user = await signUp(closed.url);
    const message = async (target: TestServer, transport: 'http' | 'ws') => {
      if (transport === 'http') return (await gql(target.url, '{ mee { id } }', {}, user.token)).errors![0].message;
      const socket = await rawSocket(target.wsUrl, user.token);
      socket.send({ id: '1', type: 'subscribe', payload: { query: '{ mee { id } }' } });
      const answer = await socket.next((m) => m.id === '1');
      socket.close();
      return answer.payload[0].message as string;
    };
    for (const transport of ['http', 'ws'] as const) {
      expect(await message(closed, transport)).toBe('Cannot query field "mee" on type "Query".');
    }
    const openUser = await signUp(server.url);
    expect((await gql(server.url, '{ mee { id } }', {}, openUser.token)).errors![0].message).toMatch(/Did you mean "me"\?/);
  });
});

describe('subscriptions per socket', () => {
  it('refuses a 101st subscription with BAD_REQUEST, while queries in flight do not count', async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const client = wsClient(server.wsUrl, user);
    const subs = Array.from({ length: 100 }, () => collect(client, MESSAGE_ADDED, { roomId: room }));
    await waitFor(() => server.app.hubs.listeners(room) === 100, 10_000, () => `listeners: ${server.app.hubs.listeners(room)}`);
    const queries = await Promise.all(Array.from({ length: 20 }, () => collect(client, '{ me { id } }').until((r) => r.length === 1)));
    for (const [result] of queries) expect(result.data?.me?.id).toBe(user.id);
    const extra = collect(client, MESSAGE_ADDED, { roomId: room });
    const error = await extra.done.then(() => undefined, (e) => e);
    expect(error?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    subs[0].stop();
    await waitFor(() => server.app.hubs.listeners(room) === 99);
    const again = collect(client, MESSAGE_ADDED, { roomId: room });
    await waitFor(() => server.app.hubs.listeners(room) === 100);
    again.stop();
    subs.forEach((s) => s.stop());
    await waitFor(() => server.app.hubs.listeners(room) === 0);
    await client.dispose();
  });

  it("bounds what one socket's subscriptions hold: their messages, and each document once, without its comments", async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    const raw = await rawSocket(server.wsUrl, user.token);
    const body = 'subscription($r: ID!) { roomEvents(roomId: $r) { __typename } }';
    // A comment no token limit counts pads each message; the document a subscription keeps drops it.
    const message = (id: string, padding: number, tag = id) =>
      JSON.stringify({ id, type: 'subscribe', payload: { query: `# ${tag} ${'x'.repeat(padding)}\n${body}`, variables: { r: room } } });
    const { bytes: kept } = subscriptionDocument(parse(body));
    const subscribe = (id: string, padding: number, tag?: string) => {
      raw.socket.send(message(id, padding, tag));
      return id;
    };
    const refusal = async (id: string) => (await raw.next((f) => f.id === id && f.type === 'error', 10_000)).payload?.[0]?.extensions?.code;
    const padFor = (id: string, held: number, tag?: string) => held / 2 - message(id, 0, tag).length; // two bytes a character
    try {
      // Exactly at the bound: runs (a message just under 1 MiB, so two bytes a character reach 2 MiB).
      subscribe('a', padFor('a', MAX_SUBSCRIPTION_BYTES_PER_SOCKET - kept));
      await waitFor(() => server.app.hubs.listeners(room) === 1, 10_000);
      // Anything more, even the smallest: refused, and the socket stays up.
      expect(await refusal(subscribe('tiny', 0))).toBe('BAD_REQUEST');
      raw.send({ id: 'a', type: 'complete' });
      await waitFor(() => server.app.hubs.listeners(room) === 0, 10_000);
      // One character past the bound: refused.
      expect(await refusal(subscribe('b', padFor('b', MAX_SUBSCRIPTION_BYTES_PER_SOCKET - kept) + 1))).toBe('BAD_REQUEST');
      // Two subscriptions of one text share its document: counted once, both run.
      const pad = Math.floor((MAX_SUBSCRIPTION_BYTES_PER_SOCKET - kept) / 4) - message('c', 0, 'cd').length;
      subscribe('c', pad, 'cd');
      subscribe('d', pad, 'cd');
      await waitFor(() => server.app.hubs.listeners(room) === 2, 10_000);
      raw.send({ id: 'c', type: 'complete' });
      raw.send({ id: 'd', type: 'complete' });
      await waitFor(() => server.app.hubs.listeners(room) === 0, 10_000);
      // What they held was given back: a small subscription runs and gets its events.
      const sub = collect(wsClient(server.wsUrl, user), MESSAGE_ADDED, { roomId: room });
      subscribe('e', 0);
      await waitFor(() => server.app.hubs.listeners(room) === 2, 10_000);
      await send(server.url, user, room, 'after');
      await sub.until((r) => r.length === 1);
      await raw.next((f) => f.id === 'e' && f.type === 'next' && f.payload?.data?.roomEvents?.__typename === 'MessageAdded');
      sub.stop();
      expect(raw.closed()).toBeUndefined();
    } finally {
      raw.close();
    }
  });

  it('keeps of a subscribe message only what the subscription runs with: not its extensions, nor variables it does not declare', async () => {
    const user = await signUp(server.url);
    const room = await createRoom(server.url, user);
    // A parsed JSON value takes many times its text: 150,000 `{}` twice in a message of ~900 KB, some 15 MB kept per subscription before.
    const junk = `[${'{},'.repeat(149_999)}{}]`;
    const message = `{"id":"s","type":"subscribe","payload":{"query":"subscription($r: ID!) { roomEvents(roomId: $r) { __typename } }","variables":{"r":"${room}","junk":${junk}},"extensions":{"junk":${junk}}}}`;
    collectGarbage();
    const before = process.memoryUsage().heapUsed;
    const sockets = [];
    for (let i = 0; i < 4; i++) {
      const raw = await rawSocket(server.wsUrl, user.token);
      raw.socket.send(message);
      sockets.push(raw);
    }
    try {
      await waitFor(() => server.app.hubs.listeners(room) === 4, 10_000);
      collectGarbage();
      // Each keeps its message's text (~0.9 MB, counted by the bound) and little else.
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(4 * 2 * 1024 * 1024);
      await send(server.url, user, room, 'still live');
      for (const raw of sockets) await raw.next((f) => f.id === 's' && f.type === 'next' && f.payload?.data?.roomEvents?.__typename === 'MessageAdded');
    } finally {
      sockets.forEach((raw) => raw.close());
    }
  });

  it('closes a socket that sends a message over 1 MiB, and the server goes on', async () => {
    const user = await signUp(server.url);
    const socket = new WebSocket(server.wsUrl, 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${user.token}`, junk: 'x'.repeat(1024 * 1024 + 10) } }));
    expect(await closed).toBe(1009);
    expect((await fetch(server.url.replace('/graphql', '/healthz'))).status).toBe(200);
  });
});
