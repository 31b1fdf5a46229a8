import { badUserInput } from '../errors';
import { isUuid } from '../validation';
import { AddedSet } from './added-set';
import type { RoomHead } from './room-store';

/**
 * Opaque cursors. A message cursor names a room and a seq, so the same string resumes history
 * pages and subscriptions alike; an event cursor names a room and a change number (the room's
 * change log, docs/guarantees.md guarantee 8). A cursor from another room is refused instead of misread.
 */
export function encodeMessageCursor(roomId: string, seq: number): string {
  return Buffer.from(`m1:${roomId}:${seq}`).toString('base64url');
}

/**
 * The cursor of a `MessageAdded`/`MessageUpdated` event: the change it carries, and which messages
 * the stream had carried as added by then (an `AddedSet` snapshot, usually just the newest seq).
 */
export function encodeEventCursor(roomId: string, change: number, added: string): string {
  return Buffer.from(`e1:${roomId}:${change}:${added}`).toString('base64url');
}

/**
 * True when a cursor argument names no position: absent, null, or the empty string, which Apollo
 * Client's `relayStylePagination` gives as the end of a page with no edges (`after: ""` reads from
 * the start, `before: ""` from the end, as without them).
 */
export const noCursor = (cursor: string | null | undefined): cursor is null | undefined | '' => !cursor;

/** Where a resume cursor points: after a message (by seq) or after a change (with what the client had). */
export type ResumePoint = { seq: number; change?: undefined; added?: undefined } | { change: number; added: AddedSet; seq?: undefined };

/** A message or event cursor of `roomId`; BAD_USER_INPUT on `field` for anything else. */
export function decodeResumeCursor(cursor: string, roomId: string, field: string): ResumePoint {
  const { tag, n, rest } = decode(cursor, roomId, field, ['m1', 'e1'], 'a message or event cursor', 1);
  if (tag === 'm1') {
    if (rest.length) throw badUserInput(`${field} is not a message or event cursor`, field);
    return { seq: n };
  }
  const added = rest.length === 1 ? AddedSet.parse(rest[0]) : undefined;
  if (!added) throw badUserInput(`${field} is not a message or event cursor`, field);
  return { change: n, added };
}

/**
 * Refuses a resume cursor past the room's end (forged, or from a room that was reset), with
 * BAD_USER_INPUT on `field`: a message cursor past its newest message, an event cursor past its
 * newest change or carrying messages past its newest one.
 */
export function refuseBeyondHead(point: ResumePoint, head: RoomHead, field: string): void {
  if (point.seq !== undefined) {
    if (point.seq > head.lastSeq) throw badUserInput(`${field} is beyond the newest message of this room`, field);
  } else if (point.change > head.lastChange || point.added.highest > head.lastSeq) {
    throw badUserInput(`${field} is beyond the newest change of this room`, field);
  }
}

/** The seq of a message cursor of `roomId`; BAD_USER_INPUT on `field` for anything else. */
export function decodeMessageCursor(cursor: string, roomId: string, field: string): number {
  return decode(cursor, roomId, field, ['m1'], 'a message cursor').n;
}

/** The room and seq of a message cursor of any room; BAD_USER_INPUT on `field` for anything else. */
export function decodeAnyMessageCursor(cursor: string, field: string): { roomId: string; seq: number } {
  const { room, n } = decode(cursor, undefined, field, ['m1'], 'a message cursor');
  return { roomId: room.toLowerCase(), seq: n };
}

/** A cursor's parts, of `roomId` when given. */
function decode(cursor: string, roomId: string | undefined, field: string, tags: string[], what: string, extraParts = 0) {
  const [tag, room, nText, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  const n = Number(nText);
  if (!tags.includes(tag) || rest.length > extraParts || !isUuid(room) || !/^\d{1,10}$/.test(nText ?? '') || n > 2 ** 31 - 1) {
    throw badUserInput(`${field} is not ${what}`, field);
  }
  if (roomId !== undefined && room.toLowerCase() !== roomId.toLowerCase()) {
    throw badUserInput(`${field} is a cursor of another room`, field);
  }
  return { tag, room, n, rest };
}

/** Cursor of a room in the viewer's list: the position of the viewer's membership. */
export function encodeRoomCursor(membershipId: number): string {
  return Buffer.from(`r1:${membershipId}`).toString('base64url');
}

/** The membership position of a room cursor; BAD_USER_INPUT on `field` for anything else. */
export function decodeRoomCursor(cursor: string, field: string): number {
  const [tag, idText, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  if (tag !== 'r1' || rest.length || !/^\d{1,10}$/.test(idText ?? '') || Number(idText) > 2 ** 31 - 1) {
    throw badUserInput(`${field} is not a room cursor`, field);
  }
  return Number(idText);
}

/** Cursor of a member in room `roomId`'s list: the position of their membership, in that room. */
export function encodeMemberCursor(roomId: string, membershipId: number): string {
  return Buffer.from(`p2:${roomId}:${membershipId}`).toString('base64url');
}

/** The membership position of a member cursor of `roomId`; BAD_USER_INPUT on `field` for anything else (a cursor of another room's list too). */
export const decodeMemberCursor = (cursor: string, roomId: string, field: string) => decode(cursor, roomId, field, ['p2'], 'a member cursor').n;
