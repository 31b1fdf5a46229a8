import { forbidden } from '../../errors';
import type { RoomModel } from '../../chat/models';
import type { GraphQLContext } from '../context';
import type { Resolvers } from '../generated';

/** The room's head and the viewer's read position, as of one moment (null when the viewer is not a member). */
const readState = async (room: RoomModel, ctx: GraphQLContext) => room.readState ?? (await ctx.loaders.viewer.membership.load(room.id));

/** `schema/rooms.graphql`. */
export const roomResolvers: Resolvers = {
  Query: {
    room: (_, { id }, ctx) => ctx.services.rooms.get(ctx.viewer, id),
    rooms: (_, args, ctx) => ctx.services.rooms.list(ctx.viewer, args),
    publicRooms: (_, args, ctx) => ctx.services.directory.publicRooms(ctx.viewer, args),
  },
  Mutation: {
    createRoom: (_, { input }, ctx) => ctx.services.rooms.create(ctx.viewer, input),
    joinRoom: (_, { roomId }, ctx) => ctx.services.members.join(ctx.viewer, roomId).then(() => ctx.services.rooms.viewAfterChange(ctx.viewer, roomId)),
    addMember: (_, { roomId, userId }, ctx) =>
      ctx.services.members.addMember(ctx.viewer, roomId, userId).then(() => ctx.services.rooms.viewAfterChange(ctx.viewer, roomId)),
    leaveRoom: (_, { roomId }, ctx) => ctx.services.members.leave(ctx.viewer, roomId).then(() => true),
    removeMember: (_, { roomId, userId }, ctx) =>
      ctx.services.members.removeMember(ctx.viewer, roomId, userId).then(() => ctx.services.rooms.viewAfterChange(ctx.viewer, roomId)),
    setMemberRole: (_, { roomId, userId, role }, ctx) =>
      ctx.services.members.setRole(ctx.viewer, roomId, userId, role).then(() => ctx.services.rooms.viewAfterChange(ctx.viewer, roomId)),
    openDirectRoom: (_, { userId }, ctx) => ctx.services.rooms.openDirect(ctx.viewer, userId, ctx.clientAddress),
    markRead: (_, { roomId, cursor }, ctx) => ctx.services.rooms.markRead(ctx.viewer, roomId, cursor),
  },
  Room: {
    name: async (room, _, ctx) => (room.kind === 'DIRECT' ? ((await ctx.loaders.viewer.peerName.load(room.id)) ?? room.name) : room.name),
    viewerRole: async (room, _, ctx) => (await ctx.loaders.viewer.membership.load(room.id))?.role ?? null,
    // docs/guarantees.md, guarantee 9: lastSeq, lastReadSeq, unreadCount, lastMessage and mentionCount come from one
    // snapshot of the room's head and the viewer's read position, so one answer never contradicts itself.
    lastSeq: async (room, _, ctx) => (await readState(room, ctx))?.lastSeq ?? room.lastSeq,
    lastReadSeq: async (room, _, ctx) => (await readState(room, ctx))?.lastReadSeq ?? room.lastSeq, // an outsider has nothing to read
    unreadCount: async (room, _, ctx) => {
      const state = await readState(room, ctx);
      return state ? Math.max(0, state.lastSeq - state.lastReadSeq) : 0;
    },
    // docs/guarantees.md, guarantee 6: only members read a room's messages
    lastMessage: async (room, _, ctx) => {
      const state = await readState(room, ctx);
      return state && state.lastSeq > 0 ? ctx.loaders.messageAt.load(`${room.id}@${state.lastSeq}`) : null;
    },
    mentionCount: async (room, _, ctx) => {
      const state = await readState(room, ctx);
      return state ? ctx.loaders.viewer.mentionCount.load(room.id, state) : 0;
    },
    memberCount: (room, _, ctx) => ctx.loaders.memberCount.load(room.id),
    members: (room, args, ctx) => ctx.services.members.list(ctx.viewer, room, args),
  },
  Member: {
    user: (member, _, ctx) => ctx.loaders.user.load(member.userId).then((u) => u ?? Promise.reject(forbidden())),
  },
};
