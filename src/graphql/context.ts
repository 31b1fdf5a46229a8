import DataLoader from 'dataloader';
import { LRUCache } from 'lru-cache';
import { In, type DataSource } from 'typeorm';
import type { AssistantService } from '../assistant/assistant-service';
import type { AuthService } from '../auth/auth-service';
import type { SessionCheck, SessionService, SocketAuth } from '../auth/sessions';
import type { Viewer } from '../auth/tokens';
import { MessageEntity, RoomEntity, UserEntity } from '../db/entities';
import type { Role } from '../db/entities/membership';
import type { MessageService } from '../chat/message-service';
import type { RoomService } from '../chat/room-service';
import type { SubscriptionService } from '../chat/subscription-service';
import type { ActivityRouter } from '../chat/activity-router';
import type { DirectoryService } from '../chat/directory-service';
import type { MembershipService } from '../chat/membership-service';
import { membershipKey } from '../chat/room-store';
import type { PresenceService, TypingService } from '../presence';
import type { FrameSink } from './shared-subscribe';

/** The services resolvers call; built once in `app.ts`. */
export interface Services {
  auth: AuthService;
  sessions: SessionService;
  rooms: RoomService;
  members: MembershipService;
  directory: DirectoryService;
  activity: ActivityRouter;
  messages: MessageService;
  subscriptions: SubscriptionService;
  assistant: AssistantService;
  typing: TypingService;
  presence: PresenceService;
}

/** The viewer's place in a room, read with the room's head in one snapshot (so unread counts are exact). */
export interface ViewerMembership {
  role: Role;
  lastReadSeq: number;
  lastSeq: number;
}

/** A read state: how far the viewer has read a room, and the room's head, as of one moment. */
export type ReadPosition = Pick<ViewerMembership, 'lastReadSeq' | 'lastSeq'>;

/**
 * Batched lookups for one operation, so a page of messages or a list of rooms costs one query per
 * kind. The loaders under `viewer` answer for the operation's viewer: a result that reads them
 * (or `ctx.viewer`) differs per viewer, which is how shared subscription execution tells
 * (`shared-subscribe.ts`).
 */
export interface Loaders {
  user: DataLoader<string, UserEntity | null>;
  room: DataLoader<string, RoomEntity | null>;
  message: DataLoader<string, MessageEntity | null>;
  /** A room's message by seq, keyed `roomId@seq` (null when there is none). */
  messageAt: DataLoader<string, MessageEntity | null>;
  /** How many members each room has. */
  memberCount: DataLoader<string, number>;
  viewer: {
    /** The viewer's membership of each room (null when not a member or signed out). */
    membership: RoomLoader<ViewerMembership | null>;
    /**
     * The messages mentioning the viewer in a room between a read position and a head (seqs
     * `lastReadSeq` + 1 to `lastSeq`, not deleted): their unread mentions as of that read state.
     */
    mentionCount: { load(roomId: string, state: ReadPosition): Promise<number> };
    /** For a DIRECT room: the other person's display name. */
    peerName: RoomLoader<string | null>;
  };
}

/** A per-viewer lookup by room id (backed by a loader shared by every viewer of one operation or event). */
export interface RoomLoader<V> {
  load(roomId: string): Promise<V>;
}

/** What every resolver receives, on HTTP and WebSocket alike. */
export interface GraphQLContext {
  /** The one the token claims (over WebSocket, the socket's) until `pendingViewer` settles (`confirmViewer`, `viewer.ts`). */
  viewer: Viewer | null;
  /** The check of the claimed viewer's session until it settles (`confirmViewer`; unset once it did): an HTTP request's, or any WebSocket operation's (a subscription's before it reads anything, `subscribeShared`). */
  pendingViewer?: SessionCheck;
  /** Over HTTP, the request's bearer token was refused (malformed, expired, its session ended): it runs signed out, and its answer says so (`answerStatusPlugin`). */
  tokenRefused?: boolean;
  requestId: string;
  /** The client's address (behind trusted proxies, the one they name), for budgets per address. */
  clientAddress: string;
  services: Services;
  /** This operation's loaders, made when first read (a subscription's own are rarely read: each event gets `newLoaders()`). */
  readonly loaders: Loaders;
  /** Loaders with an empty cache for this context's viewer (so what they show is current). Call it as a method. */
  newLoaders(): Loaders;
  /**
   * Loaders for one event of a subscription (or one group of events a subscription replays), for
   * this context's viewer: fresh for it, and shared by every execution made with the same `key`
   * — the executions for different viewers of an event that reads per-viewer fields load
   * together, as do the executions of a replayed group: one query per kind for all of them. Call
   * it as a method.
   */
  eventLoaders?(key: object): Loaders;
  /** The WebSocket the operation runs on, if any (`refreshSession` renews it). */
  socket?: SocketAuth;
  /** A subscription on a WebSocket: where its `next` frames are written (`subscribeShared`). */
  frames?: FrameSink;
  /**
   * Whether this operation's answer can still reach the client; true promises it will (a WebSocket
   * then stays open until the operation is answered). Asked by a change that must not happen
   * unseen (`refreshSession`'s rotation) just before it commits. Unset: always true.
   */
  holdForAnswer?: () => boolean;
}

