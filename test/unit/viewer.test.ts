// An HTTP request's session check and its mutation's budgets (src/graphql/viewer.ts, budgets.ts):
// the budgets are spent while the session is checked, no resolver runs before the check answers,
// and the user's budgets are given back when the session turns out to have ended (the request
// runs signed out) or could not be checked. Budgets in memory (the Redis ones are the integration
// tests'), a schema of two fields that show what their resolver saw.
import { ApolloServer } from '@apollo/server';
import { makeExecutableSchema } from '@graphql-tools/schema';
import { execute, parse } from 'graphql';
import type { Viewer } from '../../src/auth/tokens';
import { unauthenticated } from '../../src/errors';
import { withBudgets, type Budgets } from '../../src/graphql/budgets';
import type { GraphQLContext } from '../../src/graphql/context';
import { confirmedViewerPlugin, withConfirmedViewer } from '../../src/graphql/viewer';
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

function setUp(mutationsPerUser = 1) {
  const limits = new RateLimits();
  const budget = (name: string, points = 100) => recorded(name, limits.create(name, points, 10, `${name} spent`));
  const budgets: Budgets = {
    sendsPerUserBurst: budget('send-burst', 1),
    sendsPerUserSustained: budget('send-hour'),
    roomsPerAddress: budget('rooms'),
    signUpsPerAddress: budget('sign-ups'),
    logInsPerUsernameAndAddress: budget('log-ins'),
    logInsPerAddress: budget('log-in-address'),
    mutationsPerUser: budget('mutations', mutationsPerUser),
    typingPerUser: budget('typing'),
  };
  const signedIn = (ctx: GraphQLContext) => {
    events.push(`run as ${ctx.viewer ? 'ada' : 'nobody'}`);
    if (!ctx.viewer) throw unauthenticated();
    return ctx.viewer.id;
  };
  const schema = makeExecutableSchema({
    typeDefs: 'type Query { me: ID } type Mutation { sendMessage: ID createRoom: ID }',
    resolvers: {
      Query: { me: (_: unknown, __: unknown, ctx: GraphQLContext) => ctx.viewer?.id ?? null },
      Mutation: { sendMessage: (_: unknown, __: unknown, ctx: GraphQLContext) => signedIn(ctx), createRoom: (_: unknown, __: unknown, ctx: GraphQLContext) => signedIn(ctx) },
    },
  });
  return withBudgets(withConfirmedViewer(schema), budgets);
}

/** A session check still under way, settled by the test. */
function pendingCheck() {
  let settle!: { confirm(viewer: Viewer | null): void; fail(err: Error): void };
  const promise = new Promise<Viewer | null>((resolve, reject) => (settle = { confirm: resolve, fail: reject }));
  return { promise, ...settle };
}

const contextOf = (pendingViewer?: Promise<Viewer | null>) => ({ viewer: ADA, pendingViewer, requestId: 'r', clientAddress: '10.0.0.1' }) as unknown as GraphQLContext;
const turn = () => new Promise((resolve) => setImmediate(resolve));

beforeEach(() => (events = []));

it("spends a mutation's budgets while its session is checked, and runs it once the session stands", async () => {
  const schema = setUp();
  const check = pendingCheck();
  const running = execute({ schema, document: parse('mutation { sendMessage }'), contextValue: contextOf(check.promise) });
  await turn();
  expect(events).toEqual(['spend mutations', 'spend send-burst', 'spend send-hour']); // and nothing has run
  check.confirm(ADA);
  expect(await running).toEqual({ data: { sendMessage: ADA.id } });
  expect(events.slice(3)).toEqual(['run as ada']);
});

it("gives the user's budgets back when the session has ended, and runs the mutation signed out", async () => {
  const schema = setUp();
  for (let i = 0; i < 3; i++) {
    const check = pendingCheck();
    const running = execute({ schema, document: parse('mutation { sendMessage }'), contextValue: contextOf(check.promise) });
    check.confirm(null);
    const result = await running;
    expect(result.errors?.[0].originalError).toMatchObject({ code: 'UNAUTHENTICATED' }); // never RATE_LIMITED
  }
  expect(events.filter((e) => e.startsWith('give back'))).toHaveLength(9);
  // The budgets of one send per 10 s are whole: the live session's send goes through, its next does not.
  expect(await execute({ schema, document: parse('mutation { sendMessage }'), contextValue: contextOf(Promise.resolve(ADA)) })).toEqual({ data: { sendMessage: ADA.id } });
  const refused = await execute({ schema, document: parse('mutation { createRoom }'), contextValue: contextOf(Promise.resolve(ADA)) });
  expect(refused.errors?.[0].originalError).toMatchObject({ code: 'RATE_LIMITED' });
});

it("gives the user's budgets back and runs nothing when the session cannot be checked", async () => {
  const schema = setUp();
  const check = pendingCheck();
  const running = execute({ schema, document: parse('mutation { sendMessage }'), contextValue: contextOf(check.promise) });
  check.fail(new Error('Connection terminated unexpectedly'));
  const result = await running;
  expect(result.errors?.[0].message).toBe('Connection terminated unexpectedly');
  expect(events).toEqual(['spend mutations', 'spend send-burst', 'spend send-hour', 'give back mutations', 'give back send-burst', 'give back send-hour']);
  expect(await execute({ schema, document: parse('mutation { sendMessage }'), contextValue: contextOf(Promise.resolve(ADA)) })).toEqual({ data: { sendMessage: ADA.id } });
});

it('runs a query with the viewer its session confirms, signed out when the session has ended, and answers HTTP 503 when it cannot be checked', async () => {
  const server = new ApolloServer<GraphQLContext>({ schema: setUp(), plugins: [confirmedViewerPlugin()] });
  await server.start();
  try {
    const me = async (pending: Promise<Viewer | null>) => {
      const { body } = await server.executeOperation({ query: '{ me }' }, { contextValue: contextOf(pending) });
      return body.kind === 'single' ? body.singleResult.data?.me : undefined;
    };
    expect(await me(Promise.resolve(ADA))).toBe(ADA.id);
    expect(await me(Promise.resolve(null))).toBeNull(); // the token claimed ada
    // A check that failed answers HTTP 503, for queries and mutations alike.
    for (const query of ['{ me }', 'mutation { sendMessage }']) {
      const { http } = await server.executeOperation({ query }, { contextValue: contextOf(Promise.reject(new Error('Connection terminated unexpectedly'))) });
      expect(http.status).toBe(503);
    }
  } finally {
    await server.stop();
  }
});
