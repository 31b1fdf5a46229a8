import { FixedBuffer, Repeater } from '@repeaterjs/repeater';
import { AppError, ErrorCode } from '../errors';
import type { Logger } from '../logger';
import { activityTopic, toWire, unsubscribeWhenSettled, userTopic, type MessageWire, type PubSub, type UserSignal } from '../pubsub';
import { within } from '../within';
import { roomIdsDigest, type RoomStore, type UserMembership } from './room-store';
import { NOTHING_TO_SETTLE } from './room-hub';

/**
 * A room's read state as one feed has told it: the viewer's read position and the room's last seq
 * (at least the newest message the feed delivered, and never below the read position). Both only
 * grow, so a client applying a feed's events in order never sees an unread count go back.
 */
export interface ReadState {
  lastReadSeq: number;
  lastSeq: number;
}

/** What a viewer's own feed (`myEvents`) carries. */
export type MyFeedEvent =
  /** A new message, with the room's read state in this feed once it came. */
  | { kind: 'activity'; message: MessageWire; readState: ReadState }
  | { kind: 'mentioned'; message: MessageWire }
  | { kind: 'added'; roomId: string }
  | { kind: 'removed'; roomId: string }
  /**
   * The viewer's read position moved, or the unread mentions of a room did with no new message (an
   * edit or a deletion): the room's read state in this feed since (none for a room the feed does not hold).
   */
  | { kind: 'read'; roomId: string; readState?: ReadState };

/**
 * How many events a feed may have waiting for its reader (a heal after an outage delivers a room's
 * missed messages at once). Past that the feed ends with SERVICE_UNAVAILABLE once the reader has
 * taken what waits, rather than lose events unseen: the feed is not resumable, so the client
 * re-reads `rooms` and subscribes again.
 */
const BUFFER = 10_000;
/** How long a message that came ahead of its turn waits for the ones before it before they are read. */
const REORDER_MS = 50;
/** How long a new feed waits for its viewer's topic (a Redis that is down) before it starts without it; the check heals. */
const SUBSCRIBE_WAIT_MS = 2000;
/** The most messages one read of a gap brings. */
const FILL_BATCH = 500;
/** Rooms, or viewers, per read of the timed check. */
const CHECK_BATCH = 1000;

interface Feed {
  viewerId: string;
  /** The viewer's rooms and the read state told in each (kept current by read signals, new messages and own sends). */
  rooms: Map<string, ReadState>;
  /** The router's clock when a signal last changed `rooms` (a check that read before then skips the feed). */
  changed: number;
  /**
   * Rooms joined whose messages since the join are being read for this feed alone (`join`): their
   * new messages wait here meanwhile, so the feed gets the room's messages in order.
   */
  holding: Map<string, MessageWire[]>;
  push(event: MyFeedEvent): void;
}

/** One room's local feeds, and how far its new messages have been routed to them. */
interface Route {
  roomId: string;
  feeds: Set<Feed>;
  /** The highest seq routed (at first, the room's last seq when its first feed here read it). */
  routed: number;
  /** Messages whose signals came before those of lower seqs, by seq. */
  early: Map<number, MessageWire>;
  timer?: NodeJS.Timeout;
  /** A read of the database for this room is under way: what comes meanwhile waits in `early`. */
  filling: boolean;
}

/**
 * Routes what happens in every room to the `myEvents` feeds open on this instance, without a
 * subscription per room: the instance listens once to the activity topic (every new message of
 * every room), and keeps an index from room to the local feeds of its members. One event costs a
 * map lookup and a push per local feed of a member of that room, however many rooms a viewer is in.
 * Each feed also listens to its viewer's own topic (rooms joined or left, read positions), which
 * keeps its part of the index current across instances.
 *
 * A room's new messages reach its feeds in seq order, each once (docs/guarantees.md, "The viewer's
 * feed"): writers on different instances may publish in another order than they committed, so a
 * message above the next seq waits a moment (REORDER_MS) for those before it, then what is still
 * missing is read from the database; one at or below the routed seq is a duplicate, or older than
 * the feeds, and dropped. A room joined brings its messages since the join (`join`). Every
 * `healIntervalMs` the router compares a digest of each viewer's rooms with the database's, then
 * reads the heads of its rooms and routes any missed tail; after a pub/sub reconnect it re-reads
 * every viewer's memberships before it routes anything new. A room joined or left (or, after a
 * reconnect, read) whose signal was lost is told as if the signal had come; after a reconnect,
 * so is each room with unread messages (its unread mentions may have changed unsignalled).
 */
