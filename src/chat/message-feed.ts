import { Repeater } from '@repeaterjs/repeater';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger';
import type { PushSink, PushStream } from '../push-stream';
import type { MessageModel } from '../pubsub';
import { AddedSet } from './added-set';
import type { ReplayRead } from './replay-windows';
import { type ChangeEvent, type HubEvent, type HubListener, type RoomHub } from './room-hub';

/**
 * What one subscription receives: messages or changes in order, for roomEvents also the room's
 * ephemeral signals (assistant deltas, member changes), and at most one `revoked` (the viewer left
 * or was removed), which ends it.
 */
export type FeedEvent = ChangeEvent | Extract<HubEvent, { kind: 'delta' | 'membership' | 'typing' | 'presence' }> | { kind: 'revoked' };

/**
 * Where a feed starts and how it counts. `changes` (roomEvents): by change number, every change
 * after `after`, each message first as `added`; `added` tells which messages the client
 * already has. `messages` (messageAdded): new messages by seq after `after`. Without `after` the
 * feed starts where the hub is.
 */
export type FeedStart =
  | { order: 'changes'; after?: { change: number; added: AddedSet } }
  | { order: 'messages'; after?: { seq: number } };

export interface FeedOptions {
  log: Logger;
  roomId: string;
  /** The subscriber; the feed ends with `revoked` when this user stops being a member. */
  viewerId: string;
  start: FeedStart;
  /** The room's hub, attached to when the feed starts and released when it ends (retried while the database is down). */
  acquire(): Promise<{ hub: RoomHub; release: () => void }>;
  /** Whether the subscriber is a member now, read from the database (asked once the feed listens to the hub). */
  isMember(): Promise<boolean>;
  /** The room's replies still streaming, read from the database (asked once the feed has caught up: roomEvents only). */
  streaming(): Promise<MessageModel[]>;
}

/**
 * Replies a feed tracks the deltas of at most (`MessageFeed.deltaNext`): each is forgotten when
 * its end passes the feed from the hub, so this bounds only those whose end a slow reader's buffer
 * shed (the least recent forgotten first).
 */
const REPLIES_TRACKED = 1000;
/** In `deltaNext`: deltas of the reply came on the way, and the feed has not told the reply yet. */
const UNTOLD = -1;
/** How many events may wait for a slow reader before the feed falls back to the database. */
const MAX_BUFFER = 1000;
const RETRY_MS = 1000;

type LiveEvent = Exclude<FeedEvent, { kind: 'revoked' }>;

/**
 * One subscription's stream; owns docs/guarantees.md guarantees 1 and 2 (and replays guarantee 8's
 * log). It attaches to the hub (buffering live events), replays from the database everything after
 * its start up to the hub's position (through the hub: feeds replaying together share the reads),
 * delivers what it buffered meanwhile, skipping what it already delivered — no gap and no
 * duplicate at the seam — and then goes **live**: from then on the hub's fan-out hands each event
 * to the sink synchronously (`PushSink.live`), with no iterator, promise or queue of its own. When
 * the sink asks it to wait (a congested socket), or a message arrives ahead of a gap, it leaves the
 * live path, buffers, and catches up the same way. A reader too slow for the buffer loses nothing
 * either: the buffered changes are dropped and read again from the database. While the database
 * is unreachable it waits and retries instead of failing. Stopping it ends it promptly, also while
 * it waits.
 */
export class MessageFeed implements PushStream<FeedEvent>, AsyncIterable<FeedEvent> {
  private queue: LiveEvent[] = [];
  /** Every change after `position` is in the queue or will be (false at a resume and after an overflow). */
  private synced = false;
  private revoked = false;
  private stopped = false;
  private finished = false;
  /** The loop (attach, replay, buffered events) is running. */
  private looping = false;
  /** The loop is idle and the hub's events go straight to the sink. */
  private live = false;
  /** While live in change order: this feed's view is the hub's (same position, same added set), so the hub's events are taken as they are. */
  private follows = false;
  /** Made when a wait for a retry begins (most feeds never wait): aborting it ends the wait. */
  private stopping?: AbortController;
  private sink?: PushSink<FeedEvent>;
  private attached?: { hub: RoomHub; release: () => void };
  /** The last change number (changes) or seq (messages) delivered. */
  private position = 0;
  /** Messages delivered as added (changes order, while not following the hub). */
  private added = new AddedSet(0);
  /**
   * Until the feed first caught up (roomEvents only): the replies still streaming its replay
   * carried, read after it listened; the others it is told of then (`streamingNow`).
   */
  private replayedStreaming?: Set<string>;
  /**
   * roomEvents: for each reply whose deltas come to this feed, the index of the delta its client
   * appends next — the `deltaCount` it was told, plus the deltas passed since (docs/guarantees.md,
   * guarantee 7); UNTOLD before the feed has told the reply (its deltas pass as they come);
   * Infinity once it has told its end (none passes). Only that delta passes: one below it is in
   * the text told already (one in flight while the reply was read); one above it means deltas
   * were lost on the way (pub/sub reconnected, or this feed's buffer shed them for a slow reader),
   * and the reply is told again as it stands first (`retell`). A reply is tracked from its first
   * delta or its telling as streaming on, and forgotten when its end comes from the hub: its
   * deltas, published before it on the same topic, have all come by then (a slow reader's buffer
   * holds them ahead of it, after the end its catch-up read).
   */
  private deltaNext?: Map<string, number>;
  /** A read for `retell` failed and has not succeeded since (its warning is logged once). */
  private retellFailing = false;

