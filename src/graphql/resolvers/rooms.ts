import type { Resolvers } from '../generated';

/** `schema/rooms.graphql`. */
export const roomResolvers: Resolvers = {
  Query: {
    room: (_, { id }, ctx) => ctx.services.rooms.get(ctx.viewer, id),
    rooms: (_, args, ctx) => ctx.services.rooms.list(ctx.viewer, args),
  },
  Mutation: {
    createRoom: (_, { input }, ctx) => ctx.services.rooms.create(ctx.viewer, input),
    joinRoom: (_, { roomId }, ctx) => ctx.services.rooms.join(ctx.viewer, roomId),
    addMember: (_, { roomId, userId }, ctx) => ctx.services.rooms.addMember(ctx.viewer, roomId, userId),
    leaveRoom: (_, { roomId }, ctx) => ctx.services.rooms.leave(ctx.viewer, roomId),
    removeMember: (_, { roomId, userId }, ctx) => ctx.services.rooms.removeMember(ctx.viewer, roomId, userId),
    markRead: (_, { roomId, cursor }, ctx) => ctx.services.rooms.markRead(ctx.viewer, roomId, cursor),
  },
  Room: {
    viewerRole: async (room, _, ctx) => (await ctx.loaders.viewer.membership.load(room.id))?.role ?? null,
    lastReadSeq: async (room, _, ctx) => (await ctx.loaders.viewer.membership.load(room.id))?.lastReadSeq ?? 0,
    // docs/guarantees.md, guarantee 9: one snapshot of the room's head and the viewer's read position
    unreadCount: async (room, _, ctx) => {
      const membership = await ctx.loaders.viewer.membership.load(room.id);
      return membership ? membership.lastSeq - membership.lastReadSeq : 0;
    },
    lastMessage: (room, _, ctx) => ctx.loaders.lastMessage.load(room.id),
  },
};
