import { LRUCache } from 'lru-cache';
import { catchUpTurn } from '../catch-up';
import type { MessageModel } from '../pubsub';
import { SHARED_AS } from '../push-stream';
import type { ChangeEvent } from './room-hub';

/**
 * How many numbers (seqs, or change numbers) one replay read covers: a window holds at most this
 * many messages, since each number belongs to one message at most.
 */
export const REPLAY_WINDOW = 200;

/**
 * What an instance keeps of its rooms' windows at most, in bytes as `weight` estimates them: a
 * window of 200 short messages weighs about 110 KB, so some 300 windows; fewer with long bodies.
 */
const MAX_WINDOW_BYTES = 32 * 1024 * 1024;

/**
 * How long a window stays after its read. It serves the feeds of a reconnect storm that pass
 * through it at different moments; each of them is served it only after a check that began after
 * it asked (`ReplayWindows`), so this bounds memory, not staleness.
 */
const WINDOW_TTL_MS = 10_000;

/**
 * How long the feeds served by different reads and checks of a window share the executions of
 * its messages that do not depend on the viewer (`SHARED_AS`): what such an execution shows
 * besides the message itself (its author, its room's `lastSeq`) is at most this much older than a
 * feed's asking. Executions that read the viewer are never shared beyond one read or check.
 */
const SHARED_EXECUTIONS_MS = 2_000;

/** How a feed counts: messages by seq (messageAdded), or the change log by change number (roomEvents). */
export type ReplayOrder = 'messages' | 'changes';

/** What the windows read a room's database through (its hub). */
export interface ReplaySource {
  /** A change number that every change not yet committed will be above (the hub's position). */
  position(): number;
  /** The messages numbered in (from, to], in order. */
  read(from: number, to: number): Promise<MessageModel[]>;
  /** Whether any of the messages numbered `seqs` has changed after change `after`. */
  changedSince(after: number, seqs: number[]): Promise<boolean>;
}

/** What a replay read gave a feed: its messages after `after` in order, and the number up to which they are complete. */
export interface ReplayRead {
  messages: MessageModel[];
  /** Every message numbered up to here (and after `after`) is in `messages`. */
  through: number;
  /**
   * The event a feed presents `message` as (`kind`, and the feed's added set after it): the same
   * object for every feed this read served with the same view of it, so their subscriptions
   * execute and serialise it once (`src/graphql/shared-subscribe.ts`).
   */
  event(message: MessageModel, kind: ChangeEvent['kind'], added: string): ChangeEvent;
}

/** A window's read, or a check that its messages are still current: the feeds it served share its events. */
interface Serving {
  messages: Promise<MessageModel[]>;
  events: Map<MessageModel, Map<string, ChangeEvent>>;
}

/** One read window: the messages numbered above its start and up to `through`, in order. */
interface Window {
  through: number;
  /** Its messages as its read gave them. */
  rows: Promise<MessageModel[]>;
  /** Every change its read did not see is above this (set as the read begins). */
  seenUpTo: number;
  /** The read or check that has not begun yet: a feed asking now is served by it. */
  next?: Serving;
  /** What its messages' events are shared as (`SHARED_AS`), by message and view, since `sharedSince`. */
  sharedAs: Map<MessageModel, Map<string, object>>;
  sharedSince: number;
  /** What it holds, estimated (`weight`): a guess until its read is done. */
  bytes: number;
}

/** A check found that a message of the window changed after its read: the window is read again. */
const CHANGED = new Error('the replay window changed');

/**
 * The replay reads of an instance's feeds, shared. Subscriptions that resume together (a
 * reconnect storm: every client of a room comes back after a restart, most from the same cursor
 * or a few messages apart) read the same rows: they read them once here, in fixed windows of
 * REPLAY_WINDOW numbers, so feeds a few messages apart still meet in the same windows, and each
 * feed takes the part of a window after its position; and the feeds served together present the
 * same event objects (`ReplayRead.event`), so each replayed event is executed and serialised once
 * per selection, as a live event is.
 *
 * What a feed is served is never older than its asking: it is served by a read or a check that
 * begins after it asked. A window kept from an earlier read is served only after one query
 * (shared by every feed that asks before it begins) has found that none of its messages changed
 * since that read — an edit, a deletion, a reaction, whether or not its signal has reached this
 * instance; otherwise it is read again. So a feed gets every message in its current state as of
 * its resume (docs/guarantees.md, guarantees 2 and 8), whatever pub/sub brought. Reads and checks
 * take the instance's catch-up turns (`src/catch-up.ts`); a failed read drops its window at once.
 */
export class ReplayWindows {
  private readonly windows: LRUCache<string, Window>;

  /** `maxBytes`: what it keeps at most, as `weight` estimates it. */
  constructor(maxBytes = MAX_WINDOW_BYTES) {
    // Purged as they expire (unref'd timers): a storm's windows are not held until the next one.
    this.windows = new LRUCache({ maxSize: maxBytes, sizeCalculation: (window) => window.bytes, ttl: WINDOW_TTL_MS, ttlAutopurge: true });
  }

