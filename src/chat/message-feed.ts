import type { Logger } from '../logger';
import type { RoomSignal } from '../pubsub';
import type { MessageModel } from './models';
import type { RoomHub } from './room-hub';
import type { RoomStore } from './room-store';

/**
 * Events one subscription receives: messages in strictly increasing seq, the other room signals
 * it accepts, and at most one `revoked` (the viewer left or was removed), which ends the feed.
 */
export type FeedEvent =
  | Exclude<RoomSignal, { kind: 'added' | 'membership' }>
  | { kind: 'added'; message: MessageModel }
  | { kind: 'revoked' };

export interface FeedOptions {
  hub: RoomHub;
  store: RoomStore;
  log: Logger;
  /** The subscriber; the feed ends with `revoked` when this user stops being a member. */
  viewerId: string;
  /** Deliver messages with seq greater than this; undefined means only those sent from now on. */
  afterSeq?: number;
  /** Which signals besides new messages and the viewer's removal to pass on (updates, deltas). */
  accept: (signal: RoomSignal) => boolean;
  /** Events delivered before anything else (e.g. the current state of replies a resuming client had). */
  initial?: FeedEvent[];
  /** Called once when the feed ends, for whatever reason. */
  onClose: () => void;
}

/** How many live events may wait for a slow reader before the feed falls back to the database. */
const MAX_BUFFER = 1000;
const REPLAY_BATCH = 200;
const RETRY_MS = 1000;

/**
 * One subscription's stream (API.md guarantees 1 and 2): attaches to the hub (buffering live
 * events), replays from the database every message after the cursor up to the hub's position,
 * then passes live events, skipping any seq it already delivered. No gap and no duplicate at the
 * seam. A reader too slow for the buffer loses no message either: the buffer is dropped and the
 * feed reads the range from the database. While the database is unreachable it waits and
 * retries instead of failing the subscription. `return()` ends it promptly even while it waits.
 */
export function createMessageFeed(options: FeedOptions): AsyncIterableIterator<FeedEvent> {
  const { hub, store, log } = options;
  const roomId = hub.roomId;
  let queue: FeedEvent[] = [...(options.initial ?? [])];
  let closed = false;
  let revoked = false;
  let wake: (() => void) | undefined;
  const listener = (signal: RoomSignal) => {
    if (revoked || closed) return; // nothing follows a revocation
    let event: FeedEvent;
    if (signal.kind === 'membership') {
      if (signal.member || signal.userId !== options.viewerId) return;
      event = { kind: 'revoked' };
      revoked = true;
      queue = []; // API.md guarantee 6: nothing more reaches a removed member
    } else if (signal.kind === 'added' || options.accept(signal)) {
      event = signal;
      // Too slow a reader: drop buffered messages (the feed re-reads them from the database), and
      // past that the oldest other events (a final MessageUpdated still carries a reply's text).
      if (queue.length >= MAX_BUFFER) queue = queue.filter((s) => s.kind !== 'added');
      if (queue.length >= MAX_BUFFER) queue.shift();
    } else {
      return;
    }
    queue.push(event);
    wake?.();
  };
  hub.add(listener, options.viewerId);
  let delivered = options.afterSeq ?? hub.position;

  const sleep = (ms?: number) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  /** Messages from the database up to `uptoSeq`, in batches, retrying while it is unreachable. */
  async function* catchUp(uptoSeq: number): AsyncGenerator<FeedEvent> {
    while (delivered < uptoSeq && !closed && !revoked) {
      let batch;
      try {
        batch = await store.range(roomId, delivered, uptoSeq, REPLAY_BATCH);
      } catch (err) {
        log.warn({ err: (err as Error).message, roomId }, 'feed could not read the database; retrying');
        await sleep(RETRY_MS);
        continue;
      }
      if (batch.length === 0) return; // nothing there (yet): the hub will bring it
      for (const message of batch) {
        if (closed || revoked) return;
        delivered = message.seq;
        yield { kind: 'added', message };
      }
    }
  }

  async function* run(): AsyncGenerator<FeedEvent> {
    try {
      while (!closed) {
        const head = queue.shift();
        if (!head) {
          const before = delivered;
          if (delivered < hub.position) yield* catchUp(hub.position);
          if (delivered === before && !closed && queue.length === 0) await sleep(delivered < hub.position ? RETRY_MS : undefined);
          continue;
        }
        if (head.kind === 'revoked') {
          yield head;
          break;
        }
        if (head.kind !== 'added') {
          yield head;
          continue;
        }
        const { seq } = head.message;
        if (seq <= delivered) continue;
        if (seq > delivered + 1) yield* catchUp(seq - 1);
        if (closed) break;
        if (revoked) continue; // the revocation is next in the queue
        delivered = seq;
        yield head;
      }
    } finally {
      close();
    }
  }

  function close() {
    if (closed) return;
    closed = true;
    hub.remove(listener);
    wake?.();
    options.onClose();
  }

  const generator = run();
  return {
    next: () => generator.next(),
    return: async () => {
      close();
      return generator.return(undefined);
    },
    throw: async (err) => {
      close();
      return generator.throw(err);
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