export class ActivityRouter {
  private readonly byRoom = new Map<string, Route>();
  private readonly openFeeds = new Set<Feed>();
  private off?: Promise<() => Promise<void>>;
  private offReconnect?: () => void;
  private timer?: NodeJS.Timeout;
  /** Counts the signals that changed a feed's rooms (see `Feed.changed`). */
  private clock = 0;
  private checking = false;
  /** A check was asked for while one ran: which kind runs right after it. */
  private again?: 'timed' | 'everything';
  /** After a pub/sub reconnect, until the memberships are read again: new messages wait in `early`. */
  private paused = false;
  /**
   * Feeds not yet told in full (`reconcile`) since a pub/sub reconnect: a signal that changed one
   * while its viewer's rooms were read leaves it here for the next check, whatever its digest.
   */
  private readonly unhealed = new Set<Feed>();

  constructor(
    private readonly store: RoomStore,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly healIntervalMs: number,
    /** Run by each check between reading the rooms' heads and routing their tails (`SessionService.settleRevocations`). */
    private readonly settleRevocations: () => Promise<void> = NOTHING_TO_SETTLE,
  ) {}

  /** Starts listening to the activity topic, and the timed check. */
  start(): void {
    this.off = this.pubsub.subscribe(activityTopic, ({ message }) => this.route(message));
    this.off.catch((err) => this.log.warn({ err: (err as Error).message }, 'activity subscription failed; feeds heal by timer'));
    this.offReconnect = this.pubsub.onReconnect(() => void this.check(true)); // signals were lost meanwhile
    this.timer = setInterval(() => void this.check(), this.healIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.offReconnect?.();
    for (const route of this.byRoom.values()) clearTimeout(route.timer);
    unsubscribeWhenSettled(this.off);
  }

  /** How many feeds are open on this instance. */
  get size(): number {
    return this.openFeeds.size;
  }

  /** The viewer's feed: from the first `next()` on, everything that happens to them, until `return()`. */
  open(viewerId: string): AsyncIterableIterator<MyFeedEvent> {
    const buffer = new FixedBuffer(BUFFER);
    return new Repeater<MyFeedEvent>(async (push, stop) => {
      const feed: Feed = {
        viewerId,
        rooms: new Map(),
        changed: 0,
        holding: new Map(),
        push: (event) => {
          if (buffer.full) stop(new AppError(ErrorCode.ServiceUnavailable, `This feed fell more than ${BUFFER} events behind; read your rooms again and subscribe again`));
          else void push(event).catch(() => undefined);
        },
      };
      // Listen to the viewer's own topic before reading their rooms, so a room joined meanwhile is
      // not missed; a subscribe stuck behind a dead Redis does not hold the feed (the check heals).
      // What comes during the read is told after it: a room left meanwhile may be among those read.
      let early: UserSignal[] | undefined = [];
      const subscribing = this.pubsub.subscribe(userTopic(viewerId), (signal) => (early ? early.push(signal) : this.onUserSignal(feed, signal)));
      const offUser = subscribing.catch((err) => {
        this.log.warn({ err: (err as Error).message }, 'viewer topic subscription failed; the feed heals by timer');
        return undefined;
      });
      await within(offUser, SUBSCRIBE_WAIT_MS, undefined);
      try {
        for (const row of await this.store.userMemberships([viewerId])) this.index(feed, row.room_id, row.last_read_seq, row.last_seq);
        feed.changed = ++this.clock; // a check that read before this has not seen these rooms
        const signals = early;
        early = undefined;
        for (const signal of signals) this.onUserSignal(feed, signal);
        this.openFeeds.add(feed);
        await stop;
      } finally {
        this.openFeeds.delete(feed);
        this.unhealed.delete(feed);
        for (const roomId of [...feed.rooms.keys()]) this.unindex(feed, roomId);
        unsubscribeWhenSettled(offUser);
      }
    }, buffer);
  }

  /**
   * Compares each open feed's rooms with its viewer's memberships (a digest of the room ids, or,
   * with `everything` after a reconnect and for the feeds not yet read in full since (`unhealed`),
   * every membership and read position) and tells a feed that differs what it missed — a removal
   * first, so the room's later messages do not reach it; then
   * reads the heads of every routed room and routes what pub/sub did not bring. A failed read is
   * retried at the next interval. After a reconnect, new messages wait until the memberships are
   * read (`paused`).
   */
  async check(everything = false): Promise<void> {
    if (everything) {
      this.paused = true;
      for (const feed of this.openFeeds) this.unhealed.add(feed);
    }
    if (this.checking) {
      // What changed since the running check began is read right after it.
      this.again = this.again === 'everything' || everything ? 'everything' : 'timed';
      return;
    }
    this.checking = true;
    this.again = undefined;
    try {
      const feeds = [...this.openFeeds];
      for (let i = 0; i < feeds.length; i += CHECK_BATCH) {
        const since = this.clock;
        let part = feeds.slice(i, i + CHECK_BATCH);
        if (!everything) {
          const digests = await this.store.roomDigests([...new Set(part.map((feed) => feed.viewerId))]);
          part = part.filter((feed) => this.unhealed.has(feed) || digests.get(feed.viewerId) !== roomIdsDigest(feed.rooms.keys()));
          if (part.length === 0) continue;
        }
        const byViewer = new Map<string, UserMembership[]>(part.map((feed) => [feed.viewerId, []]));
        for (const row of await this.store.userMemberships([...byViewer.keys()])) byViewer.get(row.user_id)!.push(row);
        // A feed a signal changed meanwhile is left to the next check (what was read may be older than it).
        for (const feed of part) if (this.openFeeds.has(feed) && feed.changed <= since) this.reconcile(feed, byViewer.get(feed.viewerId)!, this.unhealed.delete(feed));
      }
      if (everything && this.again !== 'everything') this.resume();
      const routes = [...this.byRoom.values()];
      for (let i = 0; i < routes.length; i += CHECK_BATCH) {
        const part = routes.slice(i, i + CHECK_BATCH);
        const heads = await this.store.heads(part.map((route) => route.roomId));
        await this.settleRevocations(); // what the heads hold reaches no feed of a session ended before
        for (const route of part) {
          const lastSeq = heads.get(route.roomId)?.lastSeq ?? 0;
          // Not while paused by a reconnect meanwhile: the check it asked for reads the memberships first.
          if (lastSeq > route.routed && this.byRoom.get(route.roomId) === route && !this.paused) void this.fill(route, lastSeq);
        }
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'feeds could not check the database; retrying at the next interval');
    } finally {
      this.checking = false;
      if (this.again) void this.check(this.again === 'everything');
      else this.resume(); // a failed check does not hold new messages back (the next one heals)
    }
  }

  /** Routes what waited while paused. */
  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    for (const route of this.byRoom.values()) if (!route.filling) this.drain(route);
  }