  constructor(private readonly options: FeedOptions) {
    if (options.start.order === 'changes') this.replayedStreaming = new Set();
  }

  /** Starts the feed into `sink`: it attaches to the room's hub, replays, then goes live. */
  startPush(sink: PushSink<FeedEvent>): () => void {
    if (this.sink) throw new Error('A feed starts once');
    this.sink = sink;
    void this.loop();
    return () => this.stop();
  }

  /** Iterating the feed iterates `events()`; a consumer that can take pushed events calls `startPush` instead. */
  [Symbol.asyncIterator](): AsyncIterableIterator<FeedEvent> {
    return this.events();
  }

  /** The feed as an async iterator (for consumers that pull); nothing is attached until the first `next()`. */
  events(): AsyncIterableIterator<FeedEvent> {
    const repeater = new Repeater<FeedEvent>(async (push, stop) => {
      const ended = new Promise<void>((resolve, reject) => {
        const take = (event: FeedEvent) => Promise.race([push(event), stop]).then(() => undefined);
        const stopFeed = this.startPush({ replay: take, live: take, end: (err) => (err ? reject(err) : resolve()) });
        void stop.then(stopFeed);
      });
      await ended;
      stop();
    });
    // A Repeater hands `throw()` to its executor only while it waits on a push; end the feed in any case.
    return Object.assign(repeater, {
      throw: async (err: unknown): Promise<IteratorResult<FeedEvent>> => {
        await repeater.return();
        throw err;
      },
    });
  }

  /** Ends the feed: its loop and any wait for the database end at once. */
  private stop(): void {
    this.stopped = true;
    this.stopping?.abort();
    if (!this.looping) this.finish();
  }

  private finish(error?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.live = false;
    if (this.attached) {
      this.attached.hub.remove(this.listener);
      this.attached.release();
    }
    this.sink!.end(error);
  }

  /**
   * Attaches (once), then delivers everything the feed owes — the replay, buffered events, a gap —
   * through `sink.replay`, one at a time, until the buffer is empty: then the feed goes live.
   * Ends the feed when it is stopped or revoked.
   */
  private async loop(): Promise<void> {
    if (this.looping || this.finished) return;
    this.looping = true;
    try {
      if (!this.attached) await this.attach();
      const { attached } = this;
      if (!attached) return;
      while (!this.stopped && !this.revoked) {
        if (!this.synced) {
          // Everything up to the hub's position now comes from the database; every later change is
          // queued — unless the queue overflows meanwhile, which makes the feed read again.
          const upto = this.head(attached.hub);
          this.synced = true;
          await this.deliverAll(this.catchUp(upto));
          if (this.position < upto) this.synced = false;
          else if (this.replayedStreaming) await this.deliverAll(this.streamingNow(this.replayedStreaming));
          continue;
        }
        const next = this.queue.shift();
        if (!next) return this.goLive(attached.hub);
        const gap = this.gapBefore(next);
        if (gap) await this.deliverAll(this.catchUp(gap));
        else if (this.deltaGap(next)) await this.deliverAll(this.retell(next.messageId));
        if (this.stopped || this.revoked) continue; // the gap read was cut short: nothing after it goes out
        const event = this.accept(next);
        if (event) await this.deliver(event);
      }
      if (this.revoked && !this.stopped) await this.deliver({ kind: 'revoked' });
      this.stopped = true;
    } catch (err) {
      this.stopped = true;
      this.finish(err);
    } finally {
      this.looping = false;
      if (this.stopped) this.finish();
    }
  }

