import DataLoader from 'dataloader';
import type { GraphQLContext } from '../context';
import type { Resolvers } from '../generated';

/** The user an ephemeral event is about. */
const userOf = (event: { userId: string }, _: unknown, ctx: GraphQLContext) =>
  ctx.loaders.user.load(event.userId).then((u) => u ?? Promise.reject(new Error('user missing')));

/** One `online` lookup per operation (or subscription event): a page of members costs one store round trip. */
const onlineLoaders = new WeakMap<object, DataLoader<string, boolean>>();
function onlineLoader(ctx: GraphQLContext): DataLoader<string, boolean> {
  let loader = onlineLoaders.get(ctx.loaders);
  if (!loader) {
    loader = new DataLoader(async (ids) => {
      const online = await ctx.services.presence.online(ids);
      return ids.map((id) => online.has(id));
    });
    onlineLoaders.set(ctx.loaders, loader);
  }
  return loader;
}

/** `schema/presence.graphql`. */
export const presenceResolvers: Resolvers = {
  Mutation: {
    setTyping: (_, { roomId, typing }, ctx) => ctx.services.typing.set(ctx.viewer, roomId, typing),
  },
  TypingChanged: { user: userOf },
  PresenceChanged: { user: userOf },
  Member: {
    online: (member, _, ctx) => onlineLoader(ctx).load(member.userId),
  },
};
