import type { RoomEntity } from '../db/entities/room';

export type { MessageModel } from '../pubsub';

/**
 * A room as resolvers see it. `readState` is set when the room is shown as a feed told it (a
 * `RoomActivity` or `ReadStateChanged` of `myEvents`: `ReadState`), not as it is now.
 */
export type RoomModel = RoomEntity & { readState?: { lastSeq: number; lastReadSeq: number } };
