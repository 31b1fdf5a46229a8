import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The assistant: its user (created here, so the name `assistant` is never taken by a person),
 * one reply per asked message (a unique index settles racing asks), who asked, why a reply
 * ended, and how many streamed deltas the saved body holds.
 */
export class Assistant1763900000000 implements MigrationInterface {
  name = 'Assistant1763900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      INSERT INTO users (username, display_name, password_hash, is_assistant)
      VALUES ('assistant', 'Assistant', NULL, true)`);
    await q.query(`ALTER TABLE messages ADD COLUMN asked_message_id uuid REFERENCES messages (id)`);
    await q.query(`ALTER TABLE messages ADD COLUMN asked_by uuid REFERENCES users (id)`);
    await q.query(`ALTER TABLE messages ADD COLUMN status_reason text`);
    await q.query(`ALTER TABLE messages ADD COLUMN delta_count integer NOT NULL DEFAULT 0`);
    await q.query(`ALTER TABLE messages ADD CONSTRAINT messages_asked_message_key UNIQUE (asked_message_id)`);
    await q.query(`CREATE INDEX messages_streaming_idx ON messages (asked_by) WHERE status = 'STREAMING'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX messages_streaming_idx`);
    await q.query(`ALTER TABLE messages DROP CONSTRAINT messages_asked_message_key`);
    await q.query(`ALTER TABLE messages DROP COLUMN delta_count, DROP COLUMN status_reason, DROP COLUMN asked_by, DROP COLUMN asked_message_id`);
    await q.query(`DELETE FROM users WHERE is_assistant`);
  }
}
