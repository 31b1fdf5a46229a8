import type { DataSource, EntityManager } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity, RoomEntity, UserEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import { conflict, forbidden, notFound } from '../errors';
import { REPEATED_WARNING_MS, warnAtMostEvery, type Logger } from '../logger';
import { roomTopic, userTopic, type PubSub } from '../pubsub';
import { within } from '../within';
import { isUuid, pageSize, parseInput } from '../validation';
import { lockedMembership, notMember, requireAllowed, requireMember, requireRemovable, requireViewer } from './access';
import { decodeMemberCursor, encodeMemberCursor, noCursor } from './cursors';
import { connection, type Connection } from './pages';

/** A member as `Room.members` lists them. */
export interface MemberModel {
  userId: string;
  role: Role;
}

/** A `MemberChanged` event: the member's role now, null when they left or were removed. */
export interface MemberChangedModel {
  roomId: string;
  userId: string;
  role: Role | null;
}

/**
 * Who is in a room and with what role: joining, adding, leaving, removing, role changes and the
 * member list. Rules come from `access.ts`. Every change is told to the room's subscribers
 * (`MemberChanged`; a removed member's subscriptions end, docs/guarantees.md guarantee 6) and to
 * the user concerned (`AddedToRoom`, `RemovedFromRoom` on `myEvents`), on every instance.
 */
export class MembershipService {
  /** Logs a failed publish, once a second at most (with how many were left out): Redis down fails every one. */
  private readonly publishFailed: (fields: Record<string, unknown>) => void;

  constructor(
    private readonly db: DataSource,
    private readonly pubsub: PubSub,
    log: Logger,
    /**
     * Told once a member who left or was removed is told to the room (`TypingService.end`: their
     * typing there ends now, not when it expires); never fails the change.
     */
    private readonly gone: (roomId: string, userId: string) => Promise<void> = async () => undefined,
  ) {
    this.publishFailed = warnAtMostEvery(log, REPEATED_WARNING_MS, 'publish failed; hubs notice removals by timer');
  }

  /**
   * Joins a PUBLIC room; joining a room one is already in is no change (whatever its kind). Any
   * other PRIVATE, DIRECT or unknown room is FORBIDDEN.
   */
  async join(viewer: Viewer | null, roomId: string): Promise<void> {
    const { id: userId } = requireViewer(viewer);
    const room = isUuid(roomId) ? await this.db.getRepository(RoomEntity).findOneBy({ id: roomId }) : null;
    if (room && (await this.db.getRepository(MembershipEntity).existsBy({ roomId, userId }))) return;
    if (!room || room.kind !== 'PUBLIC') throw forbidden('This room does not exist or needs an invitation');
    await this.add(roomId, userId);
  }

  /** An OWNER or ADMIN adds a user (not to a DIRECT room). No such user: NOT_FOUND. */
  async addMember(viewer: Viewer | null, roomId: string, userId: string): Promise<void> {
    const actor = await requireMember(this.db.manager, viewer, roomId);
    requireAllowed(actor, 'addMembers');
    const user = isUuid(userId) ? await this.db.getRepository(UserEntity).findOneBy({ id: userId }) : null;
    if (!user || user.isAssistant) throw notFound('No user has this id');
    await this.add(roomId, userId, actor.userId);
  }

  /** The viewer leaves. The OWNER hands over first, and a DIRECT room cannot be left (CONFLICT). */
  async leave(viewer: Viewer | null, roomId: string): Promise<void> {
    const membership = await requireMember(this.db.manager, viewer, roomId);
    if (await this.isDirect(roomId)) throw conflict('A direct room cannot be left', 'roomId');
    const left = await this.db.transaction(async (tx) => {
      const { actor } = await lockMembers(tx, roomId, membership.userId);
      if (!actor) throw notMember(); // removed meanwhile
      if (actor === 'OWNER') throw conflict('The OWNER cannot leave: hand OWNER over to another member first (setMemberRole)', 'roomId');
      return removeMembership(tx, roomId, membership.userId);
    });
    if (left !== undefined) await this.tellGone(roomId, membership.userId, left);
  }