  /**
   * Tells `feed` of each room it did not know it joined, left, or read further in, as its signal
   * would have. In full (the first time since a reconnect, `unhealed`), also of each room where it
   * told unread messages: a signal that an edit or a deletion changed the room's unread mentions
   * (`mentionsAt`) may have been lost, and the room's read state told again counts them anew.
   */
  private reconcile(feed: Feed, rows: UserMembership[], full: boolean): void {
    const now = new Map(rows.map((row) => [row.room_id, row]));
    for (const roomId of [...feed.rooms.keys()]) if (!now.has(roomId)) this.onUserSignal(feed, { kind: 'removed', roomId });
    for (const row of rows) {
      const known = feed.rooms.get(row.room_id);
      if (known === undefined) {
        this.join(feed, row.room_id, row.last_read_seq);
        feed.push({ kind: 'added', roomId: row.room_id });
      } else if (row.last_read_seq > known.lastReadSeq) {
        this.onUserSignal(feed, { kind: 'read', roomId: row.room_id, lastReadSeq: row.last_read_seq });
      } else if (full && known.lastSeq > known.lastReadSeq) {
        feed.push({ kind: 'read', roomId: row.room_id, readState: { ...known } });
      }
    }
  }

  /** A new message from the activity topic: routed in its turn (see the class). */
  private route(message: MessageWire): void {
    if (message.createdChange !== message.changeSeq) return; // only new messages are activity
    const route = this.byRoom.get(message.roomId);
    if (!route || message.seq <= route.routed) return;
    if (message.seq === route.routed + 1 && !route.filling && !this.paused) {
      this.deliver(route, message);
      if (route.early.size > 0) this.drain(route); // those that came early and follow it
      return;
    }
    route.early.set(message.seq, message);
    if (!route.filling && !this.paused) this.waitForEarlier(route);
  }

