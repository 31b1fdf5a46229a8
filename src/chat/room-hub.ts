import DataLoader from 'dataloader';
import type { Logger } from '../logger';
import { activityTopic, roomTopic, toWire, unsubscribeWhenSettled, type MessageModel, type MessageWire, type PubSub, type RoomSignal } from '../pubsub';
import { within } from '../within';
import { AddedSet } from './added-set';
import { REPLAY_WINDOW, ReplayWindows, type ReplayOrder, type ReplayRead } from './replay-windows';
import { membershipKey, type RoomStore } from './room-store';

/** A message at one change of the room's log, as an event: `added` the first time a stream carries it. */
export interface ChangeEvent {
  kind: 'added' | 'updated';
  /** The change number this state belongs to (the event's cursor). */
  change: number;
  /** What the stream has carried as added once this event is delivered (`AddedSet.snapshot`; the cursor keeps it). */
  added: string;
  message: MessageWire | MessageModel;
}

/** What a hub fans out: changes in change order, and the room's ephemeral signals as they come. */
export type HubEvent = ChangeEvent | Exclude<RoomSignal, { kind: 'change' }>;

export type HubListener = (event: HubEvent) => void;

const FILL_BATCH = 500;
/** How long a signal that came ahead of its turn waits for the ones before it before the gap is read. */
const REORDER_MS = 50;
const SUBSCRIBE_WAIT_MS = 2000;
/**
 * Users a hub remembers the last membership signal of (`RoomHub.lastMembership`): a typing start
 * races a removal, and two instances' publishes cross, by milliseconds, so the latest are the ones
 * that matter.
 */
const MAX_MEMBERSHIPS_NOTED = 1000;

/** Without sessions to settle (a hub alone, in tests). */
export const NOTHING_TO_SETTLE = async (): Promise<void> => undefined;

/**
 * One room's delivery point on this instance; owns docs/guarantees.md guarantee 5 (instances act as one). It holds
 * one pub/sub subscription, its room's topic (new messages reach it from the activity topic
 * through `HubRegistry`), and `position`, the last change number it fanned out. Signals are
 * handled one at a time: a change above `position + 1` waits a moment (REORDER_MS) for the signals
 * before it, which writers on other instances may have published later, then has what is still
 * missing read from the database (numbers with no row there were superseded by later changes of
 * the same message); one at or below `position` is a duplicate and dropped. On pub/sub reconnect, and on a slow timer
 * of its registry (one read for every hub of the instance), it compares `position` with the room's
 * `last_change` and reads any missed tail, and checks that its listeners' users are still members
 * (a lost removal signal is re-made). Listeners therefore see
 * every change in increasing change number, once, each message first as `added`.
 */
export class RoomHub {
  /** The last change number fanned out. */
  position = 0;
  /** The highest seq fanned out (or the room's last seq when the hub started). */
  lastSeq = 0;
  /** The messages the hub's stream has carried as `added`. */
  added = new AddedSet(0);
  /** Each listener with the user it delivers to. */
  private readonly listeners = new Map<HubListener, string>();
  /** Signals and heals run one at a time, in order, and only once `start` knows the position. */
  private chain: Promise<void>;
  private started!: () => void;
  private unsubscribe?: Promise<(() => Promise<void>) | undefined>;
  /** Changes whose signals came before those of earlier numbers, by change number. */
  private readonly early = new Map<number, MessageWire>();
  private reorderTimer?: NodeJS.Timeout;
  private stopped = false;
  /** After a pub/sub reconnect, until the registry's check has told the removals it missed: changes are held (`hold`). */
  private held = false;
  /**
   * Per user, the last membership signal passed on here (at most MAX_MEMBERSHIPS_NOTED users, the
   * least recently signalled forgotten): whether it was their removal — a `setTyping(true)` that
   * raced it is not passed on after it — and the newest change number passed — two instances may
   * publish two changes of one member in either order, and an older one that comes later is not
   * passed on (`stale`), so the last `MemberChanged` a subscriber gets is the member's role now.
   */
  private readonly lastMembership = new Map<string, { removed: boolean; change?: number }>();

