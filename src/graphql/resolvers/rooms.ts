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
  },
  Room: {
    viewerRole: (room, _, ctx) =>
      room.viewerRole !== undefined ? room.viewerRole : ctx.loaders.role.load(room.id),
  },
};
