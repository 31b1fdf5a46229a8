import type { Role } from '../db/entities/membership';
import type { RoomEntity } from '../db/entities/room';

export type { MessageModel } from '../pubsub';

/** A room as resolvers see it; `viewerRole` is filled when the query already knew it. */
export type RoomModel = RoomEntity & { viewerRole?: Role | null };
