import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity, RoomEntity, UserEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import { badUserInput, conflict, forbidden, notFound } from '../errors';
import type { PubSub } from '../pubsub';
import { roomTopic } from '../pubsub';
import type { Logger } from '../logger';
import { createRoomInput, isUuid, pageSize, parseInput, updateRoomInput } from '../validation';
import { requireMember, requireOwner, requireViewer } from './access';
import { decodeResumeCursor, decodeRoomCursor, encodeRoomCursor } from './cursors';
import type { RoomStore } from './room-store';
import type { RoomModel } from './models';
import { connection, type Connection } from './pages';

/** Rooms and who is in them. */
export class RoomService {
  constructor(
    private readonly db: DataSource,
    private readonly store: RoomStore,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
  ) {}

  /** Creates a room with the viewer as its OWNER. */
  async create(viewer: Viewer | null, raw: unknown): Promise<RoomModel> {
    const { id: userId } = requireViewer(viewer);
    const input = parseInput(createRoomInput, raw);
    return this.db.transaction(async (tx) => {
      const room = await tx.getRepository(RoomEntity).save({
        name: input.name,
        kind: input.kind,
        assistantEnabled: input.assistantEnabled ?? false,
        assistantInstructions: input.assistantInstructions?.trim() || null,
        createdBy: userId,
      });
      await tx.getRepository(MembershipEntity).insert({ roomId: room.id, userId, role: 'OWNER' });
      return { ...room, viewerRole: 'OWNER' as Role };
    });
  }

  /** Joins a PUBLIC room; idempotent. A PRIVATE or unknown room is FORBIDDEN. */
  async join(viewer: Viewer | null, roomId: string): Promise<RoomModel> {
    const { id: userId } = requireViewer(viewer);
    const room = isUuid(roomId) ? await this.db.getRepository(RoomEntity).findOneBy({ id: roomId }) : null;
    if (!room || room.kind !== 'PUBLIC') {
      throw forbidden('This room does not exist or needs an invitation');
    }
    await this.addMembership(roomId, userId);
    return this.viewAs(viewer, roomId);
  }

  /** The room's OWNER adds a user. Not the OWNER (or no such room): FORBIDDEN; no such user: NOT_FOUND. */
  async addMember(viewer: Viewer | null, roomId: string, userId: string): Promise<RoomModel> {
    requireOwner(await requireMember(this.db.manager, viewer, roomId), 'add members');
    const user = isUuid(userId) ? await this.db.getRepository(UserEntity).findOneBy({ id: userId }) : null;
    if (!user) throw notFound('No user has this id');
    await this.addMembership(roomId, userId);
    return this.viewAs(viewer, roomId);
  }

  /** The OWNER changes the room's assistant settings; anyone else gets FORBIDDEN. */
  async update(viewer: Viewer | null, raw: unknown): Promise<RoomModel> {
    const input = parseInput(updateRoomInput, raw);
    requireOwner(await requireMember(this.db.manager, viewer, input.roomId), 'change the room');
    const changes: Partial<RoomEntity> = {};
    if (input.assistantEnabled != null) changes.assistantEnabled = input.assistantEnabled;
    if (input.assistantInstructions != null) changes.assistantInstructions = input.assistantInstructions.trim() || null;
    if (Object.keys(changes).length > 0) await this.db.getRepository(RoomEntity).update({ id: input.roomId }, changes);
    return this.viewAs(viewer, input.roomId);
  }

  /** The viewer leaves a room. The OWNER cannot leave (CONFLICT); a non-member gets FORBIDDEN. */
  async leave(viewer: Viewer | null, roomId: string): Promise<boolean> {
    const membership = await requireMember(this.db.manager, viewer, roomId);
    if (membership.role === 'OWNER') throw conflict('The owner cannot leave the room', 'roomId');
    await this.removeMembership(roomId, membership.userId);
    return true;
  }

  /** The OWNER removes a member. Not the OWNER: FORBIDDEN; not a member: NOT_FOUND; the OWNER themself: CONFLICT. */
  async removeMember(viewer: Viewer | null, roomId: string, userId: string): Promise<RoomModel> {
    const membership = await requireMember(this.db.manager, viewer, roomId);
    requireOwner(membership, 'remove members');
    if (userId === membership.userId) throw conflict('The owner cannot remove themself', 'userId');
    const target = isUuid(userId) ? await this.db.getRepository(MembershipEntity).findOneBy({ roomId, userId }) : null;
    if (!target) throw notFound('That user is not a member of this room');
    await this.removeMembership(roomId, userId);
    return this.viewAs(viewer, roomId);
  }

