import { decodeMemberCursor, decodeMessageCursor, decodeRoomCursor, encodeMemberCursor, encodeMessageCursor, encodeRoomCursor } from '../../src/chat/cursors';
import { AppError } from '../../src/errors';

const ROOM = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const OTHER_ROOM = '9b2d1c4e-7a1f-4c55-8e2b-4d6f0a1b2c3d';
const b64 = (text: string) => Buffer.from(text).toString('base64url');

/** The AppError thrown by `fn`, to assert its code and field. */
function thrown(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a throw');
}

describe('message cursors', () => {
  it('round-trip a room and seq', () => {
    for (const seq of [0, 1, 42, 2 ** 31 - 1]) {
      expect(decodeMessageCursor(encodeMessageCursor(ROOM, seq), ROOM, 'after')).toBe(seq);
    }
  });

  it('are opaque, URL-safe strings that differ per room and per seq', () => {
    const cursor = encodeMessageCursor(ROOM, 7);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(cursor).not.toContain(ROOM);
    expect(encodeMessageCursor(OTHER_ROOM, 7)).not.toBe(cursor);
    expect(encodeMessageCursor(ROOM, 8)).not.toBe(cursor);
  });

  it('match the room regardless of the case of its id', () => {
    expect(decodeMessageCursor(encodeMessageCursor(ROOM, 5), ROOM.toUpperCase(), 'after')).toBe(5);
  });

  it('refuse a cursor of another room with BAD_USER_INPUT on the given field', () => {
    const error = thrown(() => decodeMessageCursor(encodeMessageCursor(OTHER_ROOM, 3), ROOM, 'before'));
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.extensions.field).toBe('before');
    expect(error.message).toMatch(/another room/);
  });

  it.each([
    ['garbage', 'garbage!'],
    ['an empty string', ''],
    ['a room cursor', encodeRoomCursor(12)],
    ['another tag', b64(`m2:${ROOM}:1`)],
    ['a malformed room id', b64('m1:not-a-uuid:1')],
    ['a negative seq', b64(`m1:${ROOM}:-1`)],
    ['a fractional seq', b64(`m1:${ROOM}:1.5`)],
    ['a seq beyond the integer range', b64(`m1:${ROOM}:${2 ** 31}`)],
    ['a missing seq', b64(`m1:${ROOM}`)],
    ['an extra segment', b64(`m1:${ROOM}:1:x`)],
    ['a seq with spaces', b64(`m1:${ROOM}: 1`)],
  ])('refuse %s with BAD_USER_INPUT on the given field', (_name, cursor) => {
    const error = thrown(() => decodeMessageCursor(cursor, ROOM, 'after'));
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.extensions.field).toBe('after');
    expect(error.message).toMatch(/^after /);
  });
});

describe('room cursors', () => {
  it('round-trip a membership position', () => {
    for (const id of [1, 99, 2 ** 31 - 1]) expect(decodeRoomCursor(encodeRoomCursor(id), 'after')).toBe(id);
  });

  it.each([
    ['garbage', 'garbage!'],
    ['an empty string', ''],
    ['a message cursor', encodeMessageCursor(ROOM, 1)],
    ['a negative position', b64('r1:-1')],
    ['an extra segment', b64('r1:1:2')],
    ['a position beyond the integer range', b64(`r1:${2 ** 31}`)],
    ['a member cursor', encodeMemberCursor(ROOM, 1)],
  ])('refuse %s with BAD_USER_INPUT on the given field', (_name, cursor) => {
    const error = thrown(() => decodeRoomCursor(cursor, 'after'));
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.extensions.field).toBe('after');
    expect(error.message).toBe('after is not a room cursor');
  });
});

describe('member cursors', () => {
  it('round-trip a membership position in its room', () => {
    for (const id of [1, 99, 2 ** 31 - 1]) expect(decodeMemberCursor(encodeMemberCursor(ROOM, id), ROOM, 'after')).toBe(id);
  });

  it.each([
    ['garbage', 'garbage!', 'after is not a member cursor'],
    ['a room cursor', encodeRoomCursor(1), 'after is not a member cursor'],
    ['a position beyond the integer range', b64(`p2:${ROOM}:${2 ** 31}`), 'after is not a member cursor'],
    ['a cursor of another room\'s members', encodeMemberCursor('00000000-0000-4000-8000-000000000000', 1), 'after is a cursor of another room'],
  ])('refuse %s with BAD_USER_INPUT on the given field', (_name, cursor, message) => {
    const error = thrown(() => decodeMemberCursor(cursor, ROOM, 'after'));
    expect([error.code, error.extensions.field, error.message]).toEqual(['BAD_USER_INPUT', 'after', message]);
  });
});
