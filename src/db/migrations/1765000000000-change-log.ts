import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Messages that change, on one change log per room (docs/guarantees.md, guarantees 8–10).
 * `rooms.last_change` numbers the room's changes; each message records the change number of its
 * insert (`created_change`) and of its latest change (`change_seq`, unique per room, so "every
 * change after c" is one indexed range read). Existing rows get the numbers their inserts would
 * have had (a change per message, in seq order), and existing members have read everything.
 * Also: edits, tombstones, reactions (one row per user and emoji, summed up on the message),
 * thread summaries, the ADMIN role and each member's read position.
 */
export class ChangeLog1765000000000 implements MigrationInterface {
  name = 'ChangeLog1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rooms ADD COLUMN last_change integer NOT NULL DEFAULT 0`);
    await q.query(`UPDATE rooms SET last_change = last_seq`);

    await q.query(`
      ALTER TABLE messages
        ADD COLUMN created_change integer,
        ADD COLUMN change_seq integer,
        ADD COLUMN edited_at timestamptz,
        ADD COLUMN deleted_at timestamptz,
        ADD COLUMN reactions jsonb NOT NULL DEFAULT '[]',
        ADD COLUMN reply_count integer NOT NULL DEFAULT 0,
        ADD COLUMN last_reply_at timestamptz`);
    await q.query(`UPDATE messages SET created_change = seq, change_seq = seq`);
    await q.query(`ALTER TABLE messages ALTER COLUMN created_change SET NOT NULL, ALTER COLUMN change_seq SET NOT NULL`);
    await q.query(`ALTER TABLE messages ADD CONSTRAINT messages_room_change_key UNIQUE (room_id, change_seq)`);
    await q.query(`CREATE INDEX messages_room_created_change_idx ON messages (room_id, created_change)`);
    await q.query(`
      UPDATE messages root SET reply_count = r.count, last_reply_at = r.last
      FROM (SELECT parent_id, count(*)::int AS count, max(created_at) AS last FROM messages WHERE parent_id IS NOT NULL GROUP BY parent_id) r
      WHERE root.id = r.parent_id`);

    await q.query(`
      CREATE TABLE reactions (
        message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        emoji text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (message_id, user_id, emoji)
      )`);

    await q.query(`ALTER TABLE memberships DROP CONSTRAINT memberships_role_check`);
    await q.query(`ALTER TABLE memberships ADD CONSTRAINT memberships_role_check CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER'))`);
    await q.query(`ALTER TABLE memberships ADD COLUMN last_read_seq integer NOT NULL DEFAULT 0`);
    await q.query(`UPDATE memberships m SET last_read_seq = r.last_seq FROM rooms r WHERE r.id = m.room_id`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE memberships DROP COLUMN last_read_seq`);
    await q.query(`UPDATE memberships SET role = 'MEMBER' WHERE role = 'ADMIN'`);
    await q.query(`ALTER TABLE memberships DROP CONSTRAINT memberships_role_check`);
    await q.query(`ALTER TABLE memberships ADD CONSTRAINT memberships_role_check CHECK (role IN ('OWNER', 'MEMBER'))`);
    await q.query(`DROP TABLE reactions`);
    await q.query(`DROP INDEX messages_room_created_change_idx`);
    await q.query(`ALTER TABLE messages DROP CONSTRAINT messages_room_change_key`);
    await q.query(`
      ALTER TABLE messages DROP COLUMN created_change, DROP COLUMN change_seq, DROP COLUMN edited_at, DROP COLUMN deleted_at,
        DROP COLUMN reactions, DROP COLUMN reply_count, DROP COLUMN last_reply_at`);
    await q.query(`ALTER TABLE rooms DROP COLUMN last_change`);
  }
}
