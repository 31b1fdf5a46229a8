import { badUserInput } from '../errors';
import { isUuid } from '../validation';

/**
 * Opaque cursors. A message cursor names a room and a seq, so the same string resumes history
 * pages and subscriptions alike, and a cursor from another room is refused instead of misread.
 */
export function encodeMessageCursor(roomId: string, seq: number): string {
  return Buffer.from(`m1:${roomId}:${seq}`).toString('base64url');
}

/** The seq of a message cursor of `roomId`; BAD_USER_INPUT on `field` for anything else. */
export function decodeMessageCursor(cursor: string, roomId: string, field: string): number {
  const [tag, room, seqText, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  const seq = Number(seqText);
  if (tag !== 'm1' || rest.length || !isUuid(room) || !/^\d{1,10}$/.test(seqText ?? '') || seq > 2 ** 31 - 1) {
    throw badUserInput(`${field} is not a valid message cursor`, field);
  }
  if (room.toLowerCase() !== roomId.toLowerCase()) {
    throw badUserInput(`${field} is a cursor of another room`, field);
  }
  return seq;
}

/** Cursor of a room in the viewer's list: the position of the viewer's membership. */
export function encodeRoomCursor(membershipId: number): string {
  return Buffer.from(`r1:${membershipId}`).toString('base64url');
}

/** The membership position of a room cursor; BAD_USER_INPUT on `field` for anything else. */
export function decodeRoomCursor(cursor: string, field: string): number {
  const [tag, idText, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  if (tag !== 'r1' || rest.length || !/^\d{1,10}$/.test(idText ?? '') || Number(idText) > 2 ** 31 - 1) {
    throw badUserInput(`${field} is not a valid room cursor`, field);
  }
  return Number(idText);
}
