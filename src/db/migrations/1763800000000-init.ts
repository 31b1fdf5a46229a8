import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Users, rooms, memberships and messages, with the indexes that the send path relies on. */
export class Init1763800000000 implements MigrationInterface {
  name = 'Init1763800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE users (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        username text NOT NULL,
        display_name text NOT NULL,
        password_hash text,
        is_assistant boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE UNIQUE INDEX users_username_key ON users (lower(username))`);
    await q.query(`
      CREATE TABLE rooms (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('PUBLIC', 'PRIVATE')),
        assistant_enabled boolean NOT NULL DEFAULT false,
        assistant_instructions text,
        last_seq integer NOT NULL DEFAULT 0,
        created_by uuid NOT NULL REFERENCES users (id),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE memberships (
        id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        room_id uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role text NOT NULL CHECK (role IN ('OWNER', 'MEMBER')),
        joined_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT memberships_room_user_key UNIQUE (room_id, user_id)
      )`);
    await q.query(`CREATE INDEX memberships_user_idx ON memberships (user_id, id)`);
    await q.query(`
      CREATE TABLE messages (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        room_id uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        seq integer NOT NULL,
        author_id uuid NOT NULL REFERENCES users (id),
        body text NOT NULL,
        parent_id uuid REFERENCES messages (id),
        client_id text,
        status text NOT NULL DEFAULT 'COMPLETE',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT messages_room_seq_key UNIQUE (room_id, seq),
        CONSTRAINT messages_client_id_key UNIQUE (room_id, author_id, client_id)
      )`);
    await q.query(`CREATE INDEX messages_thread_idx ON messages (parent_id, seq) WHERE parent_id IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE messages`);
    await q.query(`DROP TABLE memberships`);
    await q.query(`DROP TABLE rooms`);
    await q.query(`DROP TABLE users`);
  }
}