/** Builds a context: `viewer` through `pendingViewer` as `TransportDeps.context` takes them. */
export type ContextFactory = (
  viewer: Viewer | null,
  requestId: string,
  clientAddress: string,
  socket?: SocketAuth,
  pendingViewer?: SessionCheck,
) => GraphQLContext;

/**
 * The contexts of one app. A context holds its fields and two references shared by every context
 * (the services and `newLoaders`); its loaders are made on first read, so a subscription's context
 * (one per subscription, for its whole life) holds no loaders it never reads. Spreading a context
 * (`{ ...ctx }`) copies everything but `loaders`, which such a copy sets itself.
 */
export function createContextFactory(db: DataSource, services: Services): ContextFactory {
  const users = knownUsers();
  function newLoaders(this: GraphQLContext): Loaders {
    return createLoaders(db, users, this.viewer);
  }
  const byKey = new WeakMap<object, { common: CommonLoaders; viewers: ViewerLoaders }>();
  function eventLoaders(this: GraphQLContext, key: object): Loaders {
    let shared = byKey.get(key);
    if (!shared) byKey.set(key, (shared = { common: commonLoaders(db, users), viewers: viewerLoaders(db) }));
    return { ...shared.common, viewer: shared.viewers.of(this.viewer) };
  }
  return (viewer, requestId, clientAddress, socket, pendingViewer) =>
    new OperationContext(viewer, requestId, clientAddress, services, newLoaders, eventLoaders, socket, pendingViewer);
}

class OperationContext implements GraphQLContext {
  frames?: FrameSink;
  holdForAnswer?: () => boolean;
  tokenRefused?: boolean;

  constructor(
    public viewer: Viewer | null,
    readonly requestId: string,
    readonly clientAddress: string,
    readonly services: Services,
    readonly newLoaders: () => Loaders,
    readonly eventLoaders: (key: object) => Loaders,
    readonly socket?: SocketAuth,
    public pendingViewer?: SessionCheck,
  ) {}

  get loaders(): Loaders {
    const loaders = this.newLoaders();
    // Kept on the object itself (Apollo's per-operation copy inherits this getter and keeps its own).
    Object.defineProperty(this, 'loaders', { value: loaders });
    return loaders;
  }
}

/** How many users `knownUsers` keeps, and for how long after it read each. */
const KNOWN_USERS = 50_000;
const KNOWN_USER_TTL_MS = 5 * 60_000;

/**
 * Users this instance read lately, by id. No operation changes a user once made (its username,
 * display name and whether it is the assistant), so a message's author and mentions are read once
 * per instance, not once per operation: each live event's execution has fresh loaders, and a
 * room's subscribers selecting `author` would otherwise have the database read it again with every
 * message. Each is kept `KNOWN_USER_TTL_MS`, so a change made in the database by hand shows within
 * that. An operation that comes to change users must forget the changed ones here.
 */
export type KnownUsers = LRUCache<string, UserEntity>;
const knownUsers = (): KnownUsers => new LRUCache<string, UserEntity>({ max: KNOWN_USERS, ttl: KNOWN_USER_TTL_MS });

/** Fresh loaders for one operation of `viewer`. */
export function createLoaders(db: DataSource, users: KnownUsers, viewer: Viewer | null): Loaders {
  return { ...commonLoaders(db, users), viewer: viewerLoaders(db).of(viewer) };
}

type CommonLoaders = Omit<Loaders, 'viewer'>;

/** The loaders whose answers are the same for every viewer; users through `known`. */
function commonLoaders(db: DataSource, known: KnownUsers): CommonLoaders {
  /** Rows by id, one query per batch; with `kept`, only the ids it does not hold are read, and what is read is kept. */
  const byId = <T extends { id: string }>(entity: new () => T, kept?: LRUCache<string, T>) =>
    new DataLoader<string, T | null>(async (ids) => {
      const found = ids.map((id) => kept?.get(id));
      const missing = ids.filter((_, i) => found[i] === undefined);
      const rows = missing.length > 0 ? await db.getRepository(entity).findBy({ id: In(missing) } as never) : [];
      const read = new Map(rows.map((r) => [r.id, r]));
      for (const row of rows) kept?.set(row.id, row);
      return ids.map((id, i) => found[i] ?? read.get(id) ?? null);
    });
  const messageAt = new DataLoader<string, MessageEntity | null>(async (keys) => {
    const pairs = keys.map((key) => key.split('@'));
    const rows = await db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .where('(m.room_id, m.seq) IN (SELECT * FROM unnest(CAST(:rooms AS uuid[]), CAST(:seqs AS int[])))', {
        rooms: pairs.map(([roomId]) => roomId),
        seqs: pairs.map(([, seq]) => Number(seq)),
      })
      .getMany();
    const byKey = new Map(rows.map((m) => [`${m.roomId}@${m.seq}`, m]));
    return keys.map((key) => byKey.get(key) ?? null);
  });
  const memberCount = new DataLoader<string, number>(async (roomIds) => {
    const rows: Array<{ room_id: string; n: number }> = await db.query(
      'SELECT room_id, count(*)::int AS n FROM memberships WHERE room_id = ANY($1::uuid[]) GROUP BY room_id',
      [roomIds],
    );
    const byRoom = new Map(rows.map((r) => [r.room_id, r.n]));
    return roomIds.map((id) => byRoom.get(id) ?? 0);
  });
  return { user: byId(UserEntity, known), room: byId(RoomEntity), message: byId(MessageEntity), messageAt, memberCount };
}

