import type { ChatTurn } from './model';

/** A message of the thread as the model sees it. */
export interface ThreadEntry {
  username: string;
  displayName: string;
  isAssistant: boolean;
  body: string;
}

export const DEFAULT_INSTRUCTIONS =
  'You are a helpful assistant taking part in a group chat. Messages are prefixed with their author. Answer the latest message concisely.';

/**
 * The conversation for the model: the room's instructions as the system prompt, then the
 * thread oldest first with each author named, trimmed from the oldest end so that the messages
 * fit `budgetChars` (the newest message is always kept, cut to the budget if it alone is larger).
 */
export function buildTurns(instructions: string | null, thread: ThreadEntry[], budgetChars: number): ChatTurn[] {
  const turns: ChatTurn[] = thread.map((m) =>
    m.isAssistant
      ? { role: 'assistant', content: m.body }
      : { role: 'user', content: `${m.displayName} (@${m.username}): ${m.body}` },
  );
  const kept: ChatTurn[] = [];
  let used = 0;
  for (let i = turns.length - 1; i >= 0; i--) {
    const size = turns[i].content.length;
    if (kept.length > 0 && used + size > budgetChars) break;
    kept.unshift(kept.length === 0 && size > budgetChars ? { ...turns[i], content: turns[i].content.slice(-budgetChars) } : turns[i]);
    used += size;
  }
  return [{ role: 'system', content: instructions?.trim() || DEFAULT_INSTRUCTIONS }, ...kept];
}
