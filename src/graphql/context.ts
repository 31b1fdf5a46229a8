import DataLoader from 'dataloader';
import { In, type DataSource } from 'typeorm';
import type { AssistantService } from '../assistant/assistant-service';
import type { AuthService } from '../auth/auth-service';
import type { SessionService, SocketAuth } from '../auth/sessions';
import type { Viewer } from '../auth/tokens';
import { MembershipEntity, MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import type { MessageService } from '../chat/message-service';
import type { RoomService } from '../chat/room-service';
import type { SubscriptionService } from '../chat/subscription-service';

/** The services resolvers call; built once in `app.ts`. */
export interface Services {
  auth: AuthService;
  sessions: SessionService;
  rooms: RoomService;
  messages: MessageService;
  subscriptions: SubscriptionService;
  assistant: AssistantService;
}

/** Batched lookups by id for one operation, so a page of messages costs one query per kind. */
export interface Loaders {
  user: DataLoader<string, UserEntity | null>;
  room: DataLoader<string, RoomEntity | null>;
  message: DataLoader<string, MessageEntity | null>;
  /** The viewer's role in each room (null when not a member or signed out). */
  role: DataLoader<string, Role | null>;
}

/** What every resolver receives, on HTTP and WebSocket alike. */
export interface GraphQLContext {
  viewer: Viewer | null;
  requestId: string;
  services: Services;
  loaders: Loaders;
  /** The WebSocket the operation runs on, if any (`refreshSession` renews it). */
  socket?: SocketAuth;
}

/** Fresh loaders for one operation of `viewer`. */
export function createLoaders(db: DataSource, viewer: Viewer | null): Loaders {
  const byId = <T extends { id: string }>(entity: new () => T) =>
    new DataLoader<string, T | null>(async (ids) => {
      const rows = await db.getRepository(entity).findBy({ id: In([...ids]) } as never);
      const map = new Map(rows.map((r) => [r.id, r]));
      return ids.map((id) => map.get(id) ?? null);
    });
  const role = new DataLoader<string, Role | null>(async (roomIds) => {
    if (!viewer) return roomIds.map(() => null);
    const rows = await db.getRepository(MembershipEntity).findBy({ userId: viewer.id, roomId: In([...roomIds]) });
    const roles = new Map(rows.map((m) => [m.roomId, m.role]));
    return roomIds.map((id) => roles.get(id) ?? null);
  });
  return { user: byId(UserEntity), room: byId(RoomEntity), message: byId(MessageEntity), role };
}