  /**
   * The viewer has read the room up to a message (a message or event cursor of the room):
   * `lastReadSeq` only moves forward, so a repeat or an older cursor changes nothing
   * (owns docs/guarantees.md guarantee 9; idempotent as guarantee 10 asks).
   */
  async markRead(viewer: Viewer | null, roomId: string, cursor: string): Promise<RoomModel> {
    const { userId } = await requireMember(this.db.manager, viewer, roomId);
    const point = decodeResumeCursor(cursor, roomId, 'cursor');
    const seq = point.seq ?? (await this.store.seqAt(roomId, point.change!));
    const [rows] = await this.db.query(
      `UPDATE memberships m SET last_read_seq = GREATEST(m.last_read_seq, $3) FROM rooms r
       WHERE m.room_id = $1 AND m.user_id = $2 AND r.id = m.room_id AND $3 <= r.last_seq RETURNING m.id`,
      [roomId, userId, seq],
    );
    if (rows.length === 0) throw badUserInput('cursor is beyond the newest message of this room', 'cursor');
    return this.viewAs(viewer, roomId);
  }

  /** A room the viewer is in, or null (missing and foreign rooms alike). */
  async get(viewer: Viewer | null, roomId: string): Promise<RoomModel | null> {
    if (!viewer || !isUuid(roomId)) return null;
    const row = await this.db
      .getRepository(RoomEntity)
      .createQueryBuilder('r')
      .innerJoin(MembershipEntity, 'm', 'm.room_id = r.id AND m.user_id = :userId', { userId: viewer.id })
      .addSelect('m.role', 'role')
      .where('r.id = :roomId', { roomId })
      .getRawAndEntities();
    const room = row.entities[0];
    return room ? { ...room, viewerRole: row.raw[0].role as Role } : null;
  }

  /** The viewer's rooms in the order joined, as a Relay page. */
  async list(viewer: Viewer | null, args: { first?: number | null; after?: string | null }): Promise<Connection<RoomModel>> {
    const { id: userId } = requireViewer(viewer);
    const first = args.first == null ? 20 : parseInput(pageSize(100), args.first, 'first');
    const afterId = args.after == null ? 0 : decodeRoomCursor(args.after, 'after');
    const { entities, raw } = await this.db
      .getRepository(RoomEntity)
      .createQueryBuilder('r')
      .innerJoin(MembershipEntity, 'm', 'm.room_id = r.id')
      .addSelect(['m.id AS membership_id', 'm.role AS role'])
      .where('m.user_id = :userId AND m.id > :afterId', { userId, afterId })
      .orderBy('m.id', 'ASC')
      .limit(first + 1)
      .getRawAndEntities();
    const items = entities.map((room, i) => ({
      node: { ...room, viewerRole: raw[i].role as Role },
      cursor: encodeRoomCursor(Number(raw[i].membership_id)),
    }));
    return connection(items, first, { hasPreviousPage: afterId > 0 });
  }

  private async viewAs(viewer: Viewer | null, roomId: string): Promise<RoomModel> {
    const room = await this.get(viewer, roomId);
    if (!room) throw forbidden();
    return room;
  }

  /** Adds a MEMBER who has read what was sent before they came (no backlog of unread); joining twice is no change. */
  private async addMembership(roomId: string, userId: string): Promise<void> {
    await this.db.query(
      `INSERT INTO memberships (room_id, user_id, role, last_read_seq) SELECT id, $2, 'MEMBER', last_seq FROM rooms WHERE id = $1
       ON CONFLICT (room_id, user_id) DO NOTHING`,
      [roomId, userId],
    );
  }

  /**
   * Deletes a membership and tells every instance, so the user's live subscriptions to the room
   * end with FORBIDDEN (docs/guarantees.md, guarantee 6). The hubs' periodic check covers a lost signal.
   */
  private async removeMembership(roomId: string, userId: string): Promise<void> {
    await this.db.getRepository(MembershipEntity).delete({ roomId, userId });
    await this.pubsub
      .publish(roomTopic(roomId), { kind: 'membership', userId, member: false })
      .catch((err) => this.log.warn({ err: (err as Error).message, roomId }, 'publish failed; hubs will notice by timer'));
  }
}
