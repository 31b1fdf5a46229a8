import { Repeater, SlidingBuffer } from '@repeaterjs/repeater';
import type { DataSource } from 'typeorm';
import type { Logger } from '../logger';
import { activityTopic, unsubscribeWhenSettled, userTopic, type MessageWire, type PubSub, type UserSignal } from '../pubsub';

/** What a viewer's own feed (`myEvents`) carries. */
export type MyFeedEvent =
  /** A new message, with the viewer's read position in its room at that moment. */
  | { kind: 'activity'; message: MessageWire; lastReadSeq: number }
  | { kind: 'mentioned'; message: MessageWire }
  | { kind: 'added'; roomId: string }
  | { kind: 'removed'; roomId: string }
  | { kind: 'read'; roomId: string };

/** How many events a slow reader of its own feed may have waiting; past that the oldest go (the feed is not resumable: clients re-read `rooms`). */
const BUFFER = 1000;

interface Feed {
  viewerId: string;
  /** The viewer's rooms and their read position in each (kept current by read signals and own sends). */
  rooms: Map<string, number>;
  push(event: MyFeedEvent): void;
}

/**
 * Routes what happens in every room to the `myEvents` feeds open on this instance, without a
 * subscription per room: the instance listens once to the activity topic (every new message of
 * every room), and keeps an index from room to the local feeds of its members. One event costs a
 * map lookup and a push per local feed of a member of that room, however many rooms a viewer is in.
 * Each feed also listens to its viewer's own topic (rooms joined or left, read positions), which
 * keeps its part of the index current across instances.
 */
export class ActivityRouter {
  private readonly byRoom = new Map<string, Set<Feed>>();
  private feeds = 0;
  private off?: Promise<() => Promise<void>>;

  constructor(
    private readonly db: DataSource,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
  ) {}

  /** Starts listening to the activity topic. */
  start(): void {
    this.off = this.pubsub.subscribe(activityTopic, ({ message }) => this.route(message));
    this.off.catch((err) => this.log.warn({ err: (err as Error).message }, 'activity subscription failed'));
  }

  stop(): void {
    unsubscribeWhenSettled(this.off);
  }

  /** How many feeds are open on this instance. */
  get size(): number {
    return this.feeds;
  }

  /** The viewer's feed: from the first `next()` on, everything that happens to them, until `return()`. */
  open(viewerId: string): AsyncIterableIterator<MyFeedEvent> {
    return new Repeater<MyFeedEvent>(async (push, stop) => {
      const feed: Feed = { viewerId, rooms: new Map(), push: (event) => void push(event).catch(() => undefined) };
      // Listen to the viewer's own topic before reading their rooms, so a room joined meanwhile is not missed.
      const offUser = await this.pubsub.subscribe(userTopic(viewerId), (signal) => this.onUserSignal(feed, signal));
      this.feeds++;
      try {
        const rows: Array<{ room_id: string; last_read_seq: number }> = await this.db.query(
          'SELECT room_id, last_read_seq FROM memberships WHERE user_id = $1',
          [viewerId],
        );
        for (const row of rows) this.index(feed, row.room_id, row.last_read_seq);
        await stop;
      } finally {
        this.feeds--;
        for (const roomId of [...feed.rooms.keys()]) this.unindex(feed, roomId);
        await offUser().catch(() => undefined);
      }
    }, new SlidingBuffer(BUFFER));
  }

  private route(message: MessageWire): void {
    if (message.createdChange !== message.changeSeq) return; // only new messages are activity
    const feeds = this.byRoom.get(message.roomId);
    if (!feeds) return;
    const mentioned: MyFeedEvent = { kind: 'mentioned', message }; // one object for all, so a shared selection executes once
    for (const feed of feeds) {
      if (message.authorId === feed.viewerId) feed.rooms.set(message.roomId, message.seq); // sending reads up to it
      feed.push({ kind: 'activity', message, lastReadSeq: feed.rooms.get(message.roomId) ?? 0 });
      if (message.mentions.includes(feed.viewerId)) feed.push(mentioned);
    }
  }

  private onUserSignal(feed: Feed, signal: UserSignal): void {
    if (signal.kind === 'added') this.index(feed, signal.roomId, signal.lastReadSeq);
    if (signal.kind === 'removed') this.unindex(feed, signal.roomId);
    if (signal.kind === 'read' && feed.rooms.has(signal.roomId)) {
      feed.rooms.set(signal.roomId, Math.max(feed.rooms.get(signal.roomId)!, signal.lastReadSeq));
    }
    feed.push({ kind: signal.kind, roomId: signal.roomId });
  }

  private index(feed: Feed, roomId: string, lastReadSeq: number): void {
    feed.rooms.set(roomId, Math.max(lastReadSeq, feed.rooms.get(roomId) ?? 0));
    let feeds = this.byRoom.get(roomId);
    if (!feeds) this.byRoom.set(roomId, (feeds = new Set()));
    feeds.add(feed);
  }

  private unindex(feed: Feed, roomId: string): void {
    feed.rooms.delete(roomId);
    const feeds = this.byRoom.get(roomId);
    feeds?.delete(feed);
    if (feeds?.size === 0) this.byRoom.delete(roomId);
  }
}