  /**
   * The messages numbered after `after` up to at most `upto` (all of them committed) of `room`,
   * from the window `after` falls in: read for this feed and those asking with it, or kept from an
   * earlier read and checked for them.
   */
  async read(room: string, order: ReplayOrder, after: number, upto: number, source: ReplaySource): Promise<ReplayRead> {
    const from = Math.floor(after / REPLAY_WINDOW) * REPLAY_WINDOW;
    const through = Math.min(from + REPLAY_WINDOW, upto);
    const key = `${room}\u0000${order}\u0000${from}`;
    const number = order === 'messages' ? (m: MessageModel) => m.seq : (m: MessageModel) => m.changeSeq;
    for (;;) {
      let window = this.windows.get(key);
      if (!window || window.through < through) window = this.open(key, from, through, source);
      const serving = window.next ?? this.check(key, window, source);
      let messages: MessageModel[];
      try {
        messages = await serving.messages;
      } catch (err) {
        if (err === CHANGED) continue; // read again, with the feeds asking meanwhile
        throw err;
      }
      return {
        messages: messages.filter((m) => number(m) > after && number(m) <= through),
        through,
        event: (message, kind, added) => eventOf(window, serving, message, kind, added),
      };
    }
  }

  /** A window read afresh: the feeds that ask before its read begins are served by it. */
  private open(key: string, from: number, through: number, source: ReplaySource): Window {
    const window: Window = { through, rows: Promise.resolve([]), seenUpTo: 0, sharedAs: new Map(), sharedSince: performance.now(), bytes: REPLAY_WINDOW * 1000 };
    const serving = this.begin(window, () => {
      window.seenUpTo = source.position();
      return source.read(from, through);
    });
    window.rows = serving.messages;
    window.rows.then(
      (messages) => {
        window.bytes = weight(messages);
        if (this.windows.peek(key) !== window) return;
        this.windows.delete(key); // set again, weighed at its real size (a set of the same value keeps the old size)
        this.windows.set(key, window);
      },
      () => {
        if (this.windows.peek(key) === window) this.windows.delete(key);
      },
    );
    this.windows.set(key, window);
    return window;
  }

  /**
   * A check of a kept window for the feeds that ask before it begins: its messages if none changed
   * since its read, else CHANGED (and the window is dropped). One holding an assistant reply still
   * streaming is read again in any case: the reply saves its growing text outside the change log
   * (`ReplyStore.savePartial`), and a feed resuming mid-reply goes on from the text saved (`deltaCount`).
   */
  private check(key: string, window: Window, source: ReplaySource): Serving {
    return this.begin(window, async () => {
      const messages = await window.rows;
      const streaming = messages.some((m) => m.status === 'STREAMING');
      if (streaming || (messages.length > 0 && (await source.changedSince(window.seenUpTo, messages.map((m) => m.seq))))) {
        if (this.windows.peek(key) === window) this.windows.delete(key);
        throw CHANGED;
      }
      return messages;
    });
  }

  /** `work` in one of the instance's catch-up turns, as the window's next serving until it begins. */
  private begin(window: Window, work: () => Promise<MessageModel[]>): Serving {
    const serving: Serving = {
      events: new Map(),
      messages: catchUpTurn(() => {
        if (window.next === serving) window.next = undefined; // from now on, a feed that asks is served by a later one
        return work();
      }),
    };
    window.next = serving;
    return serving;
  }
}

/**
 * The event of `message` for the feeds `serving` served with the same view of it (`kind`, `added`),
 * shared as one object with those of the window's other servings of the last SHARED_EXECUTIONS_MS.
 */
function eventOf(window: Window, serving: Serving, message: MessageModel, kind: ChangeEvent['kind'], added: string): ChangeEvent {
  const key = `${kind} ${added}`;
  let events = serving.events.get(message);
  if (!events) serving.events.set(message, (events = new Map()));
  let event = events.get(key);
  if (event) return event;
  if (performance.now() - window.sharedSince > SHARED_EXECUTIONS_MS) {
    window.sharedAs = new Map();
    window.sharedSince = performance.now();
  }
  let roots = window.sharedAs.get(message);
  if (!roots) window.sharedAs.set(message, (roots = new Map()));
  let root = roots.get(key);
  if (!root) roots.set(key, (root = {}));
  events.set(key, (event = { kind, change: message.changeSeq, added, message, [SHARED_AS]: root } as ChangeEvent));
  return event;
}

/**
 * What a window holds while it is kept, in bytes: itself, and each message's object (with its dates
 * and reactions) and body. Never 0 (the cache refuses that): a window of change numbers may hold
 * no message at all, every change in it superseded by a later change of the same message.
 */
function weight(messages: MessageModel[]): number {
  let bytes = WINDOW_BYTES;
  for (const message of messages) bytes += 500 + 2 * message.body.length;
  return bytes;
}

/** What a window holds before its messages (`weight`). */
const WINDOW_BYTES = 1000;
