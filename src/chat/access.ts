import type { EntityManager } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity, MessageEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import { conflict, ErrorCode, forbidden, hasCode, unauthenticated } from '../errors';
import type { MessageModel } from '../pubsub';
import { isUuid } from '../validation';

/**
 * Who may do what: every access rule of the API in one place; owns docs/guarantees.md guarantee 6.
 * "Missing" and "forbidden" are one answer, so ids cannot be probed.
 */

/** The viewer, or UNAUTHENTICATED. */
export function requireViewer(viewer: Viewer | null): Viewer {
  if (!viewer) throw unauthenticated();
  return viewer;
}

/** The one FORBIDDEN answer for a room that is missing, foreign or malformed. */
export const notMember = () => forbidden('You are not a member of this room, or it does not exist');

/**
 * The viewer's membership of the room, or FORBIDDEN — the same answer for a room that does not
 * exist, one the viewer is not in, and an id that is not even well formed.
 */
export async function requireMember(manager: EntityManager, viewer: Viewer | null, roomId: string): Promise<MembershipEntity> {
  const { id: userId } = requireViewer(viewer);
  const membership = isUuid(roomId) ? await manager.getRepository(MembershipEntity).findOneBy({ roomId, userId }) : null;
  if (!membership) throw notMember();
  return membership;
}

/**
 * The user's membership of the room, read in `tx` under a row lock held until `tx` ends (FOR KEY
 * SHARE); none, `missing()` is thrown (FORBIDDEN as for a room they are not in, by default). A
 * removal or a role change (`lockMembers` locks the row FOR UPDATE first) waits for a change made
 * under it to commit, and a change that comes while one is under way reads the row once it has
 * committed. So what a member is answered to have lost — the room, or a role — they cannot do
 * after that answer (docs/guarantees.md, guarantee 6). Taken before the room's row, as the send's
 * statement takes them, so that the two are always locked in the same order.
 */
export async function lockedMembership(
  tx: EntityManager,
  roomId: string,
  userId: string,
  missing: () => Error = notMember,
): Promise<Pick<MembershipEntity, 'userId' | 'role'>> {
  const [row]: Array<{ role: Role }> = await tx.query('SELECT role FROM memberships WHERE room_id = $1 AND user_id = $2 FOR KEY SHARE', [roomId, userId]);
  if (!row) throw missing();
  return { userId, role: row.role };
}

/** The one FORBIDDEN answer for a message that is missing, foreign, malformed, or in a room the viewer is not in. */
export const unreadableMessage = (field = 'messageId') => forbidden(`${field} does not name a message you can read`);

/**
 * What each role may do in a room beyond reading, writing, editing and deleting its own messages,
 * reacting and leaving. A DIRECT room has no OWNER or ADMIN (both people are MEMBERs), so nobody
 * may do any of this there; nor can anyone join or be added to it.
 */
export const PERMISSIONS = {
  /** Change the room's name. */
  rename: { OWNER: true, ADMIN: true, MEMBER: false },
  /** Turn the assistant on or off and change its instructions. */
  configureAssistant: { OWNER: true, ADMIN: false, MEMBER: false },
  /** Bring a user into the room (any room kind but DIRECT). */
  addMembers: { OWNER: true, ADMIN: true, MEMBER: false },
  /** Remove a MEMBER. */
  removeMembers: { OWNER: true, ADMIN: true, MEMBER: false },
  /** Remove an ADMIN. (Nobody removes the OWNER: it hands over first.) */
  removeAdmins: { OWNER: true, ADMIN: false, MEMBER: false },
  /** Delete messages someone else wrote. */
  deleteOthersMessages: { OWNER: true, ADMIN: true, MEMBER: false },
  /** Cancel an assistant reply someone else asked for. */
  cancelOthersReplies: { OWNER: true, ADMIN: true, MEMBER: false },
  /** Make a member ADMIN or MEMBER, or hand OWNER over (the old OWNER becomes ADMIN). */
  changeRoles: { OWNER: true, ADMIN: false, MEMBER: false },
} as const satisfies Record<string, Record<Role, boolean>>;

