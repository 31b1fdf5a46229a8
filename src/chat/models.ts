import type { Role } from '../db/entities/membership';
import type { MessageStatus } from '../db/entities/message';
import type { RoomEntity } from '../db/entities/room';

/** A room as resolvers see it; `viewerRole` is filled when the query already knew it. */
export type RoomModel = RoomEntity & { viewerRole?: Role | null };

/** A message as resolvers see it: a database row or one that arrived over pub/sub. */
export interface MessageModel {
  id: string;
  roomId: string;
  seq: number;
  authorId: string;
  body: string;
  parentId: string | null;
  clientId: string | null;
  status: MessageStatus;
  statusReason: string | null;
  deltaCount: number;
  createdAt: Date | string;
}
