import type { Resolvers } from '../generated';

/** `schema/auth.graphql`. */
export const authResolvers: Resolvers = {
  Query: {
    me: (_, __, ctx) => ctx.services.auth.me(ctx.viewer),
    users: (_, { query, first }, ctx) => ctx.services.directory.users(ctx.viewer, query, first),
  },
  Mutation: {
    signUp: (_, { input }, ctx) => ctx.services.auth.signUp(input),
    logIn: (_, { input }, ctx) => ctx.services.auth.logIn(input),
    refreshSession: (_, { refreshToken }, ctx) => ctx.services.sessions.refresh(refreshToken, ctx.socket, ctx.holdForAnswer),
    logOut: async (_, { allSessions }, ctx) => {
      const ended = await ctx.services.sessions.logOut(ctx.viewer, allSessions ?? false);
      ctx.viewer = null; // the rest of the operation (a send after it in the same document) runs signed out
      return ended;
    },
  },
};
