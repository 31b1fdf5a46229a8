import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import type { RateLimit } from '../rate-limit';
import { MembershipEntity, RoomEntity, UserEntity } from '../db/entities';
import { badUserInput, forbidden, notFound } from '../errors';
import { userTopic, type PubSub } from '../pubsub';
import { createRoomInput, isUuid, pageSize, parseInput, updateRoomInput } from '../validation';
import { lockedMembership, requireAllowed, requireMember, requireViewer } from './access';
import { decodeResumeCursor, decodeRoomCursor, encodeRoomCursor, noCursor, refuseBeyondHead } from './cursors';
import type { MembershipService } from './membership-service';
import type { RoomStore } from './room-store';
import type { RoomModel } from './models';
import { connection, type Connection } from './pages';

/** Rooms: creating and changing them, the viewer's list, direct rooms, read positions. */
export class RoomService {
  constructor(
    private readonly db: DataSource,
    private readonly store: RoomStore,
    private readonly members: MembershipService,
    private readonly pubsub: PubSub,
    /** Rooms made per client address (`ROOMS_PER_ADDRESS_PER_HOUR`): spent here by a direct room where one is made. */
    private readonly roomsPerAddress: RateLimit,
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
      return room;
    });
  }

  /** Renames the room (OWNER, ADMIN) and changes its assistant settings (OWNER); see `access.ts`. */
  async update(viewer: Viewer | null, raw: unknown): Promise<RoomModel> {
    const input = parseInput(updateRoomInput, raw);
    const allowed = (membership: Pick<MembershipEntity, 'role'>) => {
      if (input.name != null) requireAllowed(membership, 'rename');
      if (input.assistantEnabled != null || input.assistantInstructions != null) requireAllowed(membership, 'configureAssistant');
    };
    const membership = await requireMember(this.db.manager, viewer, input.roomId);
    allowed(membership);
    const changes: Partial<RoomEntity> = {};
    if (input.name != null) changes.name = input.name;
    if (input.assistantEnabled != null) changes.assistantEnabled = input.assistantEnabled;
    if (input.assistantInstructions != null) changes.assistantInstructions = input.assistantInstructions.trim() || null;
    if (Object.keys(changes).length > 0) {
      // Made only while the role still allows it (`lockedMembership`): not by a member demoted or removed meanwhile.
      await this.db.transaction(async (tx) => {
        allowed(await lockedMembership(tx, input.roomId, membership.userId));
        await tx.getRepository(RoomEntity).update({ id: input.roomId }, changes);
      });
    }
    return this.viewAs(viewer, input.roomId);
  }

  /**
   * The viewer has read the room up to a message (a message or event cursor of the room):
   * `lastReadSeq` only moves forward, so a repeat or an older cursor changes nothing
   * (owns docs/guarantees.md guarantee 9; idempotent as guarantee 10 asks).
   */
  async markRead(viewer: Viewer | null, roomId: string, cursor: string): Promise<RoomModel> {
    const { userId } = await requireMember(this.db.manager, viewer, roomId);
    const point = decodeResumeCursor(cursor, roomId, 'cursor');
    refuseBeyondHead(point, await this.store.head(roomId), 'cursor');
    const seq = point.seq ?? (await this.store.seqAt(roomId, point.change));
    const [moved] = await this.db.query(
      `UPDATE memberships SET last_read_seq = $3 WHERE room_id = $1 AND user_id = $2 AND last_read_seq < $3 RETURNING id`,
      [roomId, userId, seq],
    );
    if (moved.length > 0) {
      // ReadStateChanged on the viewer's other devices; a repeat or an older cursor moved nothing and says nothing.
      this.pubsub.publish(userTopic(userId), { kind: 'read', roomId, lastReadSeq: seq }).catch(() => undefined);
    }
    return this.viewAs(viewer, roomId);
  }

  /**
   * The viewer's DIRECT room with another user: created with both as MEMBERs the first time, the
   * same room every later time — also when both open it at once, since the unique pair key decides.
   * Not for oneself or the assistant (BAD_USER_INPUT); an unknown user is NOT_FOUND. Making the
   * room spends a room of `clientAddress`'s budget; opening it again spends none.
   */
  async openDirect(viewer: Viewer | null, otherId: string, clientAddress: string): Promise<RoomModel> {
    const { id: me } = requireViewer(viewer);
    const other = isUuid(otherId) ? await this.db.getRepository(UserEntity).findOneBy({ id: otherId.toLowerCase() }) : null;
    if (!other) throw notFound('No user has this id');
    if (other.id === me) throw badUserInput('A direct room is with someone else', 'userId');
    if (other.isAssistant) throw badUserInput('The assistant answers in rooms, not in direct rooms', 'userId');
    const key = directKey(me, other.id);
    const created = await this.db.transaction(async (tx) => {
      const rows: Array<{ id: string }> = await tx.query(
        `INSERT INTO rooms (name, kind, created_by, direct_key) VALUES ('', 'DIRECT', $1, $2) ON CONFLICT (direct_key) DO NOTHING RETURNING id`,
        [me, key],
      );
      if (rows.length === 0) return undefined;
      // Made here, so the address pays for it (RATE_LIMITED undoes the insert). Whoever opens the
      // pair meanwhile waits at the unique key for this transaction, then finds the room and pays nothing.
      await this.roomsPerAddress.consume(clientAddress);
      const members: Array<{ user_id: string; change: string }> = await tx.query(
        `INSERT INTO memberships (room_id, user_id, role) VALUES ($1, $2, 'MEMBER'), ($1, $3, 'MEMBER') RETURNING user_id, nextval('membership_changes') AS change`,
        [rows[0].id, me, other.id],
      );
      return { roomId: rows[0].id, members };
    });
    const roomId = created?.roomId ?? (await this.db.query('SELECT id FROM rooms WHERE direct_key = $1', [key]))[0].id;
    if (created) await Promise.all(created.members.map((m) => this.members.tell(roomId, m.user_id, 'MEMBER', Number(m.change), { added: 0 })));
    return this.viewAs(viewer, roomId);
  }

  /** A room the viewer is in, or null (missing and foreign rooms alike). */
  async get(viewer: Viewer | null, roomId: string): Promise<RoomModel | null> {
    if (!viewer || !isUuid(roomId)) return null;
    const room = await this.db
      .getRepository(RoomEntity)
      .createQueryBuilder('r')
      .innerJoin(MembershipEntity, 'm', 'm.room_id = r.id AND m.user_id = :userId', { userId: viewer.id })
      .where('r.id = :roomId', { roomId })
      .getOne();
    return room ?? null;
  }

  /** The viewer's rooms in the order joined, as a Relay page. */
  async list(viewer: Viewer | null, args: { first?: number | null; after?: string | null }): Promise<Connection<RoomModel>> {
    const { id: userId } = requireViewer(viewer);
    const first = args.first == null ? 20 : parseInput(pageSize(100), args.first, 'first');
    const afterId = noCursor(args.after) ? 0 : decodeRoomCursor(args.after, 'after');
    const { entities, raw } = await this.db
      .getRepository(RoomEntity)
      .createQueryBuilder('r')
      .innerJoin(MembershipEntity, 'm', 'm.room_id = r.id')
      .addSelect('m.id', 'membership_id')
      .where('m.user_id = :userId AND m.id > :afterId', { userId, afterId })
      .orderBy('m.id', 'ASC')
      .limit(first + 1)
      .getRawAndEntities();
    const items = entities.map((room, i) => ({
      node: room,
      cursor: encodeRoomCursor(Number(raw[i].membership_id)),
    }));
    return connection(items, first, { hasPreviousPage: afterId > 0 });
  }

  /** A room the viewer is in, or FORBIDDEN (what a mutation on a room answers with). */
  async viewAs(viewer: Viewer | null, roomId: string): Promise<RoomModel> {
    const room = await this.get(viewer, roomId);
    if (!room) throw forbidden();
    return room;
  }

  /**
   * The answer of a membership change the viewer made (`joinRoom`, `addMember`, `removeMember`,
   * `setMemberRole`): the room as the viewer sees it now — also when they left it, or were removed,
   * between their change's commit and this read (on another device or instance). Their change was
   * made; `FORBIDDEN` would say it was refused. Read as an outsider then: no `viewerRole`, nothing
   * unread, and the fields only members may read refused on their own.
   */
  async viewAfterChange(viewer: Viewer | null, roomId: string): Promise<RoomModel> {
    const room = (await this.get(viewer, roomId)) ?? (viewer ? await this.db.getRepository(RoomEntity).findOneBy({ id: roomId }) : null);
    if (!room) throw forbidden();
    return room;
  }
}

/** What names the one direct room of two users, whichever of them opens it. */
const directKey = (a: string, b: string) => [a, b].sort().join(':');
