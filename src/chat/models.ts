import type { RoomEntity } from '../db/entities/room';

export type { MessageModel } from '../pubsub';

/**
 * A room as resolvers see it. `readState` is set when the room is shown as of one moment (a
 * `RoomActivity`: the viewer's unread count when that message came), not as it is now.
 */
export type RoomModel = RoomEntity & { readState?: { lastSeq: number; lastReadSeq: number } };