  /** An OWNER or ADMIN removes a member (only the OWNER an ADMIN; nobody the OWNER). Not a member: NOT_FOUND. */
  async removeMember(viewer: Viewer | null, roomId: string, userId: string): Promise<void> {
    const membership = await requireMember(this.db.manager, viewer, roomId);
    const removed = await this.db.transaction(async (tx) => {
      const { actor, target } = await lockMembers(tx, roomId, membership.userId, isUuid(userId) ? userId : undefined);
      if (!actor) throw notMember(); // removed meanwhile
      if (!target) {
        requireAllowed({ role: actor }, 'removeMembers');
        throw notFound('That user is not a member of this room');
      }
      requireRemovable({ role: actor }, target);
      if (userId === membership.userId) throw conflict('Use leaveRoom to leave a room', 'userId');
      return removeMembership(tx, roomId, userId);
    });
    if (removed !== undefined) await this.tellGone(roomId, userId, removed);
  }

  /**
   * The OWNER makes a member ADMIN or MEMBER, or hands OWNER over (becoming ADMIN), so a room has
   * exactly one OWNER. Not a member: NOT_FOUND; the OWNER's own role: CONFLICT (hand over instead);
   * the role the member has already: no change.
   */
  async setRole(viewer: Viewer | null, roomId: string, userId: string, role: Role): Promise<void> {
    const membership = await requireMember(this.db.manager, viewer, roomId);
    requireAllowed(membership, 'changeRoles');
    if (!isUuid(userId)) throw notFound('That user is not a member of this room');
    if (userId === membership.userId) throw conflict('The OWNER keeps its role until it hands OWNER over to another member', 'userId');
    const changed = await this.db.transaction(async (tx) => {
      const { actor, target } = await lockMembers(tx, roomId, membership.userId, userId);
      if (!actor) throw notMember(); // removed meanwhile
      requireAllowed({ role: actor }, 'changeRoles'); // handed over meanwhile
      if (!target) throw notFound('That user is not a member of this room');
      if (target === role) return [];
      await tx.query(`UPDATE memberships SET role = $3 WHERE room_id = $1 AND user_id = $2`, [roomId, userId, role]);
      if (role === 'OWNER') await tx.query(`UPDATE memberships SET role = 'ADMIN' WHERE room_id = $1 AND user_id = $2`, [roomId, membership.userId]);
      const change = await nextChange(tx); // the last step, under both rows' locks
      return role === 'OWNER'
        ? [
            { userId, role, change },
            { userId: membership.userId, role: 'ADMIN' as Role, change },
          ]
        : [{ userId, role, change }];
    });
    await Promise.all(changed.map((c) => this.tell(roomId, c.userId, c.role, c.change)));
  }

