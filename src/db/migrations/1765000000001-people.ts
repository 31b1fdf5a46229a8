import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * People and rooms: direct rooms (kind DIRECT, one per pair of users — the unique `direct_key`
 * decides, not a pre-check), prefix search on usernames and display names, mentions stored with
 * each message, and full-text search over message bodies (a generated tsvector with a GIN index).
 */
export class People1765000000001 implements MigrationInterface {
  name = 'People1765000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE rooms DROP CONSTRAINT rooms_kind_check`);
    await q.query(`ALTER TABLE rooms ADD CONSTRAINT rooms_kind_check CHECK (kind IN ('PUBLIC', 'PRIVATE', 'DIRECT'))`);
    await q.query(`ALTER TABLE rooms ADD COLUMN direct_key text`);
    await q.query(`ALTER TABLE rooms ADD CONSTRAINT rooms_direct_key_key UNIQUE (direct_key)`);
    await q.query(`CREATE INDEX rooms_public_name_idx ON rooms (lower(name), id) WHERE kind = 'PUBLIC'`);

    await q.query(`CREATE INDEX users_username_prefix_idx ON users (lower(username) text_pattern_ops)`);
    await q.query(`CREATE INDEX users_display_name_prefix_idx ON users (lower(display_name) text_pattern_ops)`);

    await q.query(`ALTER TABLE messages ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}'`);
    await q.query(`CREATE INDEX messages_mentions_idx ON messages USING gin (mentions)`);
    await q.query(`ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED`);
    await q.query(`CREATE INDEX messages_search_idx ON messages USING gin (search)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX messages_search_idx`);
    await q.query(`ALTER TABLE messages DROP COLUMN search`);
    await q.query(`DROP INDEX messages_mentions_idx`);
    await q.query(`ALTER TABLE messages DROP COLUMN mentions`);
    await q.query(`DROP INDEX users_display_name_prefix_idx`);
    await q.query(`DROP INDEX users_username_prefix_idx`);
    await q.query(`DROP INDEX rooms_public_name_idx`);
    await q.query(`ALTER TABLE rooms DROP CONSTRAINT rooms_direct_key_key`);
    await q.query(`ALTER TABLE rooms DROP COLUMN direct_key`);
    await q.query(`DELETE FROM rooms WHERE kind = 'DIRECT'`);
    await q.query(`ALTER TABLE rooms DROP CONSTRAINT rooms_kind_check`);
    await q.query(`ALTER TABLE rooms ADD CONSTRAINT rooms_kind_check CHECK (kind IN ('PUBLIC', 'PRIVATE'))`);
  }
}
