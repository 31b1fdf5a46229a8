import type { FeedEvent } from '../../chat/message-feed';
import { encodeMessageCursor } from '../../chat/cursors';
import { forbidden } from '../../errors';
import type { Resolvers } from '../generated';


/** A feed event as a `RoomEvent` union member. */
function toRoomEvent(event: FeedEvent) {
  switch (event.kind) {
    case 'added':
      return { __typename: 'MessageAdded' as const, message: event.message };
    case 'updated':
      return { __typename: 'MessageUpdated' as const, message: event.message };
    case 'delta':
      return { __typename: 'AssistantDelta' as const, messageId: event.messageId, index: event.index, text: event.text };
    case 'revoked':
      throw forbidden('You are no longer a member of this room');
  }
}

/** `schema/messages.graphql`. */
export const messageResolvers: Resolvers = {
  Query: {
    messages: (_, { roomId, ...page }, ctx) => ctx.services.messages.page(ctx.viewer, roomId, page),
  },
  Mutation: {
    sendMessage: (_, { input }, ctx) => ctx.services.messages.send(ctx.viewer, input),
  },
  Subscription: {
    messageAdded: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'messages'),
      resolve: (event: FeedEvent) => (event.kind === 'added' ? event.message : toRoomEvent(event)) as never, // only 'revoked' reaches toRoomEvent here
    },
    roomEvents: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'all'),
      resolve: (event: FeedEvent) => toRoomEvent(event),
    },
  },
  Message: {
    room: (m, _, ctx) => ctx.loaders.room.load(m.roomId).then((room) => room ?? Promise.reject(forbidden())),
    cursor: (m) => encodeMessageCursor(m.roomId, m.seq),
    author: (m, _, ctx) => ctx.loaders.user.load(m.authorId).then((u) => u ?? Promise.reject(new Error('author missing'))),
    parent: (m, _, ctx) => (m.parentId ? ctx.loaders.message.load(m.parentId) : null),
  },
};