  constructor(
    readonly roomId: string,
    private readonly store: RoomStore,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    /** Told how many changes a fill read from the database (pub/sub had lost or not yet brought them). */
    private readonly onFill: (count: number) => void = () => undefined,
    /** The instance's shared replay reads (`HubRegistry` passes its own to every hub). */
    private readonly windows = new ReplayWindows(),
    /** Run by a heal between its reads and its fan-out (`SessionService.settleRevocations`). */
    private readonly settleRevocations: () => Promise<void> = NOTHING_TO_SETTLE,
  ) {
    this.chain = new Promise((resolve) => (this.started = resolve));
  }

  /**
   * Subscribes, then reads the room's head (in that order, so nothing falls between). A subscribe
   * stuck behind a dead Redis must not hold the room hostage: after SUBSCRIBE_WAIT_MS the hub
   * starts from the head as it was when it was asked for (read meanwhile), so what was sent while
   * it waited is not taken for history, and the timer heals it in.
   */
  async start(): Promise<void> {
    const subscribing = this.pubsub.subscribe(roomTopic(this.roomId), (s) => this.take(s));
    this.unsubscribe = subscribing.catch((err) => {
      this.log.warn({ err: (err as Error).message, roomId: this.roomId }, 'room subscription failed; healing by timer');
      return undefined;
    });
    const headWhenAsked = this.store.head(this.roomId);
    headWhenAsked.catch(() => undefined); // read again below when the subscribe settles in time
    const settled = await within(this.unsubscribe.then(() => true), SUBSCRIBE_WAIT_MS, false);
    if (!settled) void this.unsubscribe.then(() => this.heal());
    const head = settled ? await this.store.head(this.roomId) : await headWhenAsked;
    this.position = head.lastChange;
    this.lastSeq = head.lastSeq;
    this.added = new AddedSet(head.lastSeq);
    this.started(); // signals that arrived meanwhile are handled now, against the right position
  }

  /**
   * A signal of this room, from its topic or, for a new message, from the activity topic (which
   * carries each new message once: `HubRegistry`); handled in turn with the others.
   */
  take(signal: RoomSignal): void {
    this.enqueue(() => this.handle(signal));
  }

  /**
   * A feed's replay read of this room: the messages by seq (`messages`) or changes (`changes`)
   * after `after` up to at most `upto` (at most the hub's `lastSeq` or `position`: all committed),
   * shared with the room's other feeds replaying the same window (`ReplayWindows`).
   */
  replay(order: ReplayOrder, after: number, upto: number): Promise<ReplayRead> {
    const { store, roomId } = this;
    return this.windows.read(roomId, order, after, upto, {
      position: () => this.position,
      read: (from, to) => (order === 'messages' ? store.range(roomId, from, to, REPLAY_WINDOW) : store.changes(roomId, from, to, REPLAY_WINDOW)),
      changedSince: (change, seqs) => store.changedSince(roomId, change, seqs),
    });
  }

  /** Adds a listener for `userId`; from this call on it receives every fan-out, starting after `position`. */
  add(listener: HubListener, userId: string): void {
    this.listeners.set(listener, userId);
  }

  remove(listener: HubListener): void {
    this.listeners.delete(listener);
  }

  get size(): number {
    return this.listeners.size;
  }

  /**
   * Re-signals the removal of listeners' users who are no longer members, then reads and fans out
   * whatever the database has beyond `position` (after a reconnect, or by timer). The head is read
   * before the members and the tail only up to it, so every change the tail holds was committed
   * before the members were read: one sent after a removal whose signal was lost never reaches the
   * removed member (docs/guarantees.md, guarantee 6), nor a socket of a session ended before the
   * sessions were read after it (`settleRevocations`).
   */
  heal(): void {
    this.enqueue(async () => {
      const head = await this.store.head(this.roomId);
      const users = this.users();
      const members = await this.store.members(this.roomId, users);
      await this.settleRevocations();
      await this.settle(head.lastChange, users, (userId) => members.has(userId));
    });
  }

  /** The users its listeners deliver to. */
  users(): string[] {
    return [...new Set(this.listeners.values())];
  }

  /** From a check of every hub at once (`HubRegistry`), what `heal` does for one: `settle`. */
  catchUp(lastChange: number, users: string[], isMember: (userId: string) => boolean): void {
    this.enqueue(() => this.settle(lastChange, users, isMember));
  }