/** The id no user has: what "the viewer" is when nobody is signed in (they are a member of nothing). */
const NOBODY = '00000000-0000-0000-0000-000000000000';

interface ViewerLoaders {
  /** The per-viewer loaders of `viewer`, backed by these. */
  of(viewer: Viewer | null): Loaders['viewer'];
}

/**
 * The per-viewer loaders for any number of viewers at once, keyed by (viewer, room): the executions
 * of one event for many viewers load together (one query per kind).
 */
function viewerLoaders(db: DataSource): ViewerLoaders {
  /** A loader keyed by (room, user) pair (`membershipKey`) whose batch reads `sql` with `$1` the users and `$2` the rooms, one row per pair it finds. */
  const byPair = <R extends { user_id: string; room_id: string }, V>(sql: string, value: (row: R) => V, absent: V) =>
    new DataLoader<string, V>(async (keys) => {
      const pairs = keys.map((key) => key.split(' ')); // [room, user], as `membershipKey` makes them
      const rows: R[] = await db.query(sql, [pairs.map(([, userId]) => userId), pairs.map(([roomId]) => roomId)]);
      const byKey = new Map(rows.map((r) => [membershipKey(r.room_id, r.user_id), value(r)]));
      return keys.map((key) => byKey.get(key) ?? absent);
    });
  const PAIRS = 'SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS p(user_id, room_id)';
  const membership = byPair<{ user_id: string; room_id: string; role: Role; last_read_seq: number; last_seq: number }, ViewerMembership | null>(
    `SELECT m.user_id, m.room_id, m.role, m.last_read_seq, r.last_seq FROM memberships m JOIN rooms r ON r.id = m.room_id
     WHERE (m.user_id, m.room_id) IN (${PAIRS})`,
    (r) => ({ role: r.role, lastReadSeq: r.last_read_seq, lastSeq: r.last_seq }),
    null,
  );
  // Keyed `room user lastReadSeq lastSeq`: counted in the read state the answer shows (guarantee 9), not read again.
  const mentionCount = new DataLoader<string, number>(async (keys) => {
    const ranges = keys.map((key) => key.split(' '));
    const column = (i: number) => ranges.map((range) => range[i]);
    const rows: Array<{ key: string; n: number }> = await db.query(
      `SELECT concat_ws(' ', p.room_id, p.user_id, p.after, p.upto) AS key, count(*)::int AS n
       FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int[]) AS p(room_id, user_id, after, upto)
       JOIN messages msg ON msg.room_id = p.room_id AND msg.seq > p.after AND msg.seq <= p.upto
       WHERE msg.mentions @> ARRAY[p.user_id] AND msg.deleted_at IS NULL
       GROUP BY p.room_id, p.user_id, p.after, p.upto`,
      [column(0), column(1), column(2).map(Number), column(3).map(Number)],
    );
    const byKey = new Map(rows.map((r) => [r.key, r.n]));
    return keys.map((key) => byKey.get(key) ?? 0);
  });
  // The other member of a DIRECT room: the first member who is not the viewer.
  const peerName = byPair<{ user_id: string; room_id: string; display_name: string }, string | null>(
    `SELECT DISTINCT ON (p.user_id, p.room_id) p.user_id, p.room_id, u.display_name
     FROM (${PAIRS}) p JOIN memberships m ON m.room_id = p.room_id AND m.user_id <> p.user_id JOIN users u ON u.id = m.user_id
     ORDER BY p.user_id, p.room_id, m.id`,
    (r) => r.display_name,
    null,
  );
  return {
    of: (viewer) => {
      const key = (roomId: string) => membershipKey(roomId, viewer?.id ?? NOBODY);
      return {
        membership: { load: (roomId) => (viewer ? membership.load(key(roomId)) : Promise.resolve(null)) },
        mentionCount: {
          load: (roomId, state) => (viewer && state.lastSeq > state.lastReadSeq ? mentionCount.load(`${key(roomId)} ${state.lastReadSeq} ${state.lastSeq}`) : Promise.resolve(0)),
        },
        peerName: { load: (roomId) => peerName.load(key(roomId)) },
      };
    },
  };
}
