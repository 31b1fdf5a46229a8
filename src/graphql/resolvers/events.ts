import type { MyFeedEvent, ReadState } from '../../chat/activity-router';
import { requireViewer } from '../../chat/access';
import { forbidden } from '../../errors';
import type { GraphQLContext } from '../context';
import type { Resolvers } from '../generated';

/** A room of the viewer's own feed, as it is now (FORBIDDEN when it is gone). */
const roomOf = (roomId: string, ctx: GraphQLContext) => ctx.loaders.room.load(roomId).then((room) => room ?? Promise.reject(forbidden()));

/** A room of the viewer's own feed with its read state as the feed told it (as it is now without one). */
const roomAt = (roomId: string, readState: ReadState | undefined, ctx: GraphQLContext) =>
  readState ? roomOf(roomId, ctx).then((room) => ({ ...room, readState })) : roomOf(roomId, ctx);

/** A feed event as a `MyEvent` union member. */
function toMyEvent(event: MyFeedEvent, ctx: GraphQLContext) {
  switch (event.kind) {
    case 'activity':
      // The room's read state as the feed told it then, not at delivery (docs/guarantees.md, "The viewer's feed").
      return { __typename: 'RoomActivity' as const, room: roomAt(event.message.roomId, event.readState, ctx), message: event.message };
    case 'mentioned':
      return { __typename: 'Mentioned' as const, message: event.message };
    case 'added':
      return { __typename: 'AddedToRoom' as const, room: roomOf(event.roomId, ctx) };
    case 'removed':
      return { __typename: 'RemovedFromRoom' as const, roomId: event.roomId };
    case 'read':
      return { __typename: 'ReadStateChanged' as const, room: roomAt(event.roomId, event.readState, ctx) };
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
