import type { Resolvers } from '../generated';

/** `schema/assistant.graphql`. */
export const assistantResolvers: Resolvers = {
  Mutation: {
    askAssistant: (_, { input }, ctx) => ctx.services.assistant.ask(ctx.viewer, input.messageId),
    cancelAssistant: (_, { messageId }, ctx) => ctx.services.assistant.cancel(ctx.viewer, messageId),
    updateRoom: (_, { input }, ctx) => ctx.services.rooms.update(ctx.viewer, input),
  },
};
