import type { MyFeedEvent } from '../../chat/activity-router';
import { requireViewer } from '../../chat/access';
import { forbidden } from '../../errors';
import type { GraphQLContext } from '../context';
import type { Resolvers } from '../generated';

/** A room of the viewer's own feed, as it is now (FORBIDDEN when it is gone). */
const roomOf = (roomId: string, ctx: GraphQLContext) => ctx.loaders.room.load(roomId).then((room) => room ?? Promise.reject(forbidden()));

/** A feed event as a `MyEvent` union member. */
function toMyEvent(event: MyFeedEvent, ctx: GraphQLContext) {
  switch (event.kind) {
    case 'activity': {
      // The room as that message found it: the viewer's unread count then, not at delivery.
      const readState = { lastSeq: event.message.seq, lastReadSeq: event.lastReadSeq };
      return { __typename: 'RoomActivity' as const, room: roomOf(event.message.roomId, ctx).then((room) => ({ ...room, readState })), message: event.message };
    }
    case 'mentioned':
      return { __typename: 'Mentioned' as const, message: event.message };
    case 'added':
      return { __typename: 'AddedToRoom' as const, room: roomOf(event.roomId, ctx) };
    case 'removed':
      return { __typename: 'RemovedFromRoom' as const, roomId: event.roomId };
    case 'read':
      return { __typename: 'ReadStateChanged' as const, room: roomOf(event.roomId, ctx) };
  }
}

/** `schema/events.graphql`. */
export const eventResolvers: Resolvers = {
  Subscription: {
    myEvents: {
      subscribe: (_, __, ctx) => ctx.services.activity.open(requireViewer(ctx.viewer).id),
      resolve: (event: MyFeedEvent, _: unknown, ctx: GraphQLContext) => toMyEvent(event, ctx) as never,
    },
  },
};