  /**
   * Re-signals the removal of each of `users` (its listeners' users) who is no longer a member,
   * then reads and fans out the tail up to `lastChange` (read before the members) when the hub is
   * behind.
   */
  private async settle(lastChange: number, users: string[], isMember: (userId: string) => boolean): Promise<void> {
    this.revoke(users.filter((userId) => !isMember(userId)));
    if (lastChange > this.position) await this.fill(lastChange);
  }

  /**
   * Holds the changes signalled from now on (pub/sub has just reconnected: a removal's signal may
   * have been lost meanwhile) until `release`, which the registry calls once its check has told
   * the removals it found (`catchUp`): the changes sent after a lost removal must not reach the
   * removed member ahead of it. Ephemeral signals pass.
   */
  hold(): void {
    this.held = true;
  }

  /** Ends a `hold`: the changes held go out in order, and what is missing between them is read. */
  release(): void {
    if (!this.held) return;
    this.enqueue(async () => {
      if (!this.held) return;
      this.held = false;
      if (this.early.size > 0) await this.fill(Math.max(...this.early.keys()));
    });
  }

  /** Tells the listeners that each of `users` was removed (a feed of theirs ends on it). */
  private revoke(users: string[]): void {
    for (const userId of users) {
      this.noteMembership(userId, true);
      this.fanOut({ kind: 'membership', userId, role: null });
    }
  }

  /**
   * Notes a membership signal passed on: the user left or was removed (`removed`), or is a member
   * (again, or in another role); `change`, its number (none from a timed check: the newest passed stays).
   */
  private noteMembership(userId: string, removed: boolean, change?: number): void {
    const last = this.lastMembership.get(userId);
    this.lastMembership.delete(userId); // to the end: the most recent
    this.lastMembership.set(userId, { removed, change: change ?? last?.change });
    if (this.lastMembership.size > MAX_MEMBERSHIPS_NOTED) this.lastMembership.delete(this.lastMembership.keys().next().value!);
  }

  /** Whether a membership change of the user as new as `change` or newer was passed on here (a timed check's finding, without a number, never is stale). */
  private stale(userId: string, change: number | undefined): boolean {
    const newest = this.lastMembership.get(userId)?.change;
    return change !== undefined && newest !== undefined && change <= newest;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reorderTimer);
    this.listeners.clear();
    unsubscribeWhenSettled(this.unsubscribe);
  }

  private enqueue(task: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        await task();
      } catch (err) {
        // The database is unreachable: keep `position`; the next signal or heal retries.
        this.log.warn({ err: (err as Error).message, roomId: this.roomId }, 'room hub could not read the database');
      }
    });
  }

  private async handle(signal: RoomSignal): Promise<void> {
    if (signal.kind === 'membership') {
      if (this.stale(signal.userId, signal.change)) return;
      this.noteMembership(signal.userId, signal.role === null, signal.change);
    } else if (signal.kind === 'typing' && signal.typing && this.lastMembership.get(signal.userId)?.removed) return; // begun before they left, told after
    if (signal.kind !== 'change') return this.fanOut(signal);
    const change = signal.message.changeSeq;
    if (change <= this.position) return; // duplicate, or already read from the database
    if (this.held) {
      this.early.set(change, signal.message); // goes out at `release`
      return;
    }
    if (change > this.position + 1) {
      // Signals of different writers may cross on the way: wait a moment for the ones before it,
      // since the database keeps only each message's latest state, not the states in between.
      this.early.set(change, signal.message);
      this.reorderTimer ??= setTimeout(() => {
        this.reorderTimer = undefined;
        this.enqueue(async () => {
          if (!this.held) await this.fill(Math.max(this.position, ...this.early.keys()));
        });
      }, REORDER_MS);
      return;
    }
    this.emit(signal.message);
    await this.fill(Math.max(this.position, ...this.early.keys()), { waitForSignals: true });
  }

  /**
   * Fans out every change after `position` up to `upto`: the ones whose signals came early as
   * they came, the others from the database (numbers with no row there were superseded by later
   * changes). `position` ends at `upto`. With `waitForSignals` it stops at the first number whose
   * signal has not come yet (the reorder timer fills it).
   */
  private async fill(upto: number, { waitForSignals = false } = {}): Promise<void> {
    while (this.position < upto && !this.stopped) {
      const next = this.early.get(this.position + 1);
      if (next) {
        this.early.delete(next.changeSeq);
        this.emit(next);
        continue;
      }
      if (waitForSignals) break;
      const before = Math.min(upto + 1, ...[...this.early.keys()].filter((c) => c > this.position));
      const batch = await this.store.changes(this.roomId, this.position, before - 1, FILL_BATCH);
      if (batch.length > 0) this.onFill(batch.length);
      for (const message of batch) this.emit(toWire(message));
      if (batch.length < FILL_BATCH) this.position = before - 1; // the numbers in between were superseded
    }
    for (const change of this.early.keys()) if (change <= this.position) this.early.delete(change);
    if (this.early.size === 0) {
      clearTimeout(this.reorderTimer);
      this.reorderTimer = undefined;
    }
  }

  private emit(message: MessageWire): void {
    this.position = message.changeSeq;
    this.lastSeq = Math.max(this.lastSeq, message.seq);
    const kind = this.added.mark(message.seq) ? 'updated' : 'added';
    this.fanOut({ kind, change: message.changeSeq, added: this.added.snapshot(), message });
  }

  private fanOut(event: HubEvent): void {
    // No copy of the listeners per event: a Map's iteration skips one removed meanwhile.
    for (const listener of this.listeners.keys()) {
      try {
        listener(event);
      } catch (err) {
        // A listener's fault must not cost the ones after it this event: they would miss it for good.
        this.log.error({ err, roomId: this.roomId }, 'a room hub listener failed');
      }
    }
  }
}

