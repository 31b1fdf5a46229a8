import { encodeEventCursor, encodeMessageCursor } from '../../chat/cursors';
import type { FeedEvent } from '../../chat/message-feed';
import { forbidden } from '../../errors';
import { UserEntity } from '../../db/entities';
import type { Resolvers } from '../generated';
import { checkedInStatement } from '../viewer';

/** A feed event of room `roomId` as a `RoomEvent` union member. */
function toRoomEvent(event: FeedEvent, roomId: string) {
  switch (event.kind) {
    case 'added':
    case 'updated':
      return {
        __typename: event.kind === 'added' ? ('MessageAdded' as const) : ('MessageUpdated' as const),
        cursor: encodeEventCursor(roomId, event.change, event.added),
        message: event.message,
      };
    case 'delta':
      return { __typename: 'AssistantDelta' as const, messageId: event.messageId, index: event.index, text: event.text };
    case 'membership':
      return { __typename: 'MemberChanged' as const, roomId, userId: event.userId, role: event.role };
    case 'typing':
      return { __typename: 'TypingChanged' as const, roomId, userId: event.userId, typing: event.typing };
    case 'presence':
      return { __typename: 'PresenceChanged' as const, roomId, userId: event.userId, online: event.online };
    case 'revoked':
      throw forbidden('You are no longer a member of this room');
  }
}

/** `schema/messages.graphql`. */
export const messageResolvers: Resolvers = {
  Query: {
    messages: (_, { roomId, ...page }, ctx) => ctx.services.messages.page(ctx.viewer, roomId, page),
    searchMessages: (_, args, ctx) => ctx.services.messages.search(ctx.viewer, args),
  },
  Mutation: {
    sendMessage: (_, { input }, ctx) => checkedInStatement(ctx, (session) => ctx.services.messages.send(ctx.viewer, input, session)),
    editMessage: (_, { input }, ctx) => ctx.services.messages.edit(ctx.viewer, input),
    deleteMessage: (_, { messageId }, ctx) => ctx.services.messages.delete(ctx.viewer, messageId),
    addReaction: (_, { input }, ctx) => ctx.services.messages.react(ctx.viewer, input, true),
    removeReaction: (_, { input }, ctx) => ctx.services.messages.react(ctx.viewer, input, false),
  },
  Subscription: {
    messageAdded: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'messages'),
      resolve: (event: FeedEvent, { roomId }: { roomId: string }) => (event.kind === 'added' ? event.message : toRoomEvent(event, roomId)) as never, // only 'revoked' reaches toRoomEvent here
    },
    roomEvents: {
      subscribe: (_, { roomId, after }, ctx) => ctx.services.subscriptions.open(ctx.viewer, roomId, after, 'changes'),
      resolve: (event: FeedEvent, { roomId }: { roomId: string }) => toRoomEvent(event, roomId) as never,
    },
  },
  Message: {
    room: (m, _, ctx) => ctx.loaders.room.load(m.roomId).then((room) => room ?? Promise.reject(forbidden())),
    cursor: (m) => encodeMessageCursor(m.roomId, m.seq),
    version: (m) => m.changeSeq,
    author: (m, _, ctx) => ctx.loaders.user.load(m.authorId).then((u) => u ?? Promise.reject(new Error('author missing'))),
    parent: (m, _, ctx) => (m.parentId ? ctx.loaders.message.load(m.parentId) : null),
    deleted: (m) => m.deletedAt != null,
    mentions: async (m, _, ctx) => (await ctx.loaders.user.loadMany(m.mentions)).filter((u): u is UserEntity => u instanceof UserEntity),
  },
  MemberChanged: {
    user: (e, _, ctx) => ctx.loaders.user.load(e.userId).then((u) => u ?? Promise.reject(forbidden())),
  },
  Reaction: {
    count: (r) => r.userIds.length,
    viewerReacted: (r, _, ctx) => ctx.viewer != null && r.userIds.includes(ctx.viewer.id),
  },
};
