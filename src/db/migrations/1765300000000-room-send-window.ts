import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The room's send budget (`SENDS_PER_ROOM_PER_10S`), kept on the room row that every send already
 * locks: when its window began and how many sends it has taken. The send statement takes a place
 * only for a member and only while places are left, atomically, so concurrent sends cannot
 * overshoot it and a stranger's refused sends take nothing.
 */
export class RoomSendWindow1765300000000 implements MigrationInterface {
  name = 'RoomSendWindow1765300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rooms ADD COLUMN send_window_started_at timestamptz, ADD COLUMN send_window_count integer NOT NULL DEFAULT 0`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rooms DROP COLUMN send_window_started_at, DROP COLUMN send_window_count`);
  }
}
