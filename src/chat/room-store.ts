import { In, type DataSource } from 'typeorm';
import { MembershipEntity, MessageEntity, RoomEntity } from '../db/entities';
import type { MessageModel } from './models';

/**
 * What room hubs and feeds read from the database — the truth behind the pub/sub wake-ups:
 * ranges of messages by seq, a room's last seq, and who is still a member.
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
   * Assistant replies up to `atSeq` (among the 200 messages before it) that changed after the
   * message at `atSeq` was written: what a client resuming from that cursor may have missed of
   * replies it already had (a stream that went on, a final status).
   */
  async repliesChangedSince(roomId: string, atSeq: number): Promise<MessageModel[]> {
    return this.db
      .getRepository(MessageEntity)
      .createQueryBuilder('m')
      .where('m.room_id = :roomId AND m.seq <= :atSeq AND m.seq > :atSeq - 200 AND m.asked_message_id IS NOT NULL', { roomId, atSeq })
      .andWhere('m.updated_at > (SELECT c.created_at FROM messages c WHERE c.room_id = :roomId AND c.seq = :atSeq)')
      .orderBy('m.seq', 'ASC')
      .getMany();
  }

  /** The seq of the room's newest message (0 for an empty or unknown room). */
  async lastSeq(roomId: string): Promise<number> {
    const room = await this.db.getRepository(RoomEntity).findOne({ where: { id: roomId }, select: { lastSeq: true } });
    return room?.lastSeq ?? 0;
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
}
