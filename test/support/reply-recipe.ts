/** A streaming reply's text as an application holds it. */
export interface HeldReply {
  body: string;
  deltaCount: number;
}

/**
 * README's recipe ("The assistant") over one reply's `roomEvents` events, in the order they came:
 * a message event sets the reply as it is held; a delta is appended when its index is the held
 * `deltaCount` (one that comes before any state, held or given as `start`, is skipped). Says what
 * was held just before the reply's end and at the end, one past the highest delta index that came,
 * how often the reply was told again while streaming, and the deltas that came already in the
 * text held.
 */
export function followReply(events: Iterable<Record<string, any>>, start?: HeldReply) {
  let held = start;
  let beforeEnd: HeldReply | undefined;
  let received = 0;
  let retold = 0;
  const inText: number[] = [];
  for (const e of events) {
    if (e.__typename === 'AssistantDelta') {
      received = Math.max(received, e.index + 1);
      if (!held) continue; // ahead of the reply's own event (they come by different topics)
      if (e.index < held.deltaCount) inText.push(e.index);
      if (e.index === held.deltaCount) held = { body: held.body + e.text, deltaCount: held.deltaCount + 1 };
      continue;
    }
    if (e.message.status !== 'STREAMING') beforeEnd ??= held;
    else if (held) retold++;
    held = { body: e.message.body, deltaCount: e.message.deltaCount };
  }
  return { beforeEnd, final: held, received, retold, inText };
}
