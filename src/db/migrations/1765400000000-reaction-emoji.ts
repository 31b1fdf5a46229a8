import type { MigrationInterface, QueryRunner } from 'typeorm';
import { reactionSummary } from '../../chat/message-store';
import { reactionEmoji } from '../../validation';

/**
 * Reactions kept before emoji were taken fully qualified (`reactionEmoji`): each is renamed to its
 * fully-qualified form, so ❤ and ❤️ become one reaction. A user who had reacted with both keeps
 * one, dated from the first. The messages whose reactions changed get their summary again, without
 * a change number: clients see the merged reactions when they next read the message or it next
 * changes. Running it again changes nothing.
 */
export class ReactionEmoji1765400000000 implements MigrationInterface {
  name = 'ReactionEmoji1765400000000';

  async up(q: QueryRunner): Promise<void> {
    const kept: Array<{ emoji: string }> = await q.query(`SELECT DISTINCT emoji FROM reactions`);
    const renamed = kept.map(({ emoji }) => [emoji, reactionEmoji(emoji)] as const).filter(([from, to]) => from !== to);
    for (const [from, to] of renamed) {
      await q.query(
        `UPDATE reactions kept SET created_at = least(kept.created_at, other.created_at) FROM reactions other
         WHERE kept.emoji = $2 AND other.emoji = $1 AND other.message_id = kept.message_id AND other.user_id = kept.user_id`,
        [from, to],
      );
      await q.query(
        `DELETE FROM reactions other USING reactions kept
         WHERE other.emoji = $1 AND kept.emoji = $2 AND kept.message_id = other.message_id AND kept.user_id = other.user_id`,
        [from, to],
      );
      await q.query(`UPDATE reactions SET emoji = $2 WHERE emoji = $1`, [from, to]);
    }
    if (renamed.length === 0) return;
    await q.query(`UPDATE messages m SET reactions = ${reactionSummary('m.id')} WHERE m.id IN (SELECT message_id FROM reactions WHERE emoji = ANY($1::text[]))`, [
      [...new Set(renamed.map(([, to]) => to))],
    ]);
  }

  async down(): Promise<void> {
    // The forms the reactions were sent in are not kept: nothing to undo.
  }
}
