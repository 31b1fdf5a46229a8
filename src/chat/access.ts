import type { EntityManager } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity, MessageEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import { AppError, conflict, ErrorCode, forbidden, unauthenticated } from '../errors';
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

/** Roles that manage a room: change its settings, add and remove members, delete others' messages. */
const MANAGERS: readonly Role[] = ['OWNER', 'ADMIN'];

/** FORBIDDEN unless the membership has one of `roles`. */
export function requireRole(membership: MembershipEntity, roles: readonly Role[], what: string): void {
  if (!roles.includes(membership.role)) throw forbidden(`Only ${roles.join(' or ')} members can ${what}`);
}

/** FORBIDDEN unless the member is the room's OWNER. */
export const requireOwner = (membership: MembershipEntity, what: string) => requireRole(membership, ['OWNER'], what);

/** FORBIDDEN unless the member is the room's OWNER or an ADMIN. */
export const requireManager = (membership: MembershipEntity, what: string) => requireRole(membership, MANAGERS, what);

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
  const unreadable = () => forbidden(`${field} does not name a message you can read`);
  const message = isUuid(messageId) ? await manager.getRepository(MessageEntity).findOneBy({ id: messageId }) : null;
  if (!message) throw unreadable();
  const membership = await requireMember(manager, viewer, message.roomId).catch((err) => {
    throw err instanceof AppError && err.code === ErrorCode.Forbidden ? unreadable() : err;
  });
  return { message, membership };
}

/** Only the author edits a message (so never an assistant reply), and never a deleted one. */
export function requireEditable(message: MessageModel, membership: MembershipEntity): void {
  if (message.authorId !== membership.userId) throw forbidden('Only the author can edit a message');
  if (message.deletedAt) throw conflict('This message was deleted', 'messageId');
}

/** The author, the room's OWNER or an ADMIN deletes a message. */
export function requireDeletable(message: MessageModel, membership: MembershipEntity): void {
  if (message.authorId !== membership.userId) requireManager(membership, "delete others' messages");
}

/** The asker, the room's OWNER or an ADMIN cancels an assistant reply. */
export function requireCancellable(reply: MessageEntity, membership: MembershipEntity): void {
  if (reply.askedBy !== membership.userId) requireManager(membership, 'cancel a reply someone else asked for');
}
