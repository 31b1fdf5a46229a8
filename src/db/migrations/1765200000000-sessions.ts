import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Sessions: one row per signed-in device, ended with its user (cascade). The row holds the sha-256
 * of the session's one current refresh token; a refresh token names its session, so presenting any
 * other secret for a session (a token already rotated away) is recognised as reuse and revokes it —
 * with one row per session however often it is refreshed.
 */
export class Sessions1765200000000 implements MigrationInterface {
  name = 'Sessions1765200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE sessions (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      refresh_hash bytea NOT NULL,
      refresh_expires_at timestamptz NOT NULL,
      generation integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(),
      refreshed_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz,
      revoked_reason text
    )`);
    await q.query(`CREATE INDEX sessions_user_id ON sessions (user_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE sessions`);
  }
}
