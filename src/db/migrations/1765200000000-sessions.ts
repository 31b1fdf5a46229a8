import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Sessions and their rotating refresh tokens (stored as sha-256 hashes). A session ends with its
 * user (cascade); a refresh token keeps its row after use, so presenting it again is recognised
 * as reuse and revokes the session.
 */
export class Sessions1765200000000 implements MigrationInterface {
  name = 'Sessions1765200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE sessions (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      refreshed_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz,
      revoked_reason text
    )`);
    await q.query(`CREATE INDEX sessions_user_id ON sessions (user_id)`);
    await q.query(`CREATE TABLE refresh_tokens (
      token_hash bytea PRIMARY KEY,
      session_id uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz
    )`);
    await q.query(`CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE refresh_tokens`);
    await q.query(`DROP TABLE sessions`);
  }
}
