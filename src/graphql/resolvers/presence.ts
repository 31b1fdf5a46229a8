import type { GraphQLContext } from '../context';
import type { Resolvers } from '../generated';

/** The user an ephemeral event is about. */
const userOf = (event: { userId: string }, _: unknown, ctx: GraphQLContext) =>
  ctx.loaders.user.load(event.userId).then((u) => u ?? Promise.reject(new Error('user missing')));

/** `schema/presence.graphql`. */
export const presenceResolvers: Resolvers = {
  Mutation: {
    setTyping: (_, { roomId, typing }, ctx) => ctx.services.typing.set(ctx.viewer, roomId, typing),
  },
  TypingChanged: { user: userOf },
  PresenceChanged: { user: userOf },
};