  private async deliver(event: FeedEvent): Promise<void> {
    if (!this.stopped) await this.sink!.replay(event);
  }

  private async deliverAll(events: AsyncIterable<FeedEvent>): Promise<void> {
    for await (const event of events) await this.deliver(event);
  }

  /** The buffer is empty and nothing is owed: the hub's next events go straight to the sink. */
  private goLive(hub: RoomHub): void {
    this.live = true;
    this.follows = this.options.start.order === 'changes' && this.position === hub.position && this.added.equals(hub.added);
  }

  /**
   * Back from the live path to the loop. Called within the hub's fan-out, where the hub's added
   * set is the one the feed followed up to the event just taken.
   */
  private leaveLive(hub: RoomHub, wait?: Promise<void>): void {
    this.live = false;
    if (this.follows) this.added = hub.added.clone();
    this.follows = false;
    if (wait) void wait.then(() => this.loop(), () => this.loop());
    else void this.loop();
  }

  /** Waits before a retry; resolves at once when the feed stops. */
  private async retryWait(): Promise<void> {
    if (this.stopped) return;
    this.stopping ??= new AbortController();
    await sleep(RETRY_MS, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  /**
   * Listens to the hub, then makes sure the viewer is still a member (docs/guarantees.md, guarantee
   * 6): a removal signalled between the subscription's access check and now went unheard, and one
   * committed after this read reaches the listener. Nothing is delivered before it answers.
   */
  private async attach(): Promise<void> {
    if ((await this.listen()) && (await this.stillMember()) === false) this.revoked = true;
  }

  /** Whether the viewer is a member now, retried while the database is unreachable (undefined: stopped meanwhile). */
  private async stillMember(): Promise<boolean | undefined> {
    const { options } = this;
    while (!this.stopped) {
      try {
        return await options.isMember();
      } catch (err) {
        options.log.warn({ err: (err as Error).message, roomId: options.roomId }, 'feed could not read its viewer\'s membership; retrying');
        await this.retryWait();
      }
    }
    return undefined;
  }

  /** Acquires the hub (retrying while the database is unreachable), listens to it and places the feed's start; false when stopped first. */
  private async listen(): Promise<boolean> {
    const { options } = this;
    for (;;) {
      try {
        const attached = await options.acquire();
        const { hub } = attached;
        this.attached = attached; // before it listens: the listener reads it from the first event on
        hub.add(this.listener, options.viewerId);
        const { start } = options;
        if (start.order === 'changes') {
          this.position = start.after?.change ?? hub.position;
          this.added = (start.after?.added ?? hub.added).clone();
        } else {
          this.position = start.after?.seq ?? hub.lastSeq;
        }
        return true;
      } catch (err) {
        options.log.warn({ err: (err as Error).message, roomId: options.roomId }, 'feed could not reach its room hub; retrying');
        await this.retryWait();
        if (this.stopped) return false;
      }
    }
  }

  private readonly listener: HubListener = (event) => {
    if (this.revoked) return; // nothing follows a revocation
    const hub = this.attached!.hub;
    if (event.kind === 'membership' && event.role === null && event.userId === this.options.viewerId) {
      this.revoked = true;
      this.queue = []; // docs/guarantees.md guarantee 6: nothing more reaches a removed member
      if (this.live) this.leaveLive(hub);
      return;
    }
    // Ephemeral signals (deltas, member changes, typing, presence) are for roomEvents only (docs/guarantees.md, guarantee 11).
    if (event.kind !== 'added' && event.kind !== 'updated' && this.options.start.order === 'messages') return;
    if (event.kind === 'delta' && !this.deltaNext?.has(event.messageId)) this.track(event.messageId, UNTOLD);
    if (this.live && !this.gapBefore(event) && !this.deltaGap(event)) {
      const taken = this.accept(event);
      const wait = taken && this.sink!.live(taken, hub);
      if (wait) this.leaveLive(hub, wait);
      return;
    }
    if (this.queue.length >= MAX_BUFFER) this.shed();
    this.queue.push(event);
    if (this.live) this.leaveLive(hub); // a message ahead of a gap, or a delta past lost ones: the loop reads what is missing first
  };

  /** Too slow a reader: drop buffered changes (read again from the database), then the oldest deltas. */
  private shed(): void {
    this.queue = this.queue.filter((e) => e.kind !== 'added' && e.kind !== 'updated');
    this.synced = false;
    if (this.queue.length >= MAX_BUFFER) this.queue.shift();
  }

  private head(hub: RoomHub): number {
    return this.options.start.order === 'changes' ? hub.position : hub.lastSeq;
  }

  /**
   * Everything after `position` up to `upto` from the database, a window at a time through the
   * hub (shared with the room's other feeds: `RoomHub.replay`), retrying while it is unreachable.
   */
  private async *catchUp(upto: number): AsyncGenerator<FeedEvent> {
    const { roomId, log, start } = this.options;
    const { hub } = this.attached!;
    while (this.position < upto && !this.stopped && !this.revoked) {
      let read: ReplayRead;
      try {
        read = await hub.replay(start.order, this.position, upto);
      } catch (err) {
        log.warn({ err: (err as Error).message, roomId }, 'feed could not read the database; retrying');
        await this.retryWait();
        continue;
      }
      for (const message of read.messages) {
        if (this.stopped || this.revoked) return;
        yield this.present(message, read);
      }
      // Changes: the numbers in between were superseded. Messages: all of them are committed.
      this.position = read.through;
    }
  }

  /**
   * A message from the database as this feed's next event; advances `position`. Feeds that
   * `read` served with the same view of it present the same event object (`ReplayRead.event`).
   */
  private present(message: MessageModel, read: ReplayRead): ChangeEvent {
    if (this.options.start.order === 'messages') {
      this.position = message.seq;
      return read.event(message, 'added', String(message.seq));
    }
    this.position = message.changeSeq;
    if (message.status === 'STREAMING') this.replayedStreaming?.add(message.id);
    this.told(message);
    const kind = this.added.mark(message.seq) ? 'updated' : 'added';
    return read.event(message, kind, this.added.snapshot());
  }

  /**
   * Once the feed has first caught up (roomEvents): each reply still streaming that its replay did
   * not carry, as it stands now — read after the feed listened — at the feed's position
   * (docs/guarantees.md, guarantee 7). A client that read the reply from history, or had it before
   * it reconnected, missed the deltas published meanwhile; this text holds them (each piece is
   * saved before it is published), and the deltas it then receives go on from its `deltaCount`.
   * A reply with a change still to come is told by that change.
   */
  private async *streamingNow(replayed: Set<string>): AsyncGenerator<FeedEvent> {
    this.replayedStreaming = undefined;
    let replies: MessageModel[] | undefined;
    while (!replies) {
      try {
        replies = await this.options.streaming();
      } catch (err) {
        this.options.log.warn({ err: (err as Error).message, roomId: this.options.roomId }, 'feed could not read the replies streaming; retrying');
        await this.retryWait();
        if (this.stopped) return;
      }
    }
    for (const reply of replies) {
      if (this.stopped || this.revoked) return;
      if (replayed.has(reply.id) || reply.changeSeq > this.position) continue;
      yield this.asItStands(reply);
    }
  }

  /**
   * A reply whose deltas were lost on the way to this feed (`deltaNext`), told again as it stands:
   * read now, it holds every delta published so far (each piece is saved before it is published),
   * and the deltas go on from its `deltaCount`. Not told when a change of it is still to come (that
   * change tells it), nor when it has ended (its end does, with the whole text). While it cannot
   * be read, none of its deltas passes (`passDelta`): the next one's read tries again.
   */
  private async *retell(messageId: string): AsyncGenerator<FeedEvent> {
    let replies: MessageModel[];
    try {
      replies = await this.options.streaming();
    } catch (err) {
      // Its deltas wait for the next one's read: none past the gap goes out meanwhile (`passDelta`).
      if (!this.retellFailing) this.options.log.warn({ err: (err as Error).message, roomId: this.options.roomId }, 'feed could not read a reply whose deltas it lost; reading it again at its next delta');
      this.retellFailing = true;
      return;
    }
    this.retellFailing = false;
    if (this.stopped || this.revoked || !this.deltaNext?.has(messageId)) return;
    const reply = replies.find((r) => r.id === messageId);
    this.deltaNext.set(messageId, reply?.deltaCount ?? Infinity); // ended: its end, still to come, tells the whole text
    if (!reply) return;
    if (reply.changeSeq <= this.position) yield this.asItStands(reply);
  }

  /** A reply still streaming as read from the database, told at the feed's position (no change of the log: its cursor is the one before). */
  private asItStands(reply: MessageModel): ChangeEvent {
    this.told(reply);
    const kind = this.added.mark(reply.seq) ? 'updated' : 'added';
    return sharedEvent(reply, kind, this.position, this.added.snapshot());
  }

  /** Notes what the feed's client now has of a message it tells (`deltaNext`): a reply streaming, or the end of one tracked. */
  private told(message: MessageModel): void {
    if (message.status === 'STREAMING') this.track(message.id, message.deltaCount);
    else if (this.deltaNext?.has(message.id)) this.deltaNext.set(message.id, Infinity);
  }

  private track(messageId: string, next: number): void {
    const tracked = (this.deltaNext ??= new Map());
    tracked.set(messageId, next);
    if (tracked.size > REPLIES_TRACKED) tracked.delete(tracked.keys().next().value!);
  }

  /** A reply's end (or a later change) came from the hub: none of its deltas comes after it (`deltaNext`). */
  private forget(messageId: string): void {
    if (this.deltaNext?.delete(messageId) && this.deltaNext.size === 0) this.deltaNext = undefined;
  }

  /** A delta past the next one this feed's client appends: deltas were lost on the way (`retell`). */
  private deltaGap(event: HubEvent): event is Extract<HubEvent, { kind: 'delta' }> {
    if (event.kind !== 'delta') return false;
    const next = this.deltaNext?.get(event.messageId);
    return next !== undefined && next !== UNTOLD && event.index > next;
  }

  /**
   * By seq, a live message ahead of the next one (its insert arrived late, or only at a later
   * change) needs the messages before it first: the seq up to which to read, else undefined.
   */
  private gapBefore(event: HubEvent): number | undefined {
    if (this.options.start.order !== 'messages' || (event.kind !== 'added' && event.kind !== 'updated')) return undefined;
    return event.message.seq > this.position + 1 ? event.message.seq - 1 : undefined;
  }

  /**
   * A live event from the hub as what to deliver: itself (shared with every feed, so a
   * subscription executes it once), nothing when already delivered, or — when this feed's view
   * differs from the hub's (a message this feed never carried) — its own copy.
   */
  private accept(event: LiveEvent): FeedEvent | undefined {
    if (event.kind === 'delta') return this.deltaNext ? this.passDelta(event) : event;
    if (event.kind !== 'added' && event.kind !== 'updated') return event;
    const { message } = event;
    if (this.options.start.order === 'changes') {
      const ended = message.status !== 'STREAMING';
      if (ended && this.deltaNext) this.forget(message.id);
      if (event.change <= this.position) return undefined;
      this.position = event.change;
      if (!ended) this.told(message);
      if (this.follows) return event;
      const kind = this.added.mark(message.seq) ? 'updated' : 'added';
      const added = this.added.snapshot();
      return kind === event.kind && added === event.added ? event : { ...event, kind, added };
    }
    if (message.seq <= this.position) return undefined;
    this.position = message.seq;
    return event.kind === 'added' ? event : asAdded(event);
  }

  /** Whether a delta goes to this feed's client (`deltaNext`): only the next piece of the text it was told. */
  private passDelta(event: Extract<HubEvent, { kind: 'delta' }>): FeedEvent | undefined {
    const next = this.deltaNext!.get(event.messageId);
    if (next === undefined || next === UNTOLD) return event;
    // Below it: in the text told. Above it: past lost ones, and the reply could not be told again
    // (`retell`): its client could not append it; the next delta tries again.
    if (event.index !== next) return undefined;
    this.deltaNext!.set(event.messageId, next + 1);
    return event;
  }
}

/** A message's first appearance in messages order that the hub carries as `updated` (its insert was superseded), one copy per event for every feed, so they still share its execution. */
const addedCopies = new WeakMap<ChangeEvent, ChangeEvent>();
function asAdded(event: ChangeEvent): ChangeEvent {
  let copy = addedCopies.get(event);
  if (!copy) addedCopies.set(event, (copy = { ...event, kind: 'added' }));
  return copy;
}

/** The events telling replies as they stand, by reply read and view: the feeds served by one read share them, so a subscription executes each once. */
const toldEvents = new WeakMap<MessageModel, Map<string, ChangeEvent>>();
function sharedEvent(reply: MessageModel, kind: ChangeEvent['kind'], change: number, added: string): ChangeEvent {
  let events = toldEvents.get(reply);
  if (!events) toldEvents.set(reply, (events = new Map()));
  const view = `${kind} ${change} ${added}`;
  let event = events.get(view);
  if (!event) events.set(view, (event = { kind, change, added, message: reply }));
  return event;
}