export type RoomAction = keyof typeof PERMISSIONS;

/** Whether a member of `role` may do `action`. */
export const allows = (role: Role, action: RoomAction): boolean => PERMISSIONS[action][role];

/** FORBIDDEN unless the member's role may do `action`. */
export function requireAllowed(membership: Pick<MembershipEntity, 'role'>, action: RoomAction): void {
  if (allows(membership.role, action)) return;
  const roles = (Object.keys(PERMISSIONS[action]) as Role[]).filter((r) => allows(r, action));
  throw forbidden(`Only ${roles.join(' or ')} members may ${ACTION_WORDS[action]}`);
}

const ACTION_WORDS: Record<RoomAction, string> = {
  rename: 'rename the room',
  configureAssistant: "change the room's assistant",
  addMembers: 'add members',
  removeMembers: 'remove members',
  removeAdmins: 'remove an ADMIN',
  deleteOthersMessages: "delete others' messages",
  cancelOthersReplies: 'cancel a reply someone else asked for',
  changeRoles: 'change roles',
};

/** Who may remove a member of `target` role: the OWNER never (CONFLICT: hand over first). */
export function requireRemovable(membership: Pick<MembershipEntity, 'role'>, target: Role): void {
  requireAllowed(membership, 'removeMembers');
  if (target === 'OWNER') throw conflict('The OWNER cannot be removed; the OWNER hands over first (setMemberRole)', 'userId');
  if (target === 'ADMIN') requireAllowed(membership, 'removeAdmins');
}

/** The matrix as a Markdown table (README and docs show it from here, so they cannot drift). */
export function permissionTable(): string {
  const roles: Role[] = ['OWNER', 'ADMIN', 'MEMBER'];
  const rows = (Object.keys(PERMISSIONS) as RoomAction[]).map(
    (action) => `| ${ACTION_WORDS[action]} | ${roles.map((r) => (allows(r, action) ? 'yes' : 'no')).join(' | ')} |`,
  );
  return [`| action | ${roles.join(' | ')} |`, `| --- | ${roles.map(() => '---').join(' | ')} |`, ...rows].join('\n');
}

/**
 * A message the viewer may read and the viewer's membership of its room, or FORBIDDEN — one
 * answer for a missing, foreign and malformed id.
 */
export async function requireReadableMessage(
  manager: EntityManager,
  viewer: Viewer | null,
  messageId: string,
  field = 'messageId',
): Promise<{ message: MessageEntity; membership: MembershipEntity }> {
  requireViewer(viewer);
  const unreadable = () => unreadableMessage(field);
  const message = isUuid(messageId) ? await manager.getRepository(MessageEntity).findOneBy({ id: messageId }) : null;
  if (!message) throw unreadable();
  const membership = await requireMember(manager, viewer, message.roomId).catch((err) => {
    throw hasCode(err, ErrorCode.Forbidden) ? unreadable() : err;
  });
  return { message, membership };
}

/** Only the author edits a message (so never an assistant reply), and never a deleted one. */
export function requireEditable(message: MessageModel, membership: Pick<MembershipEntity, 'userId'>): void {
  if (message.authorId !== membership.userId) throw forbidden('Only the author can edit a message');
  if (message.deletedAt) throw conflict('This message was deleted', 'messageId');
}

/** The author deletes a message; others need `deleteOthersMessages`. */
export function requireDeletable(message: MessageModel, membership: Pick<MembershipEntity, 'userId' | 'role'>): void {
  if (message.authorId !== membership.userId) requireAllowed(membership, 'deleteOthersMessages');
}

/** The asker cancels an assistant reply; others need `cancelOthersReplies`. */
export function requireCancellable(reply: Pick<MessageEntity, 'askedBy'>, membership: Pick<MembershipEntity, 'userId' | 'role'>): void {
  if (reply.askedBy !== membership.userId) requireAllowed(membership, 'cancelOthersReplies');
}
