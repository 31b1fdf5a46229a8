import { MapperKind, mapSchema } from '@graphql-tools/utils';
import type { GraphQLFieldResolver, GraphQLSchema } from 'graphql';
import type { Config } from '../config';
import type { RateLimit, RateLimits } from '../rate-limit';
import type { GraphQLContext } from './context';
import { CHECKED_IN_STATEMENT, confirmViewer } from './viewer';

/** The budgets spent at the GraphQL boundary; each answers RATE_LIMITED with `retryAfterMs` when spent. */
export interface Budgets {
  /** Sends per user over a short window. */
  sendsPerUserBurst: RateLimit;
  /** Sends per user over a long window. */
  sendsPerUserSustained: RateLimit;
  /** Rooms created per client address. */
  roomsPerAddress: RateLimit;
  /** Accounts created per client address. */
  signUpsPerAddress: RateLimit;
  /**
   * Log-ins per username from one address; a success gives them back. With the looser budget per
   * username alone (`AuthService`), a stranger guessing from one address cannot lock the user out.
   */
  logInsPerUsernameAndAddress: RateLimit;
  /**
   * Failed log-ins per address, whatever the username: one address trying one password on many
   * accounts, each attempt a deliberately slow hash. A success gives its point back.
   */
  logInsPerAddress: RateLimit;
  /** Every mutation of a signed-in user, whatever it is (joins, leaves, settings, and those to come), but `setTyping` and `markRead`. */
  mutationsPerUser: RateLimit;
  /**
   * `markRead` calls per user, instead of `mutationsPerUser`: a client that marks each message
   * read as it arrives in a busy room must not have its user's sends refused for it.
   */
  readsPerUser: RateLimit;
  /**
   * `setTyping` calls that reach the typing store, per user: spent by the typing service, so that a
   * repeat it answers from memory costs nothing, and typing on every keystroke leaves the mutation
   * budget (and with it sending) untouched.
   */
  typingPerUser: RateLimit;
}

type Args = Record<string, any>;
/** A mutation's own budgets: the ones it spends before it runs, and what it does around its run. */
interface Hook {
  /** The signed-in caller's budget for any mutation, if not `mutationsPerUser`. */
  budget?: RateLimit;
  /** The signed-in caller's budgets besides that one, spent with it. */
  userBudgets?: RateLimit[];
  /** Budgets of other keys (address, username), spent with the caller's (with Redis: one round trip). */
  spends?(args: Args, ctx: GraphQLContext): Array<Promise<void>>;
  /** When a budget refused the call: what to answer instead, if anything (a retry's first result). */
  refused?(args: Args, ctx: GraphQLContext): Promise<unknown>;
  /** Runs the mutation, once every spend has passed. */
  around?(args: Args, ctx: GraphQLContext, run: () => Promise<unknown>): Promise<unknown>;
}

/**
 * Spends the budgets of one attempt, all under way at once (with Redis, their commands leave in
 * one write and cost one round trip) while an HTTP request's session is checked
 * (`confirmViewer`): the caller's budgets go by the user its token claims, and are given back if
 * the session turns out to have ended (the request then runs signed out) or could not be checked.
 * With `checkedLater` (a mutation whose statement checks the session, `checkedInStatement`) the
 * check is left to that statement, unless a budget refuses. Answers the first refusal in the
 * given order, if any; throws what the session check threw.
 */
async function spendAll(ctx: GraphQLContext, userBudgets: RateLimit[], others: Array<Promise<void>>, checkedLater: boolean): Promise<unknown> {
  const confirm = () =>
    confirmViewer(ctx).then(
      () => undefined,
      (err: unknown) => ({ err }),
    );
  // A session not found standing here lately (a WebSocket quiet for a while; over HTTP such a
  // request waits before it runs) is checked before anything is spent in its user's name.
  const unconfirmed = ctx.pendingViewer && !ctx.pendingViewer.standing ? await confirm() : undefined;
  if (unconfirmed) throw unconfirmed.err;
  const claimed = ctx.viewer;
  const charged = claimed ? userBudgets : [];
  const spent = Promise.allSettled([...charged.map((budget) => budget.consume(claimed!.id)), ...others]);
  const confirming = checkedLater && ctx.pendingViewer && !ctx.pendingViewer.started ? undefined : confirm();
  let outcomes = await spent;
  // A refused call is answered as its session says (signed out, or a retried send's first message).
  const confirmed = await (confirming ?? (outcomes.some((o) => o.status === 'rejected') ? confirm() : undefined));
  if (claimed && (confirmed || !ctx.viewer)) {
    // Not the user's to spend: what a signed-out request (or none at all) would have spent stands.
    await Promise.all(charged.map((budget) => budget.reward(claimed.id)));
    if (confirmed) throw confirmed.err;
    outcomes = outcomes.slice(charged.length);
  }
  return outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected')?.reason;
}

/**
 * Mutations no budget refuses: ending a session must always be possible, also for its owner
 * when someone holding a stolen token spends the user's budget (each call ends sessions, so it
 * cannot be repeated for long).
 */
const UNBUDGETED = new Set(['logOut']);
/** Mutations whose service spends their budget itself (`Budgets.typingPerUser`). */
const BUDGETED_BY_SERVICE = new Set(['setTyping']);

