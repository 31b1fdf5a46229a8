import type { Role } from '../db/entities/membership';
import type { RoomEntity } from '../db/entities/room';
import type { MessageWire } from '../pubsub';

/** A room as resolvers see it; `viewerRole` is filled when the query already knew it. */
export type RoomModel = RoomEntity & { viewerRole?: Role | null };

/** A message as resolvers see it: a database row, or one that arrived over pub/sub (date as a string). */
export type MessageModel = Omit<MessageWire, 'createdAt'> & { createdAt: Date | string };
