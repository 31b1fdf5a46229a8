import type { EntityManager } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity } from '../db/entities';
import { forbidden, unauthenticated } from '../errors';
import { isUuid } from '../validation';

/** The viewer, or UNAUTHENTICATED. */
export function requireViewer(viewer: Viewer | null): Viewer {
  if (!viewer) throw unauthenticated();
  return viewer;
}

/** The one FORBIDDEN answer for a room that is missing, foreign or malformed (API.md guarantee 6). */
export const notMember = () => forbidden('You are not a member of this room, or it does not exist');

/**
 * API.md guarantee 6: the viewer's membership of the room, or FORBIDDEN — the same answer for a
 * room that does not exist, one the viewer is not in, and an id that is not even well formed.
 */
export async function requireMember(
  manager: EntityManager,
  viewer: Viewer | null,
  roomId: string,
): Promise<MembershipEntity> {
  const { id: userId } = requireViewer(viewer);
  const membership = isUuid(roomId)
    ? await manager.getRepository(MembershipEntity).findOneBy({ roomId, userId })
    : null;
  if (!membership) throw notMember();
  return membership;
}