/** Rooms whose heads (and listeners' memberships) one read of the timed check covers. */
const CHECK_BATCH = 1000;

/**
 * The hubs of this instance, one per room with at least one subscriber. Every `healIntervalMs`, and
 * when pub/sub reconnects, it checks all of them at once — the rooms' heads in one read, the listeners' memberships in
 * another, per 1,000 rooms — and has a hub that is behind read its tail, and one with a listener
 * who is no longer a member signal the removal: a lost signal is healed within the interval, at a
 * cost that does not grow with the number of rooms times the rate.
 */
export class HubRegistry {
  private readonly hubs = new Map<string, { hub: RoomHub; refs: number; ready: Promise<void>; started: boolean }>();
  private readonly offReconnect: () => void;
  private readonly offActivity: Promise<(() => Promise<void>) | undefined>;
  private readonly timer: NodeJS.Timeout;
  private checking = false;
  /** The replay reads every hub's feeds share. */
  private readonly windows = new ReplayWindows();
  /** A check was asked for while one ran (a reconnect during the timed one). */
  private again = false;
  /** Fresh reads of (room, user) memberships, one for every feed that starts in the same turn of the event loop. */
  private readonly membership = new DataLoader<[roomId: string, userId: string], boolean>(
    async (pairs) => {
      const found = await this.store.memberships([...pairs]);
      return pairs.map(([roomId, userId]) => found.has(membershipKey(roomId, userId)));
    },
    { cache: false, maxBatchSize: CHECK_BATCH, batchScheduleFn: (read) => setImmediate(read) },
  );

  /** Fresh reads of rooms' streaming replies, one for every feed that starts in the same turn of the event loop. */
  private readonly streamingReplies = new DataLoader<string, MessageModel[]>(
    async (roomIds) => {
      const replies = await this.store.streaming([...roomIds]);
      return roomIds.map((roomId) => replies.filter((reply) => reply.roomId === roomId));
    },
    { cache: false, maxBatchSize: CHECK_BATCH, batchScheduleFn: (read) => setImmediate(read) },
  );

