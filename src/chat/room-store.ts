import { createHash } from 'node:crypto';
import { In, type DataSource } from 'typeorm';
import { MembershipEntity, MessageEntity, RoomEntity } from '../db/entities';
import type { MessageModel } from './models';

/** How far a room has come: its newest message and its latest change. */
export interface RoomHead {
  lastSeq: number;
  lastChange: number;
}

/** A user's membership as the viewers' feeds index it: the room, the read position there, the room's last seq. */
export interface UserMembership {
  user_id: string;
  room_id: string;
  last_read_seq: number;
  last_seq: number;
}

/** A digest of a set of room ids; `RoomStore.roomDigests` has the database compute the same. */
export function roomIdsDigest(roomIds: Iterable<string>): string | undefined {
  const sorted = [...roomIds].sort();
  return sorted.length > 0 ? createHash('md5').update(sorted.join(',')).digest('hex') : undefined;
}

/**
 * What room hubs and feeds read from the database — the truth behind the pub/sub wake-ups:
 * a room's head, its messages by seq, its change log by change number, who is a member, and each
 * viewer's rooms.
 */
export class RoomStore {
  constructor(private readonly db: DataSource) {}

  /** Messages of a room with `afterSeq < seq <= uptoSeq`, in seq order, at most `limit`. */
  async range(roomId: string, afterSeq: number, uptoSeq: number, limit: number): Promise<MessageModel[]> {
    return this.db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .where('m.room_id = :roomId AND m.seq > :afterSeq AND m.seq <= :uptoSeq', { roomId, afterSeq, uptoSeq })
      .orderBy('m.seq', 'ASC')
      .limit(limit)
      .getMany();
  }

  /**
   * The room's change log after `afterChange` up to `uptoChange`: each message whose latest change
   * is in that range, in its current state, in change order, at most `limit`. A number in the
   * range with no message was superseded by a later change of the same message.
   */
  async changes(roomId: string, afterChange: number, uptoChange: number, limit: number): Promise<MessageModel[]> {
    return this.db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .where('m.room_id = :roomId AND m.change_seq > :afterChange AND m.change_seq <= :uptoChange', { roomId, afterChange, uptoChange })
      .orderBy('m.change_seq', 'ASC')
      .limit(limit)
      .getMany();
  }

  /** Whether any of the room's messages numbered `seqs` has changed after change `afterChange` (`ReplayWindows` checks a kept window with it). */
  async changedSince(roomId: string, afterChange: number, seqs: number[]): Promise<boolean> {
    const rows: unknown[] = await this.db.query('SELECT 1 FROM messages WHERE room_id = $1 AND change_seq > $2 AND seq = ANY($3::int[]) LIMIT 1', [roomId, afterChange, seqs]);
    return rows.length > 0;
  }

  /** The room's newest seq and latest change number (0 and 0 for an empty or unknown room). */
  /** The assistant replies still streaming in these rooms, with the text they have saved so far (few: the index of streaming replies finds them). */
  async streaming(roomIds: string[]): Promise<MessageModel[]> {
    if (roomIds.length === 0) return [];
    return this.db.getRepository(MessageEntity).createQueryBuilder('m').where("m.room_id IN (:...roomIds) AND m.status = 'STREAMING'", { roomIds }).orderBy('m.seq', 'ASC').getMany();
  }

  async head(roomId: string): Promise<RoomHead> {
    const room = await this.db.getRepository(RoomEntity).findOne({ where: { id: roomId }, select: { lastSeq: true, lastChange: true } });
    return { lastSeq: room?.lastSeq ?? 0, lastChange: room?.lastChange ?? 0 };
  }

  /** The heads of many rooms in one read (a room that does not exist is left out). */
  async heads(roomIds: string[]): Promise<Map<string, RoomHead>> {
    if (roomIds.length === 0) return new Map();
    const rows: Array<{ id: string; last_seq: number; last_change: number }> = await this.db.query(
      'SELECT id, last_seq, last_change FROM rooms WHERE id = ANY($1::uuid[])',
      [roomIds],
    );
    return new Map(rows.map((r) => [r.id, { lastSeq: r.last_seq, lastChange: r.last_change }]));
  }

  /** Which of the (room, user) pairs are memberships now, as `<room> <user>` keys (`membershipKey`). */
  async memberships(pairs: Array<[roomId: string, userId: string]>): Promise<Set<string>> {
    if (pairs.length === 0) return new Set();
    const rows: Array<{ room_id: string; user_id: string }> = await this.db.query(
      'SELECT room_id, user_id FROM memberships WHERE (room_id, user_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))',
      [pairs.map(([roomId]) => roomId), pairs.map(([, userId]) => userId)],
    );
    return new Set(rows.map((r) => membershipKey(r.room_id, r.user_id)));
  }

  /** The change number of the insert of message `seq` (undefined when there is no such message). */
  async insertChange(roomId: string, seq: number): Promise<number | undefined> {
    const row = await this.db.getRepository(MessageEntity).findOne({ where: { roomId, seq }, select: { createdChange: true } });
    return row?.createdChange;
  }

  /** The seq of the newest message inserted at or before change `change` (0 when none). */
  async seqAt(roomId: string, change: number): Promise<number> {
    const [row]: Array<{ seq: number }> = await this.db.query(
      'SELECT seq FROM messages WHERE room_id = $1 AND created_change <= $2 ORDER BY created_change DESC LIMIT 1',
      [roomId, change],
    );
    return row?.seq ?? 0;
  }

  /** Which of `userIds` are members of the room now. */
  async members(roomId: string, userIds: string[]): Promise<Set<string>> {
    if (userIds.length === 0) return new Set();
    const rows = await this.db.getRepository(MembershipEntity).find({
      where: { roomId, userId: In(userIds) },
      select: { userId: true },
    });
    return new Set(rows.map((r) => r.userId));
  }

  /** The users' memberships, each with the room's last seq. */
  userMemberships(userIds: string[]): Promise<UserMembership[]> {
    return this.db.query(
      `SELECT m.user_id, m.room_id, m.last_read_seq, r.last_seq FROM memberships m JOIN rooms r ON r.id = m.room_id WHERE m.user_id = ANY($1::uuid[])`,
      [userIds],
    );
  }

  /** Each user's `roomIdsDigest` of their rooms, as the database has them (none for a user in no room): one row per user. */
  async roomDigests(userIds: string[]): Promise<Map<string, string>> {
    const rows: Array<{ user_id: string; digest: string }> = await this.db.query(
      `SELECT user_id, md5(string_agg(room_id::text, ',' ORDER BY room_id::text COLLATE "C")) AS digest FROM memberships WHERE user_id = ANY($1::uuid[]) GROUP BY user_id`,
      [userIds],
    );
    return new Map(rows.map((row) => [row.user_id, row.digest]));
  }
}

/** A (room, user) pair as `RoomStore.memberships` names it. */
export const membershipKey = (roomId: string, userId: string) => `${roomId} ${userId}`;
