// An HTTP request's session check and its mutation's budgets (src/graphql/viewer.ts, budgets.ts):
// the budgets are spent while the session is checked, no resolver runs before the check answers,
// and the user's budgets are given back when the session turns out to have ended (the request
// runs signed out) or could not be checked. A send's session is checked by its own statement
// instead (`checkedInStatement`). Budgets in memory (the Redis ones are the integration tests'), a
// schema of fields that show what their resolver saw.
import { ApolloServer } from '@apollo/server';
import { makeExecutableSchema } from '@graphql-tools/schema';
import { execute, parse, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { SessionCheck } from '../../src/auth/sessions';
import type { Viewer } from '../../src/auth/tokens';
import { AppError, ErrorCode, unauthenticated } from '../../src/errors';
import { withBudgets, type Budgets } from '../../src/graphql/budgets';
import type { GraphQLContext } from '../../src/graphql/context';
import { checkedInStatement, confirmedViewerPlugin, answerStatusPlugin, withConfirmedViewer } from '../../src/graphql/viewer';
import { RateLimits, type RateLimit } from '../../src/rate-limit';

const ADA: Viewer = { id: '11111111-1111-4111-8111-111111111111', sessionId: '22222222-2222-4222-8222-222222222222' };

/** What happened, in order: budgets spent and given back, resolvers run. */
let events: string[];

function recorded(name: string, budget: RateLimit): RateLimit {
  return Object.assign(Object.create(budget) as RateLimit, {
    consume: async (key: string) => {
      events.push(`spend ${name}`);
      await budget.consume(key);
    },
    reward: async (key: string) => {
      events.push(`give back ${name}`);
      await budget.reward(key);
    },
  });
}

/** What the send's statement finds of the session it checks: standing, ended, or failing with an error. */
let statementFinds: boolean | Error;

function setUp(mutationsPerUser = 1) {
  const limits = new RateLimits();
  const budget = (name: string, points = 100) => recorded(name, limits.create(name, points, 10, `${name} spent`));
  const budgets: Budgets = {
    sendsPerUserBurst: budget('send-burst'),
    sendsPerUserSustained: budget('send-hour'),
    roomsPerAddress: budget('rooms'),
    signUpsPerAddress: budget('sign-ups'),
    logInsPerUsernameAndAddress: budget('log-ins'),
    logInsPerAddress: budget('log-in-address'),
    mutationsPerUser: budget('mutations', mutationsPerUser),
    typingPerUser: budget('typing'),
    readsPerUser: budget('reads'),
  };
  const signedIn = (ctx: GraphQLContext) => {
    events.push(`run as ${ctx.viewer ? 'ada' : 'nobody'}`);
    if (!ctx.viewer) throw unauthenticated();
    return ctx.viewer.id;
  };
  // As `MessageStore.insert` does: the statement checks the session it is given and settles it.
  const send = (ctx: GraphQLContext) =>
    checkedInStatement(ctx, async (session) => {
      events.push(session ? 'statement, checking the session' : 'statement');
      if (statementFinds instanceof Error) throw statementFinds;
      if (session) {
        session.settle(statementFinds);
        if (!statementFinds) throw unauthenticated();
      }
      return signedIn(ctx);
    });
  const schema = makeExecutableSchema({
    typeDefs: 'type Query { me: ID } type Mutation { sendMessage: ID createRoom: ID }',
    resolvers: {
      Query: { me: (_: unknown, __: unknown, ctx: GraphQLContext) => ctx.viewer?.id ?? null },
      Mutation: { sendMessage: (_: unknown, __: unknown, ctx: GraphQLContext) => send(ctx), createRoom: (_: unknown, __: unknown, ctx: GraphQLContext) => signedIn(ctx) },
    },
  });
  return withBudgets(withConfirmedViewer(schema), budgets);
}

/** A session check still under way, settled by the test; `made` counts the checks made. */
function pendingCheck() {
  let settle!: { confirm(viewer: Viewer | null): void; fail(err: Error): void };
  const promise = new Promise<Viewer | null>((resolve, reject) => (settle = { confirm: resolve, fail: reject }));
  return { promise, ...settle };
}

/** How many session checks the contexts made. */
let checksMade: number;
/** What the contexts' checks were told by a statement. */
let settled: boolean[];

/** A context whose session check answers `answer`; `standing`: the session was found standing lately (an HTTP request's, when it has a check under way). */
const contextOf = (answer?: Promise<Viewer | null>, standing = true) =>
  ({
    viewer: ADA,
    pendingViewer:
      answer &&
      new SessionCheck(
        ADA,
        () => (checksMade++, answer.then((viewer) => viewer !== null)),
        (_viewer, live) => settled.push(live),
        standing,
      ),
    requestId: 'r',
    clientAddress: '10.0.0.1',
    services: { messages: { sent: async () => undefined } }, // a refused send that is no retry
  }) as unknown as GraphQLContext;
const turn = () => new Promise((resolve) => setImmediate(resolve));
const run = (schema: GraphQLSchema, document: string, contextValue: GraphQLContext) => execute({ schema, document: parse(document), contextValue });
const codeOfResult = (result: ExecutionResult) => (result.errors?.[0].originalError as { code?: string } | undefined)?.code;

beforeEach(() => {
  events = [];
  checksMade = 0;
  settled = [];
  statementFinds = true;
});

it("spends a mutation's budgets while its session is checked, and runs it once the session stands", async () => {
  const schema = setUp();
  const check = pendingCheck();
  const running = run(schema, 'mutation { createRoom }', contextOf(check.promise));
  await turn();
  expect(events).toEqual(['spend rooms', 'spend mutations']); // and nothing has run
  check.confirm(ADA);
  expect(await running).toEqual({ data: { createRoom: ADA.id } });
  expect(events.slice(2)).toEqual(['run as ada']);
});

it("gives the user's budgets back when the session has ended, and runs the mutation signed out", async () => {
  const schema = setUp();
  for (let i = 0; i < 3; i++) {
    const check = pendingCheck();
    const running = run(schema, 'mutation { createRoom }', contextOf(check.promise));
    check.confirm(null);
    expect(codeOfResult(await running)).toBe('UNAUTHENTICATED'); // never RATE_LIMITED
  }
  expect(events.filter((e) => e.startsWith('give back'))).toEqual(['give back mutations', 'give back mutations', 'give back mutations']);
  // The budget of one mutation per 10 s is whole: the live session's mutation goes through, its next does not.
  expect(await run(schema, 'mutation { createRoom }', contextOf(Promise.resolve(ADA)))).toEqual({ data: { createRoom: ADA.id } });
  expect(codeOfResult(await run(schema, 'mutation { createRoom }', contextOf(Promise.resolve(ADA))))).toBe('RATE_LIMITED');
});

it("checks a session not found standing lately (a WebSocket quiet for a while) before it spends anything in its user's name", async () => {
  const schema = setUp();
  const check = pendingCheck();
  const running = run(schema, 'mutation { createRoom }', contextOf(check.promise, false));
  await turn();
  expect(events).toEqual(['spend rooms']); // the address's budget, as a signed-out request's; none of the user's yet
  check.confirm(null);
  expect(codeOfResult(await running)).toBe('UNAUTHENTICATED');
  expect(events).toEqual(['spend rooms', 'run as nobody']); // nothing spent in the user's name, nothing to give back
  const standing = pendingCheck();
  const next = run(schema, 'mutation { createRoom }', contextOf(standing.promise, false));
  await turn();
  expect(events.slice(2)).toEqual(['spend rooms']);
  standing.confirm(ADA);
  expect(await next).toEqual({ data: { createRoom: ADA.id } });
  expect(events.slice(2)).toEqual(['spend rooms', 'spend mutations', 'run as ada']);
});

it("gives the user's budgets back and runs nothing when the session cannot be checked", async () => {
  const schema = setUp();
  const check = pendingCheck();
  const running = run(schema, 'mutation { createRoom }', contextOf(check.promise));
  check.fail(new Error('Connection terminated unexpectedly'));
  const result = await running;
  expect(result.errors?.[0].message).toBe('Connection terminated unexpectedly');
  expect(events).toEqual(['spend rooms', 'spend mutations', 'give back mutations']);
  expect(await run(schema, 'mutation { createRoom }', contextOf(Promise.resolve(ADA)))).toEqual({ data: { createRoom: ADA.id } });
});

it('runs a query with the viewer its session confirms, signed out when the session has ended, and answers HTTP 503 when it cannot be checked or the database cannot serve the operation', async () => {
  const server = new ApolloServer<GraphQLContext>({ schema: setUp(), plugins: [confirmedViewerPlugin(), answerStatusPlugin()] });
  await server.start();
  try {
    const me = async (pending: Promise<Viewer | null>) => {
      const { body } = await server.executeOperation({ query: '{ me }' }, { contextValue: contextOf(pending) });
      return body.kind === 'single' ? body.singleResult.data?.me : undefined;
    };
    expect(await me(Promise.resolve(ADA))).toBe(ADA.id);
    expect(await me(Promise.resolve(null))).toBeNull(); // the token claimed ada
    // A check that failed answers HTTP 503, for queries and mutations alike, and for a send whose
    // statement failed before it could tell.
    statementFinds = new Error('Connection terminated unexpectedly');
    for (const query of ['{ me }', 'mutation { createRoom }', 'mutation { sendMessage }']) {
      const failing = Promise.reject(new Error('Connection terminated unexpectedly'));
      failing.catch(() => undefined); // the send's is never asked for: its statement failed first
      const { http } = await server.executeOperation({ query }, { contextValue: contextOf(failing) });
      expect([http.status, http.headers.get('retry-after')]).toEqual([503, '1']);
    }
    // And when the operation's own statement finds the database unavailable, its session checked before.
    statementFinds = new AppError(ErrorCode.ServiceUnavailable, 'The database is unreachable or overloaded; retry shortly');
    const { http } = await server.executeOperation({ query: 'mutation { sendMessage }' }, { contextValue: contextOf() });
    expect([http.status, http.headers.get('retry-after')]).toEqual([503, '1']);
  } finally {
    await server.stop();
  }
});

describe('a send, whose statement checks its session', () => {
  it('makes no check of its own: the budgets are spent, then the statement checks the session and settles it', async () => {
    const schema = setUp(5);
    expect(await run(schema, 'mutation { sendMessage }', contextOf(pendingCheck().promise))).toEqual({ data: { sendMessage: ADA.id } });
    expect(events).toEqual(['spend mutations', 'spend send-burst', 'spend send-hour', 'statement, checking the session', 'run as ada']);
    expect([checksMade, settled]).toEqual([0, [true]]);
  });

  it("is UNAUTHENTICATED when the statement finds the session ended, and gives the user's budgets back", async () => {
    const schema = setUp();
    statementFinds = false;
    for (let i = 0; i < 3; i++) expect(codeOfResult(await run(schema, 'mutation { sendMessage }', contextOf(pendingCheck().promise)))).toBe('UNAUTHENTICATED');
    expect(events.filter((e) => e.startsWith('give back'))).toHaveLength(9);
    expect([checksMade, settled]).toEqual([0, [false, false, false]]);
    statementFinds = true;
    expect(await run(schema, 'mutation { sendMessage }', contextOf(pendingCheck().promise))).toEqual({ data: { sendMessage: ADA.id } });
  });

  it('has its session checked when a budget refuses it, and answers as the check says', async () => {
    const schema = setUp();
    await run(schema, 'mutation { sendMessage }', contextOf(pendingCheck().promise)); // spends the one mutation
    events = [];
    expect(codeOfResult(await run(schema, 'mutation { sendMessage }', contextOf(Promise.resolve(ADA))))).toBe('RATE_LIMITED');
    expect(codeOfResult(await run(schema, 'mutation { sendMessage }', contextOf(Promise.resolve(null))))).toBe('UNAUTHENTICATED');
    expect(checksMade).toBe(2);
    // The refused one never ran; the signed-out one ran signed out (a send refuses that), its session checked.
    expect(events.filter((e) => e.startsWith('statement') || e.startsWith('run'))).toEqual(['statement', 'run as nobody']);
  });

  it('has its session checked when it fails before its statement could tell: UNAUTHENTICATED when the session ended, its own error when it stands', async () => {
    const schema = setUp(5);
    statementFinds = Object.assign(new Error('body must not be empty'), { code: 'BAD_USER_INPUT' });
    expect(codeOfResult(await run(schema, 'mutation { sendMessage }', contextOf(Promise.resolve(null))))).toBe('UNAUTHENTICATED');
    expect(events.filter((e) => e.startsWith('give back'))).toHaveLength(3);
    expect(await run(schema, 'mutation { sendMessage }', contextOf(Promise.resolve(ADA)))).toMatchObject({ errors: [{ message: 'body must not be empty' }] });
    expect(checksMade).toBe(2);
  });

  it("answers as a check that failed when the database cannot serve its statement (HTTP 503), with no check made after, and gives the user's budgets back", async () => {
    const schema = setUp(5);
    statementFinds = Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    const result = await run(schema, 'mutation { sendMessage }', contextOf(pendingCheck().promise));
    expect(result.errors?.[0].originalError).toMatchObject({ message: 'Connection terminated unexpectedly', extensions: { http: { status: 503 } } });
    expect(events.filter((e) => e.startsWith('give back'))).toHaveLength(3);
    expect([checksMade, settled]).toEqual([0, []]); // a second wait for the same database would double the answer's delay
  });

  it('waits for a check already made, as any other field does, and gives its statement no session to check', async () => {
    const schema = setUp(5);
    const ctx = contextOf(Promise.resolve(ADA));
    void ctx.pendingViewer!.result();
    expect(await run(schema, 'mutation { sendMessage }', ctx)).toEqual({ data: { sendMessage: ADA.id } });
    expect(events).toContain('statement');
    expect([checksMade, settled]).toEqual([1, []]);
  });
});