/**
 * The schema with each mutation spending its budgets before it runs, whichever transport it
 * came by: every mutation of a signed-in user but `logOut` spends `mutationsPerUser` (`markRead`
 * its own instead), and some have budgets of their own, declared here, so no service has to
 * remember them. Budgets are spent by every attempt, refused or not (an attack counts). (A room's
 * budget counts only the sends it accepted: the send's statement takes it, see
 * `MessageStore.insert`.)
 */
export function withBudgets(schema: GraphQLSchema, budgets: Budgets): GraphQLSchema {
  const logInKey = (args: Args, ctx: GraphQLContext) =>
    JSON.stringify([typeof args.input?.username === 'string' ? args.input.username.toLowerCase() : '', ctx.clientAddress]);
  const hooks: Record<string, Hook> = {
    // The room's own budget is taken by the send's statement (`MessageStore.insert`), where sends are serialised.
    sendMessage: {
      userBudgets: [budgets.sendsPerUserBurst, budgets.sendsPerUserSustained],
      // A retry of a send that went through (its answer was lost) answers the first message (guarantee 4).
      refused: (args, ctx) => ctx.services.messages.sent(ctx.viewer, args.input),
    },
    markRead: { budget: budgets.readsPerUser },
    // openDirectRoom spends the same budget where it makes a room (`RoomService.openDirect`), not when it opens one.
    createRoom: { spends: (_args, ctx) => [budgets.roomsPerAddress.consume(ctx.clientAddress)] },
    signUp: { spends: (_args, ctx) => [budgets.signUpsPerAddress.consume(ctx.clientAddress)] },
    logIn: {
      spends: (args, ctx) => [budgets.logInsPerUsernameAndAddress.consume(logInKey(args, ctx)), budgets.logInsPerAddress.consume(ctx.clientAddress)],
      around: async (args, ctx, run) => {
        const result = await run();
        await budgets.logInsPerUsernameAndAddress.reset(logInKey(args, ctx));
        await budgets.logInsPerAddress.reward(ctx.clientAddress);
        return result;
      },
    },
  };
  return mapSchema(schema, {
    [MapperKind.MUTATION_ROOT_FIELD]: (field, name) => {
      const hook: Hook = hooks[name] ?? {};
      const resolve = field.resolve;
      if (!resolve || UNBUDGETED.has(name) || BUDGETED_BY_SERVICE.has(name)) return field;
      const userBudgets = [hook.budget ?? budgets.mutationsPerUser, ...(hook.userBudgets ?? [])];
      const checkedLater = CHECKED_IN_STATEMENT.has(name);
      const budgeted: GraphQLFieldResolver<unknown, GraphQLContext> = async (source, args, ctx, info) => {
        const claimed = ctx.viewer;
        // Every attempt spends them, refused or not, so they are spent together: one round trip.
        const refusal = await spendAll(ctx, userBudgets, hook.spends?.(args, ctx) ?? [], checkedLater);
        if (refusal) {
          const instead = await hook.refused?.(args, ctx);
          if (instead !== undefined) return instead;
          throw refusal;
        }
        const run = async () => resolve(source, args, ctx, info);
        const go = () => (hook.around ? hook.around(args, ctx, run) : run());
        if (!claimed || !ctx.pendingViewer) return go();
        // The session is left to the mutation's statement: what the user spent goes back if it
        // finds the session ended, or the session could not be checked (the request signed out).
        try {
          return await go();
        } finally {
          if (!ctx.viewer) await Promise.all(userBudgets.map((budget) => budget.reward(claimed.id)));
        }
      };
      return { ...field, resolve: budgeted };
    },
  });
}

/** The budgets, sized by the configuration, in Redis or in memory as `limits` keeps them. */
export function createBudgets(config: Config, limits: RateLimits): Budgets {
  return {
    sendsPerUserBurst: limits.create('send-user-burst', config.sendsPerUserPer10s, 10, 'You are sending messages too fast; slow down'),
    sendsPerUserSustained: limits.create('send-user-hour', config.sendsPerUserPerHour, 60 * 60, 'You have sent too many messages this hour; retry later'),
    roomsPerAddress: limits.create('room-address', config.roomsPerAddressPerHour, 60 * 60, 'Too many rooms created from this address; retry later'),
    signUpsPerAddress: limits.create('signup-address', config.signUpsPerAddressPerHour, 60 * 60, 'Too many accounts created from this address; retry later'),
    logInsPerUsernameAndAddress: limits.create('login', config.logInAttemptsPer15Min, 15 * 60, 'Too many log-in attempts for this username; retry later'),
    mutationsPerUser: limits.create('mutation-user', config.mutationsPerUserPer10s, 10, 'Too many changes at once; slow down'),
    typingPerUser: limits.create('typing-user', config.typingPerUserPer10s, 10, 'Too many typing changes at once; slow down'),
    readsPerUser: limits.create('read-user', config.readsPerUserPer10s, 10, 'Too many read positions at once; slow down'),
    logInsPerAddress: limits.create('login-address', config.logInFailuresPerAddressPer15Min, 15 * 60, 'Too many failed log-ins from this address; retry later'),
  };
}