  /** The room's members in the order they came, as a Relay page: for members, and for anyone signed in when the room is PUBLIC. */
  async list(viewer: Viewer | null, room: RoomEntity, args: { first?: number | null; after?: string | null }): Promise<Connection<MemberModel>> {
    const { id: viewerId } = requireViewer(viewer);
    const first = args.first == null ? 20 : parseInput(pageSize(100), args.first, 'first');
    const afterId = noCursor(args.after) ? 0 : decodeMemberCursor(args.after, room.id, 'after');
    if (room.kind !== 'PUBLIC' && !(await this.db.getRepository(MembershipEntity).existsBy({ roomId: room.id, userId: viewerId }))) {
      throw forbidden('You are not a member of this room, or it does not exist');
    }
    const rows: Array<{ id: number; user_id: string; role: Role }> = await this.db.query(
      `SELECT id, user_id, role FROM memberships WHERE room_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
      [room.id, afterId, first + 1],
    );
    const items = rows.map((r) => ({ node: { userId: r.user_id, role: r.role }, cursor: encodeMemberCursor(room.id, r.id) }));
    return connection(items, first, { hasPreviousPage: afterId > 0 });
  }

  /**
   * Adds a MEMBER who has read what was sent before they came (no backlog of unread); a second
   * time is no change. Added `by` a member: only while their role allows it (`lockedMembership`).
   */
  private async add(roomId: string, userId: string, by?: string): Promise<void> {
    const insert = (manager: EntityManager): Promise<Array<{ last_read_seq: number; change: string }>> =>
      manager.query(
        `INSERT INTO memberships (room_id, user_id, role, last_read_seq) SELECT id, $2, 'MEMBER', last_seq FROM rooms WHERE id = $1
         ON CONFLICT (room_id, user_id) DO NOTHING RETURNING last_read_seq, nextval('membership_changes') AS change`,
        [roomId, userId],
      );
    const rows = by
      ? await this.db.transaction(async (tx) => {
          requireAllowed(await lockedMembership(tx, roomId, by), 'addMembers'); // not removed or demoted meanwhile
          return insert(tx);
        })
      : await insert(this.db.manager);
    if (rows.length > 0) await this.tell(roomId, userId, 'MEMBER', Number(rows[0].change), { added: rows[0].last_read_seq });
  }

  /**
   * A member left or was removed: the room and the user are told, then what else ends with them
   * (`gone`); the answer waits for both no longer than for the signals alone (SIGNAL_WAIT_MS).
   */
  private async tellGone(roomId: string, userId: string, change: number): Promise<void> {
    const done = this.tell(roomId, userId, null, change, 'removed').then(() => this.gone(roomId, userId));
    await within(done, SIGNAL_WAIT_MS, undefined);
  }

  private async isDirect(roomId: string): Promise<boolean> {
    return this.db.getRepository(RoomEntity).existsBy({ id: roomId, kind: 'DIRECT' });
  }

  /**
   * Tells the room (MemberChanged; a removal ends the user's subscriptions) and, when the user came
   * (with their read position) or went, the user (AddedToRoom, RemovedFromRoom). Failures are logged.
   * Resolves once pub/sub has taken the signals, so that what anyone does after the change's answer
   * — a message sent into the room — reaches every instance after them (a removed member's
   * subscriptions end before it); or after SIGNAL_WAIT_MS (pub/sub down or slow: the timed checks heal).
   * `change`: the change's number (`nextChange`), so that hubs pass no change older than one they
   * passed, whichever instance's publish reaches them first.
   */
  tell(roomId: string, userId: string, role: Role | null, change: number, came?: { added: number } | 'removed'): Promise<void> {
    const warn = (err: unknown) => this.publishFailed({ err: (err as Error).message, roomId });
    const signals = [this.pubsub.publish(roomTopic(roomId), { kind: 'membership', userId, role, change })];
    if (came === 'removed') signals.push(this.pubsub.publish(userTopic(userId), { kind: 'removed', roomId }));
    else if (came) signals.push(this.pubsub.publish(userTopic(userId), { kind: 'added', roomId, lastReadSeq: came.added }));
    const told = Promise.all(signals.map((signal) => signal.catch(warn))).then(() => undefined);
    return within(told, SIGNAL_WAIT_MS, undefined);
  }
}

/** How long a membership change's answer waits for pub/sub to take its signals. */
const SIGNAL_WAIT_MS = 1000;

/**
 * The roles of the acting member and of the member acted on, their rows locked until `tx` ends.
 * Every change of who is in a room, or with what role, that depends on roles takes these locks
 * and decides on what it read under them: an ADMIN removing a member the OWNER is promoting at the
 * same moment either removes a MEMBER or finds an ADMIN (or the new OWNER) and is refused; never
 * a room left without its OWNER. Both rows are locked in one statement, in id order, so two
 * changes cannot wait for each other.
 */
async function lockMembers(tx: EntityManager, roomId: string, actorId: string, targetId?: string): Promise<{ actor?: Role; target?: Role }> {
  const rows: Array<{ user_id: string; role: Role }> = await tx.query(
    'SELECT user_id, role FROM memberships WHERE room_id = $1 AND user_id = ANY($2::uuid[]) ORDER BY id FOR UPDATE',
    [roomId, targetId ? [actorId, targetId] : [actorId]],
  );
  const roleOf = (userId?: string) => rows.find((r) => r.user_id === userId)?.role;
  return { actor: roleOf(actorId), target: roleOf(targetId) };
}

/** Deletes a membership: the change's number (`nextChange`), undefined when there was none. The hubs' periodic check covers a lost signal. */
async function removeMembership(tx: EntityManager, roomId: string, userId: string): Promise<number | undefined> {
  const [rows] = await tx.query(`DELETE FROM memberships WHERE room_id = $1 AND user_id = $2 RETURNING nextval('membership_changes') AS change`, [roomId, userId]);
  return rows.length > 0 ? Number(rows[0].change) : undefined;
}

/**
 * The next membership change number (`membership_changes`), taken by a change as its last step,
 * under the row locks that order it against every other change of the same member: for any one
 * member, the numbers follow the order the changes commit in (docs/guarantees.md, guarantee 5).
 */
async function nextChange(tx: EntityManager): Promise<number> {
  const [{ change }] = await tx.query(`SELECT nextval('membership_changes') AS change`);
  return Number(change);
}
