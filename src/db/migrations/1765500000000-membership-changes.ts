import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Numbers membership changes (a join or add, a role change, a leave or removal) in the order they
 * commit, for any one member: each takes the next number as its last step, under the row locks
 * that order it against every other change of that member. Its signal carries it, so a room hub
 * passes no change older than one it passed, whatever order two instances' publishes reach it in
 * (`RoomHub`, docs/guarantees.md guarantee 5).
 */
export class MembershipChanges1765500000000 implements MigrationInterface {
  name = 'MembershipChanges1765500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE SEQUENCE IF NOT EXISTS membership_changes AS bigint`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP SEQUENCE IF EXISTS membership_changes`);
  }
}
