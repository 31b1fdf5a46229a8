import { encodeEventCursor, encodeMessageCursor } from '../../chat/cursors';
import type { FeedEvent } from '../../chat/message-feed';
import { forbidden } from '../../errors';
import type { Resolvers } from '../generated';

/** A feed event as a `RoomEvent` union member. */
function toRoomEvent(event: FeedEvent) {
  switch (event.kind) {
    case 'added':
    case 'updated':
      return {
        __typename: event.kind === 'added' ? ('MessageAdded' as const) : ('MessageUpdated' as const),
        cursor: encodeEventCursor(event.message.roomId, event.change),
        message: event.message,
      };
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
    editMessage: (_, { input }, ctx) => ctx.services.messages.edit(ctx.viewer, input),
    deleteMessage: (_, { messageId }, ctx) => ctx.services.messages.delete(ctx.viewer, messageId),
    addReaction: (_, { input }, ctx) => ctx.services.messages.react(ctx.viewer, input, true),
    removeReaction: (_, { input }, ctx) => ctx.services.messages.react(ctx.viewer, input, false),
  },
  Subscription: {
    messageAdded: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'messages'),
      resolve: (event: FeedEvent) => (event.kind === 'added' ? event.message : toRoomEvent(event)) as never, // only 'revoked' reaches toRoomEvent here
    },
    roomEvents: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'changes'),
      resolve: (event: FeedEvent) => toRoomEvent(event),
    },
  },
  Message: {
    room: (m, _, ctx) => ctx.loaders.room.load(m.roomId).then((room) => room ?? Promise.reject(forbidden())),
    cursor: (m) => encodeMessageCursor(m.roomId, m.seq),
    author: (m, _, ctx) => ctx.loaders.user.load(m.authorId).then((u) => u ?? Promise.reject(new Error('author missing'))),
    parent: (m, _, ctx) => (m.parentId ? ctx.loaders.message.load(m.parentId) : null),
    deleted: (m) => m.deletedAt != null,
  },
  Reaction: {
    count: (r) => r.userIds.length,
    viewerReacted: (r, _, ctx) => ctx.viewer != null && r.userIds.includes(ctx.viewer.id),
  },
};
