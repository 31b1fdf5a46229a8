import { LRUCache } from 'lru-cache';
import { catchUpTurn } from '../catch-up';
import type { MessageModel } from '../pubsub';

/**
 * How many numbers (seqs, or change numbers) one replay read covers: a window holds at most this
 * many messages, since each number belongs to one message at most.
 */
export const REPLAY_WINDOW = 200;

/**
 * What an instance keeps of its rooms' windows at most, in bytes as `weight` estimates them: a
 * window of 200 short messages weighs about 150 KB, so some 200 windows; fewer with long bodies.
 */
const MAX_WINDOW_BYTES = 32 * 1024 * 1024;

/**
 * How long a window stays after its read. It serves the feeds of a reconnect storm that pass
 * through it at different moments; whether it may still be served is decided by the room's
 * generation (`ReplayWindows.read`), so this bounds memory, not staleness.
 */
const WINDOW_TTL_MS = 10_000;

/** How a feed counts: messages by seq (messageAdded), or the change log by change number (roomEvents). */
export type ReplayOrder = 'messages' | 'changes';

/** What a replay read gave a feed: its messages after `after` in order, and the number up to which they are complete. */
export interface ReplayRead {
  messages: MessageModel[];
  /** Every message numbered up to here (and after `after`) is in `messages`. */
  through: number;
}

/** One read window: the messages numbered above its start and up to `through`, in order. */
interface Window {
  through: number;
  messages: Promise<MessageModel[]>;
  /** What it holds, estimated (`weight`): a guess until its read is done. */
  bytes: number;
}

/**
 * A window's messages as the bytes they hold while it is kept: each message's object and body,
 * and what its replayed event keeps with it (its executions' results, its serialised frame).
 */
function weight(messages: MessageModel[]): number {
  let bytes = 0;
  for (const message of messages) bytes += 600 + 4 * message.body.length;
  return bytes;
}

/**
 * The replay reads of an instance's feeds, shared. Subscriptions that resume together (a
 * reconnect storm: every client of a room comes back after a restart, most from the same cursor
 * or a few messages apart) read the same rows: they read them once here, in fixed windows of
 * REPLAY_WINDOW numbers, so feeds a few messages apart still meet in the same windows, and each
 * feed takes the part of a window after its position. A feed that gets the same rows also
 * presents the same event objects (`MessageFeed`), so the subscriptions of one shape execute and
 * serialise each replayed event once, as they do live events (`src/graphql/shared-subscribe.ts`).
 *
 * A window is served only under the generation of the room it was read in: the room's hub starts
 * a new one whenever a message it has carried changes (an edit, a deletion, a reaction), so no
 * feed is served a message's state from before a change the hub has fanned out
 * (docs/guarantees.md, guarantee 8: changed messages arrive in their current state). A change
 * whose signal is still on its way to the hub can meet an old window, as it can meet a live
 * subscriber: the change then follows as an update. Reads take the instance's catch-up turns
 * (`src/catch-up.ts`); a failed read is dropped at once, so the feeds' retries read again.
 */
export class ReplayWindows {
  private readonly windows: LRUCache<string, Window>;

  /** `maxBytes`: what it keeps at most, as `weight` estimates it. */
  constructor(maxBytes = MAX_WINDOW_BYTES) {
    this.windows = new LRUCache({ maxSize: maxBytes, sizeCalculation: (window) => window.bytes, ttl: WINDOW_TTL_MS });
  }

  /**
   * The messages numbered after `after` up to at most `upto` (all of them committed), from the
   * window `after` falls in: read now, or by another feed of the same room `generation`
   * (`newReplayGeneration`). `read` fetches a window's messages numbered in (from, to], in order.
   */
  async read(
    generation: string,
    order: ReplayOrder,
    after: number,
    upto: number,
    read: (from: number, to: number) => Promise<MessageModel[]>,
  ): Promise<ReplayRead> {
    const from = Math.floor(after / REPLAY_WINDOW) * REPLAY_WINDOW;
    const through = Math.min(from + REPLAY_WINDOW, upto);
    const key = `${generation}\u0000${order}\u0000${from}`;
    let window = this.windows.get(key);
    if (!window || window.through < through) {
      const made: Window = { through, messages: catchUpTurn(() => read(from, through)), bytes: REPLAY_WINDOW * 1000 };
      made.messages.then(
        (messages) => {
          made.bytes = weight(messages);
          if (this.windows.peek(key) !== made) return;
          this.windows.delete(key); // set again, weighed at its real size (a set of the same value keeps the old size)
          this.windows.set(key, made);
        },
        () => {
          if (this.windows.peek(key) === made) this.windows.delete(key);
        },
      );
      this.windows.set(key, made);
      window = made;
    }
    const number = order === 'messages' ? (m: MessageModel) => m.seq : (m: MessageModel) => m.changeSeq;
    const messages = (await window.messages).filter((m) => number(m) > after && number(m) <= through);
    return { messages, through };
  }
}

let generations = 0;

/** A room generation no other hub of this process has had (`ReplayWindows`): windows of a stopped hub are never served to its successor. */
export function newReplayGeneration(roomId: string): string {
  return `${roomId}\u0000${++generations}`;
}