  /** Routes the early messages that are next in turn; arms the reorder timer while some still wait. */
  private drain(route: Route): void {
    for (let next = route.early.get(route.routed + 1); next; next = route.early.get(route.routed + 1)) {
      route.early.delete(next.seq);
      this.deliver(route, next);
    }
    for (const seq of route.early.keys()) if (seq <= route.routed) route.early.delete(seq);
    if (route.early.size === 0) {
      clearTimeout(route.timer);
      route.timer = undefined;
    } else {
      this.waitForEarlier(route);
    }
  }

  private waitForEarlier(route: Route): void {
    route.timer ??= setTimeout(() => {
      route.timer = undefined;
      // While paused, `resume` drains the room and waits again (a removal is told first).
      if (route.early.size > 0 && !this.paused) void this.fill(route, Math.min(...route.early.keys()) - 1);
    }, REORDER_MS);
  }

  /** Routes the room's messages after `routed` up to `upto` from the database, then the early ones in turn. */
  private async fill(route: Route, upto: number): Promise<void> {
    if (route.filling) return;
    route.filling = true;
    try {
      const going = () => this.byRoom.get(route.roomId) === route;
      const readTo = await this.readRange(route.roomId, route.routed, upto, going, (message) => {
        if (message.seq > route.routed) this.deliver(route, message);
      });
      route.routed = Math.max(route.routed, readTo); // the seqs in between have no row: none to route
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId: route.roomId }, 'feeds could not read missed messages; the check retries');
      // Go on, in order, from what came (the check reads the rest once the database answers).
      if (route.early.size > 0) route.routed = Math.max(route.routed, Math.min(...route.early.keys()) - 1);
    } finally {
      route.filling = false;
      this.drain(route);
    }
  }

  /**
   * Reads the room's messages after `after` up to `upto` from the database, in batches and in seq
   * order, handing each to `take` while `going()` holds; resolves to the seq it has read up to
   * (`upto` once all are read). Rejects with what the database threw.
   */
  private async readRange(roomId: string, after: number, upto: number, going: () => boolean, take: (message: MessageWire) => void): Promise<number> {
    let at = after;
    while (at < upto && going()) {
      const batch = await this.store.range(roomId, at, upto, FILL_BATCH);
      if (!going()) break;
      for (const message of batch) take(toWire(message));
      at = batch.length < FILL_BATCH ? upto : batch[batch.length - 1].seq;
    }
    return at;
  }

  private deliver(route: Route, message: MessageWire): void {
    route.routed = message.seq;
    const mentioned: MyFeedEvent = { kind: 'mentioned', message }; // one object for all, so a shared selection executes once
    for (const feed of route.feeds) {
      const held = feed.holding.get(message.roomId);
      if (held) held.push(message);
      else this.tell(feed, message, mentioned);
    }
  }

  /** A new message for one feed: its activity, and its mention of the viewer. */
  private tell(feed: Feed, message: MessageWire, mentioned: MyFeedEvent = { kind: 'mentioned', message }): void {
    const readState = this.advance(feed, message.roomId, message.authorId === feed.viewerId ? message.seq : 0, message.seq); // sending reads up to it
    feed.push({ kind: 'activity', message, readState });
    if (message.mentions.includes(feed.viewerId)) feed.push(mentioned);
  }

  /** Moves the feed's read state of the room forward (never back) to `lastReadSeq` and `lastSeq`; what it is then. */
  private advance(feed: Feed, roomId: string, lastReadSeq: number, lastSeq: number): ReadState {
    const known = feed.rooms.get(roomId) ?? { lastReadSeq: 0, lastSeq: 0 };
    const read = Math.max(known.lastReadSeq, lastReadSeq);
    const state = { lastReadSeq: read, lastSeq: Math.max(known.lastSeq, lastSeq, read) };
    feed.rooms.set(roomId, state);
    return state;
  }

  /**
   * Adds a room the viewer joined to their feed, from `joinedAt` (the room's last seq when they
   * joined: their read position then). A room routed here already goes on from where it is: what
   * it routed since the join is read for this feed alone, its new messages waiting meanwhile
   * (`Feed.holding`). A room new here starts at the join, and what came since is read for all.
   */
  private join(feed: Feed, roomId: string, joinedAt: number): void {
    const route = this.byRoom.get(roomId);
    this.index(feed, roomId, joinedAt, joinedAt);
    if (!route) {
      void this.fillToHead(this.byRoom.get(roomId)!);
    } else if (route.routed > joinedAt && !feed.holding.has(roomId)) {
      void this.catchUp(feed, roomId, joinedAt, route.routed);
    }
  }

  /** Routes what the room has beyond its routed seq (a route that started at a join). */
  private async fillToHead(route: Route): Promise<void> {
    try {
      const { lastSeq } = await this.store.head(route.roomId);
      if (lastSeq > route.routed) await this.fill(route, lastSeq);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId: route.roomId }, 'feeds could not read a joined room; the check retries');
    }
  }

  /** Tells one feed the room's messages after `from` up to `upto`, then those that came meanwhile (all above `upto`). */
  private async catchUp(feed: Feed, roomId: string, from: number, upto: number): Promise<void> {
    const held: MessageWire[] = [];
    feed.holding.set(roomId, held);
    const going = () => feed.holding.get(roomId) === held; // not once the viewer left the room
    try {
      await this.readRange(roomId, from, upto, going, (message) => this.tell(feed, message));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, roomId }, 'feeds could not read a joined room\'s messages; going on from now');
    } finally {
      if (going()) {
        feed.holding.delete(roomId);
        for (const message of held) this.tell(feed, message);
      }
    }
  }

  private onUserSignal(feed: Feed, signal: UserSignal): void {
    if (signal.kind === 'read' && signal.mentionsAt !== undefined) {
      // The room's read state again, its mentionCount counted anew: only for a message this feed
      // has told and the viewer not read (a later one's activity counts it when it comes).
      const known = feed.rooms.get(signal.roomId);
      const at = signal.mentionsAt;
      if (known && at > known.lastReadSeq && at <= known.lastSeq) feed.push({ kind: 'read', roomId: signal.roomId, readState: { ...known } });
      return; // no change of the feed's rooms or read positions
    }
    feed.changed = ++this.clock;
    // A joiner has read the room up to where it was when they joined: that is where its messages start.
    if (signal.kind === 'added' && !feed.rooms.has(signal.roomId)) this.join(feed, signal.roomId, signal.lastReadSeq);
    if (signal.kind === 'removed') this.unindex(feed, signal.roomId);
    if (signal.kind === 'read') {
      const readState = feed.rooms.has(signal.roomId) ? this.advance(feed, signal.roomId, signal.lastReadSeq, 0) : undefined;
      feed.push({ kind: 'read', roomId: signal.roomId, readState });
      return;
    }
    feed.push({ kind: signal.kind, roomId: signal.roomId });
  }

  private index(feed: Feed, roomId: string, lastReadSeq: number, lastSeq: number): void {
    this.advance(feed, roomId, lastReadSeq, lastSeq);
    let route = this.byRoom.get(roomId);
    if (!route) this.byRoom.set(roomId, (route = { roomId, feeds: new Set(), routed: lastSeq, early: new Map(), filling: false }));
    route.feeds.add(feed);
  }

  private unindex(feed: Feed, roomId: string): void {
    feed.rooms.delete(roomId);
    feed.holding.delete(roomId);
    const route = this.byRoom.get(roomId);
    if (!route) return;
    route.feeds.delete(feed);
    if (route.feeds.size > 0) return;
    clearTimeout(route.timer);
    this.byRoom.delete(roomId);
  }
}