  constructor(
    private readonly store: RoomStore,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    healIntervalMs: number,
    private readonly onFill?: (count: number) => void,
    /** Run by each check between its reads and the hubs' fan-out (`SessionService.settleRevocations`). */
    private readonly settleRevocations: () => Promise<void> = NOTHING_TO_SETTLE,
  ) {
    this.offReconnect = pubsub.onReconnect(() => {
      // Signals were lost while pub/sub was down, a removal's among them perhaps: no change goes out
      // before the check has read the members and told the removals (docs/guarantees.md, guarantee 6).
      for (const { hub, started } of this.hubs.values()) if (started) hub.hold();
      this.healAll();
    });
    // A new message is published once, on the topic every instance listens to (`MessageStore.publish`):
    // its room's hub here, if any, takes it from there. Later changes come on the room's own topic.
    this.offActivity = pubsub
      .subscribe(activityTopic, ({ message }) => this.hubs.get(message.roomId)?.hub.take({ kind: 'change', message }))
      .catch((err) => {
        log.warn({ err: (err as Error).message }, 'activity subscription failed; hubs heal by timer');
        return undefined;
      });
    this.timer = setInterval(() => void this.check(), healIntervalMs);
    this.timer.unref();
  }

  /** The timed check of every started hub (see the class). A failed read is retried at the next interval. */
  async check(): Promise<void> {
    if (this.checking) {
      this.again = true; // what changed since the running check began is read right after it
      return;
    }
    this.checking = true;
    this.again = false;
    try {
      const started = [...this.hubs.values()].filter((entry) => entry.started).map((entry) => entry.hub);
      for (let i = 0; i < started.length; i += CHECK_BATCH) {
        const part = started.slice(i, i + CHECK_BATCH);
        const heads = await this.store.heads(part.map((hub) => hub.roomId));
        const users = new Map(part.map((hub) => [hub, hub.users()]));
        const members = await this.store.memberships(part.flatMap((hub) => users.get(hub)!.map((userId): [string, string] => [hub.roomId, userId])));
        await this.settleRevocations(); // what the heads hold reaches no socket of a session ended before
        for (const hub of part) hub.catchUp(heads.get(hub.roomId)?.lastChange ?? 0, users.get(hub)!, (userId) => members.has(membershipKey(hub.roomId, userId)));
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'room hubs could not check the database; retrying at the next interval');
    } finally {
      this.checking = false;
      // Hubs held since a reconnect go on once a check that began after it has told the removals
      // (behind what the check queued on each); one the check did not reach (the database failed
      // it) holds nothing back any longer either: its changes go out as they come, gaps read as usual.
      if (this.again) void this.check();
      else for (const { hub, started } of this.hubs.values()) if (started) hub.release();
    }
  }

  /** The room's hub, started; call `release` when done. Rejects when the hub cannot start. */
  async acquire(roomId: string): Promise<{ hub: RoomHub; release: () => void }> {
    let entry = this.hubs.get(roomId);
    if (!entry) {
      const hub = new RoomHub(roomId, this.store, this.pubsub, this.log, this.onFill, this.windows, this.settleRevocations);
      const made = { hub, refs: 0, ready: hub.start(), started: false };
      made.ready.then(() => (made.started = true), () => undefined);
      entry = made;
      this.hubs.set(roomId, entry);
    }
    entry.refs++;
    const current = entry;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (--current.refs === 0 && this.hubs.get(roomId) === current) {
        this.hubs.delete(roomId);
        void current.hub.stop();
      }
    };
    try {
      await current.ready;
    } catch (err) {
      release();
      throw err;
    }
    return { hub: current.hub, release };
  }

  /** The room's replies still streaming, read after this call, with those of the other feeds starting meanwhile (in any room). */
  streaming(roomId: string): Promise<MessageModel[]> {
    return this.streamingReplies.load(roomId);
  }

  /** Whether the user is a member of the room now: read from the database, with the other feeds starting meanwhile. */
  isMember(roomId: string, userId: string): Promise<boolean> {
    return this.membership.load([roomId, userId]);
  }

  /** Every hub reads what it may have missed (signals are lost while pub/sub is down): the timed check, now. */
  healAll(): void {
    void this.check();
  }

  get size(): number {
    return this.hubs.size;
  }

  /** How many feeds listen to the room on this instance (0 without a hub). */
  listeners(roomId: string): number {
    return this.hubs.get(roomId)?.hub.size ?? 0;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.offReconnect();
    unsubscribeWhenSettled(this.offActivity);
    const entries = [...this.hubs.values()];
    this.hubs.clear();
    await Promise.all(entries.map(({ hub }) => hub.stop()));
  }
}
