import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Which server instance streams an assistant reply, so that instance can fail its own orphans when it restarts. */
export class StreamOwner1764000000000 implements MigrationInterface {
  name = 'StreamOwner1764000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE messages ADD COLUMN stream_owner text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE messages DROP COLUMN stream_owner`);
  }
}
