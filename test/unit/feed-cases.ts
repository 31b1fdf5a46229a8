import { AddedSet } from '../../src/chat/added-set';
import { MessageFeed, type FeedEvent, type FeedStart } from '../../src/chat/message-feed';
import type { PushSink } from '../../src/push-stream';
import type { MessageModel } from '../../src/chat/models';
import { RoomHub, type HubEvent, type HubListener } from '../../src/chat/room-hub';
import type { Logger } from '../../src/logger';
import { MemoryPubSub } from '../../src/pubsub/memory';
import { roomTopic, type RoomSignal } from '../../src/pubsub/types';
import { toWire } from '../../src/pubsub/wire';
import { FakeStore, silentLogger, waitFor, type Method } from '../support/fakes';

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

const ROOM = 'room-a';
/** The feed retries a failed read after this long (message-feed.ts RETRY_MS). */
const RETRY_MS = 1000;

/** messageAdded: new messages by seq, after `seq`. */
const afterSeq = (seq: number): FeedStart => ({ order: 'messages', after: { seq } });
/** roomEvents: every change after `change`, the client having every message up to `addedUpToSeq`. */
const afterChange = (change: number, addedUpToSeq = change): FeedStart => ({ order: 'changes', after: { change, added: new AddedSet(addedUpToSeq) } });
const MESSAGES_FROM_NOW: FeedStart = { order: 'messages' };
const CHANGES_FROM_NOW: FeedStart = { order: 'changes' };

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A feed event as a short label: the seq of an added message, `updated <seq>`, or the kind of anything else. */
function label(event: FeedEvent): number | string {
  if (event.kind === 'added') return event.message.seq;
  return event.kind === 'updated' ? `updated ${event.message.seq}` : event.kind;
}

/** A feed event with its change number: `added 4@4`, `updated 1@6`, or the kind of anything else. */
function tag(event: FeedEvent): string {
  return event.kind === 'added' || event.kind === 'updated' ? `${event.kind} ${event.message.seq}@${event.change}` : event.kind;
}

/** Numbers as runs, `1-450, 1451-1950`: a gap, a duplicate or a disorder reads at a glance. */
function runs(numbers: (number | string)[]): string {
  const out: string[] = [];
  let from: number | string | undefined;
  let to: number | string | undefined;
  for (const n of numbers) {
    if (typeof n === 'number' && typeof to === 'number' && n === to + 1) {
      to = n;
      continue;
    }
    if (from !== undefined) out.push(from === to ? `${from}` : `${from}-${to}`);
    from = to = n;
  }
  if (from !== undefined) out.push(from === to ? `${from}` : `${from}-${to}`);
  return out.join(', ');
}

/**
 * A feed as a client reads it, one `next()` at a time. The feed attaches to its hub on the first
 * `next()`; `attach()` makes that call and leaves it pending, as a client waiting for events does.
 */
class Reader {
  private pending?: Promise<IteratorResult<FeedEvent>>;

  constructor(
    readonly feed: AsyncIterableIterator<FeedEvent>,
    private readonly hub: RoomHub,
  ) {}

  /** Asks for the first event and waits until the feed listens to its hub. */
  async attach(): Promise<void> {
    const before = this.hub.size;
    this.pending = this.feed.next();
    await waitFor(() => this.hub.size > before, 'the feed to attach to its hub');
  }

  /** The next event, failing the test when none comes within `ms` (a bound, not a sleep). */
  async next(ms = 2000): Promise<IteratorResult<FeedEvent>> {
    const result = this.pending ?? this.feed.next();
    this.pending = undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        result,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no feed event within ${ms} ms`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The next `count` events (fails if the feed ends or stalls first). */
  async events(count: number, ms = 2000): Promise<FeedEvent[]> {
    const events: FeedEvent[] = [];
    while (events.length < count) {
      const result = await this.next(ms);
      if (result.done) throw new Error(`feed ended after ${events.length} of ${count} events: ${events.map(tag).join(', ')}`);
      events.push(result.value);
    }
    return events;
  }

  /** The labels of the next `count` events. */
  async take(count: number, ms = 2000): Promise<(number | string)[]> {
    return (await this.events(count, ms)).map(label);
  }

  /** The tags (with change numbers) of the next `count` events. */
  async tags(count: number, ms = 2000): Promise<string[]> {
    return (await this.events(count, ms)).map(tag);
  }

  /** Every remaining label until the feed ends. */
  async drain(ms = 2000): Promise<(number | string)[]> {
    const labels: (number | string)[] = [];
    for (;;) {
      const result = await this.next(ms);
      if (result.done) return labels;
      labels.push(label(result.value));
    }
  }

  /** Labels until one satisfies `last`, or — when the feed stalls or ends first — what came until then. */
  async until(last: (label: number | string) => boolean, ms = 2000): Promise<(number | string)[]> {
    const labels: (number | string)[] = [];
    for (;;) {
      const result = await this.next(ms).catch(() => undefined);
      if (!result || result.done) return labels;
      labels.push(label(result.value));
      if (last(labels[labels.length - 1])) return labels;
    }
  }
}

/** Resolves to what `promise` gave, or to `timeout` when it gives nothing within `ms` (a bound, not a sleep). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);
}

/** How a test reads a feed: through its async iterator, or through its push interface as a socket takes it. */
export type FeedMode = 'iterated' | 'pushed';

/** Unread events at which the pushed reader asks the feed to wait, as a socket at its high-water mark does. */
const PUSHED_HIGH_WATER = 8;

/**
 * The feed read through its push interface (`startPush`), as `subscribeShared` reads it on a
 * WebSocket: live events arrive synchronously from the hub's fan-out while fewer than
 * PUSHED_HIGH_WATER are unread; past that the sink asks the feed to wait, which buffers and
 * catches up through `replay` — so the live path, its seam and its way back are all exercised.
 * Nothing is attached until the first `next()`.
 */
function pushed(feed: MessageFeed): AsyncIterableIterator<FeedEvent> {
  const unread: FeedEvent[] = [];
  const done = { done: true, value: undefined } as const;
  let stop: (() => void) | undefined;
  let closed = false;
  let failure: unknown;
  let wakeReader: (() => void) | undefined;
  let roomWaiters: (() => void)[] = [];
  let markEnded!: () => void;
  const ended = new Promise<void>((resolve) => (markEnded = resolve));
  let hasEnded = false;
  const makeRoom = () => roomWaiters.splice(0).forEach((wake) => wake());
  const room = async () => {
    while (unread.length >= PUSHED_HIGH_WATER && !closed && !hasEnded) await new Promise<void>((resolve) => roomWaiters.push(resolve));
  };
  const take = (event: FeedEvent) => {
    unread.push(event);
    wakeReader?.();
  };
  const sink: PushSink<FeedEvent> = {
    replay: async (event) => {
      take(event);
      await room();
    },
    live: (event) => {
      take(event);
      return unread.length >= PUSHED_HIGH_WATER ? room() : undefined;
    },
    end: (error) => {
      hasEnded = true;
      failure = error;
      markEnded();
      wakeReader?.();
      makeRoom();
    },
  };
  const close = async () => {
    closed = true;
    unread.length = 0;
    makeRoom();
    wakeReader?.();
    if (!stop) return;
    stop();
    await ended;
  };
  const iterator: AsyncIterableIterator<FeedEvent> = {
    [Symbol.asyncIterator]: () => iterator,
    async next() {
      if (!stop && !closed) stop = feed.startPush(sink);
      for (;;) {
        if (closed) return done;
        if (unread.length > 0) {
          const value = unread.shift()!;
          makeRoom();
          return { done: false, value };
        }
        if (hasEnded) {
          if (failure) throw failure;
          return done;
        }
        await new Promise<void>((resolve) => (wakeReader = resolve));
      }
    },
    return: async () => {
      await close();
      return done;
    },
    throw: async (err: unknown) => {
      await close();
      throw err;
    },
  };
  return iterator;
}

/** Every case below, with feeds read the way `mode` says. */
export function feedCases(mode: FeedMode): void {
// ---------------------------------------------------------------------------------------------
// Per-test world: a real RoomHub on the real in-memory bus over the fake store
// ---------------------------------------------------------------------------------------------

const hubs: RoomHub[] = [];
const feeds: AsyncIterableIterator<FeedEvent>[] = [];

afterEach(async () => {
  await Promise.all(feeds.splice(0).map((f) => f.return?.()));
  await Promise.all(hubs.splice(0).map((h) => h.stop()));
});

/** A started hub over a room holding `messages` messages, at changes 1..messages. */
async function world(messages = 0) {
  const store = new FakeStore();
  store.append(ROOM, messages);
  const pubsub = new MemoryPubSub();
  const log = silentLogger();
  const hub = new RoomHub(ROOM, store.asStore(), pubsub, log as unknown as Logger);
  hubs.push(hub);
  await hub.start();

  const signal = (s: RoomSignal) => pubsub.publish(roomTopic(ROOM), s);
  const change = (m: MessageModel) => signal({ kind: 'change', message: toWire(m) });
  const untilFannedOut = async () => {
    const { lastChange } = store.headOf(ROOM);
    await waitFor(() => hub.position >= lastChange, `the hub to fan out change ${lastChange}`);
  };
  /** Commits `count` messages and publishes each, then waits until the hub fanned them out. */
  const send = async (count = 1): Promise<MessageModel[]> => {
    const messages = store.append(ROOM, count);
    for (const m of messages) await change(m);
    await untilFannedOut();
    return messages;
  };
  /** Commits an edit of message `seq` (or the change `patch` says) and publishes it, then waits until the hub fanned it out. */
  const edit = async (seq: number, patch?: Partial<MessageModel>): Promise<MessageModel> => {
    const message = store.change(ROOM, seq, patch);
    await change(message);
    await untilFannedOut();
    return message;
  };
  /** Publishes a room signal and waits until the hub fanned it out. */
  const publish = async (s: RoomSignal) => {
    let seen = false;
    const probe: HubListener = (x: HubEvent) => {
      if (x === s) seen = true;
    };
    hub.add(probe, '__probe__');
    await signal(s);
    await waitFor(() => seen, `the hub to fan out ${s.kind}`);
    hub.remove(probe);
  };
  const removeViewer = (userId = 'alice') => publish({ kind: 'membership', userId, role: null });
  /** The store reads of `method` made by feeds (the hub reads in batches of 500, feeds of 200). */
  const feedReads = (method: Method) => store.callsOf(method).filter((args) => args[3] === 200);

  /** A feed for alice from `start`; nothing is attached until it is read (or `attach()`ed). */
  const open = (
    start: FeedStart,
    acquireHub?: () => Promise<{ hub: RoomHub; release: () => void }>,
    isMember = async () => (await store.asStore().members(ROOM, ['alice'])).has('alice'),
  ) => {
    const release = jest.fn();
    const acquire = jest.fn(acquireHub ?? (async () => ({ hub, release })));
    const streaming = () => store.asStore().streaming([ROOM]);
    const made = new MessageFeed({ log: log as unknown as Logger, roomId: ROOM, viewerId: 'alice', start, acquire, isMember, streaming });
    const feed = mode === 'iterated' ? made.events() : pushed(made);
    feeds.push(feed);
    return { feed, reader: new Reader(feed, hub), acquire, release };
  };
  return { store, hub, log, signal, change, send, edit, publish, removeViewer, open, feedReads };
}

// ---------------------------------------------------------------------------------------------
// Replay, then live — the same seam in both orders (no edits here, so change = seq)
// ---------------------------------------------------------------------------------------------

describe.each([
  { order: 'messages', after: afterSeq, fromNow: MESSAGES_FROM_NOW, reads: 'range' as const },
  { order: 'changes', after: (n: number) => afterChange(n), fromNow: CHANGES_FROM_NOW, reads: 'changes' as const },
])('MessageFeed ($order order): replay and live', ({ after, fromNow, reads }) => {
  it('replays what follows the cursor, then goes live, without a gap or a duplicate at the seam', async () => {
    const { send, open, feedReads } = await world(5);
    const { reader } = open(after(2));
    expect(await reader.take(3)).toEqual([3, 4, 5]);
    await send(2);
    expect(await reader.take(2)).toEqual([6, 7]);
    expect(feedReads(reads)).toEqual([[ROOM, 0, 5, 200]]); // the window the cursor falls in, up to the hub's position
  });

  it('delivers live messages that arrived during the replay read after it, each once', async () => {
    const { store, send, open } = await world(5);
    const release = store.hold(reads);
    const { reader } = open(after(0));
    await reader.attach();
    await waitFor(() => store.callsOf(reads).length === 1, 'the replay read');
    await send(3); // 6, 7, 8 reach the feed's buffer while the replay read is in flight
    release();
    expect(await reader.take(8)).toEqual(range(1, 8));
    await send();
    expect(await reader.take(1)).toEqual([9]);
  });

  it('delivers live messages buffered while the reader is slow after the replay, without duplicates', async () => {
    const { send, open } = await world(3);
    const { reader } = open(after(1));
    expect(await reader.take(1)).toEqual([2]);
    await send(2); // 4, 5: buffered while 3 still waits for the reader
    expect(await reader.take(3)).toEqual([3, 4, 5]);
  });

  it('reads the store before the first live message when a replay read is in flight, with no gap', async () => {
    const { store, send, open, feedReads } = await world(3);
    const release = store.hold(reads);
    const { reader } = open(after(0));
    await reader.attach();
    await send(); // 4 is in the buffer; 1..3 are only in the store
    release();
    expect(await reader.take(4)).toEqual([1, 2, 3, 4]);
    expect(feedReads(reads)).toEqual([[ROOM, 0, 3, 200]]);
  });

  it('replays more than one window in order', async () => {
    const { open, feedReads } = await world(450);
    const { reader } = open(after(10));
    expect(runs(await reader.take(440))).toBe('11-450');
    expect(feedReads(reads)).toEqual([
      [ROOM, 0, 200, 200],
      [ROOM, 200, 400, 200],
      [ROOM, 400, 450, 200],
    ]);
  });

  it('starts at the hub\'s position without a cursor, replaying nothing', async () => {
    const { send, open, feedReads } = await world(5);
    const { reader } = open(fromNow);
    await reader.attach();
    await send();
    expect(await reader.take(1)).toEqual([6]);
    expect(feedReads(reads)).toEqual([]);
  });

  it('replays nothing for a cursor at the hub\'s position', async () => {
    const { send, open, feedReads } = await world(5);
    const { reader } = open(after(5));
    await reader.attach();
    await send();
    expect(await reader.take(1)).toEqual([6]);
    expect(feedReads(reads)).toEqual([]);
  });

  it('gives a reader too slow for its buffer (over 1,000 live messages unread) every message once, in order, from the store', async () => {
    const { send, open, feedReads } = await world(0);
    const { reader, release } = open(after(0));
    await reader.attach();
    await send(1500);
    expect(runs(await reader.take(1500))).toBe('1-1500');
    expect(feedReads(reads).length).toBeGreaterThan(0); // the dropped buffer was re-read from the store
    await send();
    expect(await reader.take(1)).toEqual([1501]);
    expect(release).not.toHaveBeenCalled();
  });

  it('gives a reader that falls behind again mid-stream every message once, in order', async () => {
    const { send, open } = await world(0);
    const { reader } = open(fromNow);
    await reader.attach();
    await send(20);
    expect(await reader.take(10)).toEqual(range(1, 10));
    await send(2100); // overflows the buffer twice over while 11..20 are still unread
    expect(runs(await reader.take(2110))).toBe('11-2120');
  });
});

// ---------------------------------------------------------------------------------------------
// Replay reads shared by the feeds of a room (a reconnect storm)
// ---------------------------------------------------------------------------------------------

describe.each([
  { order: 'messages', after: afterSeq, reads: 'range' as const },
  { order: 'changes', after: (n: number) => afterChange(n), reads: 'changes' as const },
])('MessageFeed ($order order): replay reads shared by the feeds of a room', ({ order, after, reads }) => {
  it('reads each window once for feeds resuming together from one cursor or a few messages apart, each getting every message once, in order', async () => {
    const { open, feedReads } = await world(450);
    const readers = [10, 10, 13].map((cursor) => open(after(cursor)).reader);
    const taken = await Promise.all(readers.map((reader, i) => reader.take(i === 2 ? 437 : 440)));
    expect(taken.map(runs)).toEqual(['11-450', '11-450', '14-450']);
    expect(feedReads(reads)).toEqual([
      [ROOM, 0, 200, 200],
      [ROOM, 200, 400, 200],
      [ROOM, 400, 450, 200],
    ]);
  });

  it('gives feeds that replay a message with the same view of it the same event object, so their subscriptions execute it once', async () => {
    const { open } = await world(40);
    const [a, b] = [open(after(0)).reader, open(after(0)).reader];
    const [fromA, fromB] = await Promise.all([a.events(40), b.events(40)]);
    expect(fromA.every((event, i) => event === fromB[i])).toBe(true);
  });

  it('reads a kept window again once a message in it has changed, and only that window', async () => {
    const { store, open, edit, feedReads } = await world(450);
    expect(runs(await open(after(0)).reader.take(450))).toBe('1-450');
    await edit(3); // change 451
    const later = (await open(after(0)).reader.tags(450)).filter((t) => / 3@/.test(t));
    // By seq the message comes in its place, in its current state; by change, once, at its latest change.
    expect(later).toEqual(['added 3@451']);
    // The later feed's windows were checked; the one holding 3 was read again (by change, the last one too: it now reaches 451).
    expect(feedReads(reads).map(([, from]) => from)).toEqual(order === 'messages' ? [0, 200, 400, 0] : [0, 200, 400, 0, 400]);
    expect(store.callsOf('changedSince').length).toBeGreaterThan(0);
  });

  it('gives a feed that resumes after a change committed the message in its current state though the hub has not heard of it yet', async () => {
    const { store, open } = await world(50);
    expect(runs(await open(after(0)).reader.take(50))).toBe('1-50');
    store.change(ROOM, 7); // change 51, its signal not (yet) published
    const events = await open(after(0)).reader.events(order === 'messages' ? 50 : 49);
    const seven = events.find((e) => e.kind !== 'revoked' && 'message' in e && e.message.seq === 7);
    // By seq it comes edited; by change it is past the hub's position (50), so it is not replayed yet at all.
    if (order === 'messages') expect(seven && 'message' in seven && seven.message.body).toBe('message 7 (edited at change 51)');
    else expect(seven).toBeUndefined();
  });

  it('resumes inside a range of changes that all were superseded by later changes of one message', async () => {
    const { store, change, hub, open } = await world(1);
    let last = store.get(ROOM, 1);
    for (let i = 0; i < 450; i++) last = store.change(ROOM, 1); // changes 2..451, each superseding the one before
    await change(last);
    await waitFor(() => hub.position === 451, 'the hub to read the changes');
    // By change the resume lands in (200, 400], which no message holds any more; by seq nothing is superseded.
    const start = order === 'messages' ? after(0) : afterChange(251, 1);
    expect(await open(start).reader.tags(1)).toEqual([order === 'messages' ? 'added 1@451' : 'updated 1@451']);
  });

  it('reads a window again after a read of it failed, and the feeds waiting on it retry', async () => {
    const { store, log, open, feedReads } = await world(5);
    let failures = 0;
    store.failIf = (method) => method === reads && failures++ === 0;
    const readers = [open(after(0)).reader, open(after(2)).reader];
    expect((await Promise.all(readers.map((reader, i) => reader.take(i === 0 ? 5 : 3, RETRY_MS + 1500)))).map(runs)).toEqual(['1-5', '3-5']);
    expect(feedReads(reads)).toEqual([
      [ROOM, 0, 5, 200],
      [ROOM, 0, 5, 200],
    ]);
    expect(log.warn).toHaveBeenCalledTimes(2); // each feed waiting on the failed read retries
  });
});

// ---------------------------------------------------------------------------------------------
// Database outage
// ---------------------------------------------------------------------------------------------

describe('MessageFeed: database outage', () => {
  it('retries a catch-up read that failed and does not fail the subscription', async () => {
    const { store, log, open, feedReads } = await world(3);
    let failures = 0;
    store.failIf = (method) => method === 'changes' && failures++ === 0;
    const { reader, release } = open(afterChange(0));
    expect(await reader.take(3, RETRY_MS + 1500)).toEqual([1, 2, 3]);
    expect(feedReads('changes')).toEqual([
      [ROOM, 0, 3, 200],
      [ROOM, 0, 3, 200],
    ]);
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn).toHaveBeenCalledWith(
      { err: 'connect ECONNREFUSED (fake outage)', roomId: ROOM },
      'feed could not read the database; retrying',
    );
    expect(release).not.toHaveBeenCalled();
  });

  it('delivers a live message that arrived during the outage after the retried read, in order, once', async () => {
    const { store, log, send, open } = await world(3);
    store.down = true;
    const { reader } = open(afterSeq(0));
    await reader.attach();
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed read');
    store.down = false;
    await send(); // 4 waits in the buffer for the retry
    expect(await reader.take(4, RETRY_MS + 1500)).toEqual([1, 2, 3, 4]);
  });

  it('retries acquiring its hub while it cannot start, then replays and goes live', async () => {
    const { hub, log, send, open } = await world(2);
    const release = jest.fn();
    let attempts = 0;
    const { reader } = open(afterChange(0), async () => {
      if (attempts++ === 0) throw new Error('connect ECONNREFUSED (fake outage)');
      return { hub, release };
    });
    const first = reader.next(RETRY_MS + 1500);
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed acquire');
    expect(log.warn).toHaveBeenCalledWith(
      { err: 'connect ECONNREFUSED (fake outage)', roomId: ROOM },
      'feed could not reach its room hub; retrying',
    );
    await waitFor(() => hub.size === 1, 'the retried acquire', RETRY_MS + 1500);
    await send();
    expect([label((await first).value as FeedEvent), ...(await reader.take(2))]).toEqual([1, 2, 3]);
    expect(attempts).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------------

describe('MessageFeed: the viewer\'s removal', () => {
  it('yields revoked and nothing after it when the viewer is removed, then ends and releases its hub once', async () => {
    const { hub, send, removeViewer, open } = await world(2);
    const { reader, release } = open(CHANGES_FROM_NOW);
    await reader.attach();
    await removeViewer();
    await send(2); // after the removal: must not reach the removed viewer
    expect(await reader.drain()).toEqual(['revoked']);
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
    expect(await reader.next()).toEqual({ done: true, value: undefined });
  });

  it('drops the messages still waiting in the buffer when the viewer is removed', async () => {
    const { send, removeViewer, open } = await world(2);
    const { reader } = open(afterSeq(1));
    expect(await reader.take(1)).toEqual([2]);
    await send(2); // 3, 4 wait in the feed's buffer (iterated) or were written to the socket before the removal (pushed)
    await removeViewer();
    expect(await reader.drain()).toEqual(mode === 'iterated' ? ['revoked'] : [3, 4, 'revoked']);
  });

  it('stops a catch-up in the middle when the viewer is removed, yielding revoked and nothing after', async () => {
    const { hub, removeViewer, open, feedReads } = await world(450);
    const { reader, release } = open(afterChange(0));
    expect(await reader.take(3)).toEqual([1, 2, 3]);
    await removeViewer();
    // Pushed, the replay had written 4 to the socket before the removal; nothing comes after it.
    expect(await reader.drain()).toEqual(mode === 'iterated' ? ['revoked'] : [4, 'revoked']);
    expect(feedReads('changes')).toHaveLength(1);
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });

  it('stops a gap read for a live message when the viewer is removed, without delivering that message', async () => {
    const { store, change, removeViewer, open } = await world(3);
    const { reader } = open(afterSeq(3));
    await reader.attach();
    // Seq 4's insert is superseded before the hub reads it, so the hub carries 5 first and the
    // messages feed reads 4 by seq before it.
    store.append(ROOM, 1); // change 4: seq 4, its signal lost
    const [m5] = store.append(ROOM, 1); // change 5
    store.change(ROOM, 4); // change 6, not yet published
    const release = store.hold('range');
    await change(m5);
    await waitFor(() => store.callsOf('range').length === 1, 'the gap read');
    await removeViewer();
    release();
    expect(await reader.drain()).toEqual(['revoked']);
  });

  it('yields revoked as soon as a catch-up read in flight at the removal returns, without waiting a retry interval', async () => {
    const { store, removeViewer, open } = await world(5);
    const release = store.hold('changes');
    const { reader } = open(afterChange(0));
    await reader.attach();
    await waitFor(() => store.callsOf('changes').length === 1, 'the replay read');
    await removeViewer();
    release();
    const result = await within(reader.next(), RETRY_MS / 2);
    expect(result === 'timeout' ? `nothing within ${RETRY_MS / 2} ms` : label(result.value as FeedEvent)).toBe('revoked');
    expect(await reader.next(500)).toEqual({ done: true, value: undefined });
  });

  it('keeps the revocation final even when over 1,000 deltas follow it before the reader reads', async () => {
    const { publish, removeViewer, open } = await world(1);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    await removeViewer();
    for (let i = 0; i < 1001; i++) await publish({ kind: 'delta', messageId: `${ROOM}-m1`, index: i, text: 'x' });
    expect(await reader.drain(500)).toEqual(['revoked']);
  });

  it('yields revoked, and none of what follows, when the viewer was removed before it listened (the signal went unheard)', async () => {
    const { store, hub, send, removeViewer, open } = await world(2);
    const { reader, release } = open(afterSeq(2));
    store.removeMember(ROOM, 'alice');
    await removeViewer(); // after the subscription's access check, before the feed listens
    await send(2); // after the removal: must not reach the removed viewer
    expect(await reader.drain()).toEqual(['revoked']);
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });

  it('delivers nothing, replay or live, before its membership read answers', async () => {
    const { store, send, open } = await world(2);
    const answer = store.hold('members');
    const { reader } = open(afterSeq(0));
    const first = reader.next(5000); // attaches
    await waitFor(() => store.callsOf('members').length === 1, 'the membership read');
    await send(1);
    expect(await within(first, 300)).toBe('timeout'); // neither the replay (1, 2) nor the live 3
    store.removeMember(ROOM, 'alice'); // the read, held, now answers that the viewer is gone
    answer();
    expect(label((await first).value as FeedEvent)).toBe('revoked');
    expect(await reader.drain()).toEqual([]);
  });

  it('takes the events that come while its membership read is out, and so do the room\'s other feeds', async () => {
    const { log, send, open } = await world(2);
    let answer!: (member: boolean) => void;
    const starting = open(afterSeq(0), undefined, () => new Promise<boolean>((resolve) => (answer = resolve)));
    const first = starting.reader.next(5000); // listens first, then waits for its membership read
    await waitFor(() => answer !== undefined, 'the membership read');
    const live = open(MESSAGES_FROM_NOW);
    await live.reader.attach();
    await send(1);
    expect(await live.reader.take(1)).toEqual([3]);
    answer(true);
    expect([label((await first).value as FeedEvent), ...(await starting.reader.take(2))]).toEqual([1, 2, 3]);
    expect([log.warn, log.error].flatMap((f) => f.mock.calls)).toEqual([]);
  });

  it('retries a membership read the database failed, listening meanwhile, then goes on with what came', async () => {
    const { store, log, send, open } = await world(2);
    let failures = 1;
    store.failIf = (method) => method === 'members' && failures-- > 0;
    const { reader, acquire, release } = open(MESSAGES_FROM_NOW);
    await reader.attach();
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed membership read');
    await send(1); // while it waits to retry
    expect(await reader.take(1, RETRY_MS + 1500)).toEqual([3]);
    expect(acquire).toHaveBeenCalledTimes(1);
    expect(release).not.toHaveBeenCalled();
  });

  it('yields revoked when a heal finds the viewer is no longer a member (a lost removal signal)', async () => {
    const { store, hub, open } = await world(2);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    store.removeMember(ROOM, 'alice');
    hub.heal();
    expect(await reader.drain()).toEqual(['revoked']);
  });

  it('ends only for the viewer\'s own removal: other users\' membership changes pass in changes order and never in messages order', async () => {
    const { send, publish, removeViewer, open } = await world(2);
    const changes = open(CHANGES_FROM_NOW);
    const messages = open(MESSAGES_FROM_NOW);
    await changes.reader.attach();
    await messages.reader.attach();
    await removeViewer('bob');
    await publish({ kind: 'membership', userId: 'alice', role: 'ADMIN' });
    await publish({ kind: 'membership', userId: 'carol', role: 'MEMBER' });
    await send();
    expect(await changes.reader.events(4)).toEqual([
      { kind: 'membership', userId: 'bob', role: null },
      { kind: 'membership', userId: 'alice', role: 'ADMIN' },
      { kind: 'membership', userId: 'carol', role: 'MEMBER' },
      expect.objectContaining({ kind: 'added', change: 3 }),
    ]);
    expect(await messages.reader.take(1)).toEqual([3]);
    expect(changes.release).not.toHaveBeenCalled();
    expect(messages.release).not.toHaveBeenCalled();
  });

});

// ---------------------------------------------------------------------------------------------
// Deltas
// ---------------------------------------------------------------------------------------------

describe('MessageFeed: deltas', () => {
  it('passes assistant deltas in changes order, unchanged, and never in messages order', async () => {
    const { store, send, publish, open } = await world(1);
    const changes = open(CHANGES_FROM_NOW).reader;
    const messages = open(MESSAGES_FROM_NOW).reader;
    await changes.attach();
    await messages.attach();
    const delta: RoomSignal = { kind: 'delta', messageId: store.get(ROOM, 1).id, index: 0, text: 'Hel' };
    await publish(delta);
    await send();
    expect((await changes.next()).value).toBe(delta);
    expect(await changes.take(1)).toEqual([2]);
    expect(await messages.take(1)).toEqual([2]);
  });

  it('keeps deltas in their order among live changes', async () => {
    const { store, send, edit, publish, open } = await world(1);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    const id = store.get(ROOM, 1).id;
    await publish({ kind: 'delta', messageId: id, index: 0, text: 'a' });
    await send();
    await publish({ kind: 'delta', messageId: id, index: 1, text: 'b' });
    await edit(1);
    expect(await reader.take(4)).toEqual(['delta', 2, 'delta', 'updated 1']);
  });
});

describe('MessageFeed: replies still streaming', () => {
  /** A feed from now on (message 1 the reply), told the reply streaming and its first delta, live. */
  async function toldStreaming() {
    const w = await world(1);
    const { reader } = w.open(CHANGES_FROM_NOW);
    await reader.attach();
    const { id } = await w.edit(1, { status: 'STREAMING', body: '', deltaCount: 0 }); // the reply, told live
    w.store.saveStreaming(ROOM, 1, 'a', 1);
    await w.publish({ kind: 'delta', messageId: id, index: 0, text: 'a' });
    expect(await reader.tags(2)).toEqual(['updated 1@2', 'delta']);
    return { ...w, reader, id };
  }

  it('tells a feed resuming mid-reply the reply as it stands, read after the feed listened, then the deltas after it', async () => {
    const { store, publish, open } = await world(2);
    const { id } = store.saveStreaming(ROOM, 2, 'Hel', 3); // added before the cursor: the replay does not carry it
    const release = store.hold('streaming');
    const { reader } = open(afterChange(2));
    await reader.attach();
    await waitFor(() => store.callsOf('streaming').length === 1, 'the read of the replies streaming');
    // While it reads, the reply grows: each piece saved, then published.
    store.saveStreaming(ROOM, 2, 'Hello', 4);
    await publish({ kind: 'delta', messageId: id, index: 3, text: 'lo' });
    release();
    const [now] = await reader.events(1);
    expect(tag(now)).toBe('updated 2@2'); // at the feed's position: it is no change of the log
    expect(now).toMatchObject({ message: { body: 'Hello', deltaCount: 4, status: 'STREAMING' } });
    await publish({ kind: 'delta', messageId: id, index: 4, text: '!' });
    // Not delta 3, in flight while the reply was read: it is in the text told.
    expect((await reader.next()).value).toMatchObject({ kind: 'delta', index: 4 });
  });

  it('tells a reply again as it stands when deltas were lost on the way (pub/sub reconnected), then goes on from its deltaCount', async () => {
    const { store, publish, reader, id } = await toldStreaming();
    // Pieces 1 and 2 are saved and their deltas lost on the way; piece 3 is saved, then its delta comes.
    const reads = store.callsOf('streaming').length; // the one of its first catch-up
    const release = store.hold('streaming');
    store.saveStreaming(ROOM, 1, 'abcd', 4);
    await publish({ kind: 'delta', messageId: id, index: 3, text: 'd' });
    const next = reader.events(1); // a client waiting for its next event
    await waitFor(() => store.callsOf('streaming').length === reads + 1, 'the read of the reply');
    store.saveStreaming(ROOM, 1, 'abcde', 5);
    await publish({ kind: 'delta', messageId: id, index: 4, text: 'e' }); // while it is read
    release();
    const [now] = await next;
    expect(tag(now)).toBe('updated 1@2'); // at the feed's position: it is no change of the log
    expect(now).toMatchObject({ message: { body: 'abcde', deltaCount: 5 } });
    await publish({ kind: 'delta', messageId: id, index: 5, text: 'f' });
    expect((await reader.next()).value).toMatchObject({ kind: 'delta', index: 5 }); // not 3 or 4: they are in the text told
    expect(store.callsOf('streaming')).toHaveLength(reads + 1);
  });

  it('passes no delta past lost ones while the reply cannot be read, and tells it once it can', async () => {
    const { store, publish, reader, id } = await toldStreaming();
    const reads = store.callsOf('streaming').length;
    store.down = true; // pieces 1 and 2 lost on the way, and the database unreachable as 3 and 4 come
    for (const [index, body] of [[3, 'abcd'], [4, 'abcde']] as const) {
      store.saveStreaming(ROOM, 1, body, index + 1);
      await publish({ kind: 'delta', messageId: id, index, text: body.at(-1)! });
    }
    const next = reader.events(1); // a client waiting for its next event
    await waitFor(() => store.callsOf('streaming').length === reads + 2, 'a read at each delta');
    store.down = false;
    store.saveStreaming(ROOM, 1, 'abcdef', 6);
    await publish({ kind: 'delta', messageId: id, index: 5, text: 'f' });
    const [now] = await next;
    expect(tag(now)).toBe('updated 1@2');
    expect(now).toMatchObject({ message: { body: 'abcdef', deltaCount: 6 } }); // deltas 3 and 4 never went out: they could not be appended
    await publish({ kind: 'delta', messageId: id, index: 6, text: 'g' });
    expect((await reader.next()).value).toMatchObject({ kind: 'delta', index: 6 });
  });

  it('passes no delta after a reply\'s end to a reader so slow its buffer was shed (the deltas it kept came after the end its catch-up read)', async () => {
    const { store, edit, change, publish, open } = await world(1);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    const { id } = await edit(1, { status: 'STREAMING', body: '', deltaCount: 0 });
    expect(await reader.tags(1)).toEqual(['updated 1@2']);
    // The reader reads nothing while 1,200 deltas and then the reply's end come: its buffer overflows.
    for (let index = 0; index < 1200; index++) await publish({ kind: 'delta', messageId: id, index, text: 'x' });
    await change(store.change(ROOM, 1, { status: 'COMPLETE', body: 'x'.repeat(1200), deltaCount: 1200 }));
    let end: FeedEvent | undefined;
    for (let i = 0; i <= 1201 && !end; i++) {
      const event = (await reader.next()).value as FeedEvent;
      if (event.kind === 'updated') end = event;
    }
    expect(end).toMatchObject({ message: { status: 'COMPLETE', deltaCount: 1200 } });
    await expect(reader.next(300)).rejects.toThrow('no feed event'); // none after the end
  });

  it('passes no delta after its end to a slow reader however many replies ended while it did not read (70 here)', async () => {
    const REPLIES = 70;
    const { store, edit, change, publish, open } = await world(REPLIES);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    const ids: string[] = [];
    for (let seq = 1; seq <= REPLIES; seq++) ids.push((await edit(seq, { status: 'STREAMING', body: '', deltaCount: 0 })).id);
    // The reader reads nothing while 20 deltas of each reply and then the replies' ends come: its buffer overflows.
    for (let index = 0; index < 20; index++) for (const id of ids) await publish({ kind: 'delta', messageId: id, index, text: 'x' });
    for (let seq = 1; seq <= REPLIES; seq++) await change(store.change(ROOM, seq, { status: 'COMPLETE', body: 'x'.repeat(20), deltaCount: 20 }));
    const ended = new Set<string>();
    const late: string[] = [];
    for (;;) {
      const result = await reader.next(500).catch(() => undefined);
      if (!result || result.done) break;
      const event = result.value;
      if (event.kind === 'updated' && event.message.status === 'COMPLETE') ended.add(event.message.id);
      if (event.kind === 'delta' && ended.has(event.messageId)) late.push(`${event.messageId}#${event.index}`);
    }
    expect(ended.size).toBe(REPLIES);
    expect(late).toEqual([]);
  });

  it('passes no delta of a reply that ended while its deltas were lost: its end, still to come, tells the whole text', async () => {
    const { store, change, publish, reader, id } = await toldStreaming();
    const reads = store.callsOf('streaming').length;
    const end = store.change(ROOM, 1, { status: 'COMPLETE', body: 'abc', deltaCount: 3 }); // committed, its signal on the way
    await publish({ kind: 'delta', messageId: id, index: 2, text: 'c' });
    await change(end);
    const [told] = await reader.events(1);
    expect(tag(told)).toBe('updated 1@3');
    expect(told).toMatchObject({ message: { status: 'COMPLETE', body: 'abc' } });
    expect(store.callsOf('streaming')).toHaveLength(reads + 1); // it found the reply ended
  });

  it('tells a feed without a cursor too, and each reply once: one its replay carried, or with a change still to come, is told by that', async () => {
    const { store, send, edit, open } = await world(3);
    store.saveStreaming(ROOM, 1, 'One', 1);
    store.saveStreaming(ROOM, 3, 'Three', 1);
    const fresh = open(CHANGES_FROM_NOW).reader;
    expect(await fresh.tags(2)).toEqual(['updated 1@3', 'updated 3@3']);
    const resumed = open(afterChange(2)).reader; // the replay carries 3 (added at change 3), not 1
    expect(await resumed.tags(2)).toEqual(['added 3@3', 'updated 1@3']);
    await send();
    expect(await resumed.take(1)).toEqual([4]);
    // A reply changed after the hub's position: its change tells it, not a snapshot.
    const hold = store.hold('changes');
    const late = open(afterChange(3)).reader;
    await late.attach();
    await edit(1);
    hold();
    expect(await late.tags(3)).toEqual(['added 4@4', 'updated 3@4', 'updated 1@5']);
    const messagesOrder = open(MESSAGES_FROM_NOW).reader;
    await messagesOrder.attach();
    await send();
    expect(await messagesOrder.take(1)).toEqual([5]); // messageAdded carries no reply text
  });
});

// ---------------------------------------------------------------------------------------------
// Ending
// ---------------------------------------------------------------------------------------------

describe('MessageFeed: return() and throw()', () => {
  it('ends the feed promptly while it waits for events, releases its hub once and removes its listener', async () => {
    const { hub, send, open } = await world(1);
    const { feed, reader, release } = open(CHANGES_FROM_NOW);
    await reader.attach(); // the pending next() waits: nothing to deliver
    expect(await within(Promise.all([reader.next(), feed.return!()]), 500)).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
    await send();
    expect(await reader.next()).toEqual({ done: true, value: undefined });
    await feed.return!();
    expect(release).toHaveBeenCalledTimes(1);
  });

  it('ends the feed promptly while it waits to retry during a database outage', async () => {
    const { store, hub, log, open } = await world(3);
    store.down = true;
    const { feed, reader, release } = open(afterChange(0));
    await reader.attach();
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed read');
    expect(await within(Promise.all([reader.next(), feed.return!()]), RETRY_MS / 2)).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    await waitFor(() => release.mock.calls.length === 1, 'the release', RETRY_MS + 1500);
    expect(hub.size).toBe(0);
  });

  it('ends a feed that was never read without acquiring its hub', async () => {
    const { hub, open } = await world(3);
    const { feed, reader, acquire, release } = open(afterChange(0));
    await expect(feed.return!()).resolves.toEqual({ done: true, value: undefined });
    expect(await reader.next()).toEqual({ done: true, value: undefined });
    expect(acquire).not.toHaveBeenCalled();
    expect(release).not.toHaveBeenCalled();
    expect(hub.size).toBe(0);
  });

  it('ends between events of a replay without reading further', async () => {
    const { open, feedReads } = await world(450);
    const { feed, reader, release } = open(afterChange(0));
    expect(await reader.take(2)).toEqual([1, 2]);
    await feed.return!();
    expect(release).toHaveBeenCalledTimes(1);
    expect(await reader.next()).toEqual({ done: true, value: undefined });
    expect(feedReads('changes')).toHaveLength(1);
  });

  it('throw() ends a feed that was never read, rejecting with the error, without acquiring its hub', async () => {
    const { hub, open } = await world(1);
    const { feed, acquire } = open(CHANGES_FROM_NOW);
    await expect(feed.throw!(new Error('client gone'))).rejects.toThrow('client gone');
    expect(acquire).not.toHaveBeenCalled();
    expect(hub.size).toBe(0);
  });

  it('throw() ends a feed that waits for events, rejecting with the error, and releases its hub once', async () => {
    const { hub, open } = await world(1);
    const { feed, reader, release } = open(CHANGES_FROM_NOW);
    await reader.attach();
    const thrown = within(feed.throw!(new Error('client gone')).then(() => 'resolved', (err: Error) => err.message), 500);
    expect(await thrown).toBe('client gone');
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });

  it('throw() ends a feed between events of a replay, rejecting with the error, and releases its hub once', async () => {
    const { hub, open } = await world(450);
    const { feed, reader, release } = open(afterChange(0));
    expect(await reader.take(2)).toEqual([1, 2]);
    await expect(feed.throw!(new Error('client gone'))).rejects.toThrow('client gone');
    expect(release).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The change log
// ---------------------------------------------------------------------------------------------

describe('MessageFeed: the change log', () => {
  it('replays every change after an event cursor in change order — new messages as added, changes of older ones as updated — then goes live', async () => {
    const { send, edit, open } = await world(4);
    await edit(1); // 5
    await send(); // 6: seq 5
    await edit(3); // 7: 3 is superseded
    const { reader } = open(afterChange(2));
    expect(await reader.tags(4)).toEqual(['added 4@4', 'updated 1@5', 'added 5@6', 'added 3@7']);
    await edit(4);
    await send();
    expect(await reader.tags(2)).toEqual(['updated 4@8', 'added 6@9']);
  });

  it('replays edits of messages far older than the cursor as updated', async () => {
    const { send, edit, open } = await world(1100);
    await edit(50); // 1101
    await edit(1); // 1102
    await send(); // 1103: seq 1101
    const { reader } = open(afterChange(1100));
    expect(await reader.tags(3)).toEqual(['updated 50@1101', 'updated 1@1102', 'added 1101@1103']);
    const messages = open(afterSeq(1100)).reader;
    expect(await messages.take(1)).toEqual([1101]);
  });

  it('resumes from a message cursor with every change since that message\'s insert, adding what the client never had once', async () => {
    const { edit, send, open } = await world(3);
    await edit(1); // 4
    await send(); // 5: seq 4
    await edit(2); // 6: 2 is superseded
    // A message cursor names the insert of its message: the client has every message up to it.
    expect(await open(afterChange(3, 3)).reader.tags(3)).toEqual(['updated 1@4', 'added 4@5', 'updated 2@6']);
    // Seq 2 came after message 1: it is added, once, at the only change that holds it.
    expect(await open(afterChange(1, 1)).reader.tags(4)).toEqual(['added 3@3', 'updated 1@4', 'added 4@5', 'added 2@6']);
    // An event cursor at change 4 (after which seq 3 was the newest message).
    expect(await open(afterChange(4, 3)).reader.tags(2)).toEqual(['added 4@5', 'updated 2@6']);
  });

  it('messages order passes no changes of messages it already delivered, only new messages', async () => {
    const { send, edit, open } = await world(2);
    const { reader } = open(afterSeq(0));
    expect(await reader.take(2)).toEqual([1, 2]);
    await edit(1);
    await edit(2);
    await send();
    expect(await reader.events(1)).toEqual([expect.objectContaining({ kind: 'added', change: 5, message: expect.objectContaining({ seq: 3 }) })]);
  });

  it('delivers a message inserted and then changed before the replay read it once, as added, in its latest state', async () => {
    const { store, send, edit, open } = await world(3);
    await send(); // 4: seq 4
    await edit(4); // 5
    const { reader } = open(afterChange(3));
    const [event] = await reader.events(1);
    expect(event).toMatchObject({ kind: 'added', change: 5, message: store.get(ROOM, 4) });
    await edit(4);
    await send();
    expect(await reader.tags(2)).toEqual(['updated 4@6', 'added 5@7']);
  });

  it('delivers a message inserted and then changed before the hub saw it once, as added, never updated first', async () => {
    const { store, hub, change, send, edit, open } = await world(3);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    const [m4] = store.append(ROOM, 1); // change 4, its signal delayed
    await change(store.change(ROOM, 4)); // change 5 arrives first
    await waitFor(() => hub.position === 5, 'the hub to fan out change 5');
    await change(m4); // the delayed insert: a duplicate
    await edit(4);
    await send();
    expect(await reader.tags(3)).toEqual(['added 4@5', 'updated 4@6', 'added 5@7']);
  });

  it('resumes from an event cursor that carried a message early, giving the one still missing as added and no other twice', async () => {
    const { store, change, send, open } = await world(3);
    const first = open(CHANGES_FROM_NOW).reader;
    await first.attach();
    store.append(ROOM, 1); // change 4: seq 4, its signal lost
    const [m5] = store.append(ROOM, 1); // change 5: seq 5
    await change(m5); // the hub reads the gap: 4 is still at change 4, so it comes first
    const seen = await first.events(2);
    expect(seen.map((e) => [e.kind, (e as { added: string }).added])).toEqual([['added', '4'], ['added', '5']]);

    // A client past change 4 that never got seq 4 (its insert's event was lost on the way) carries 5 early, and its cursor says so.
    const early = open(afterChange(4, 3)).reader;
    const [five] = await early.events(1);
    expect(five).toMatchObject({ kind: 'added', change: 5, added: '3.5' });
    const resumed = open({ order: 'changes', after: { change: 5, added: AddedSet.parse('3.5')! } }).reader;
    store.change(ROOM, 4); // change 6: seq 4, never carried by this client
    store.change(ROOM, 5); // change 7: seq 5, carried
    await send(); // change 8
    expect(await resumed.tags(3)).toEqual(['added 4@6', 'updated 5@7', 'added 6@8']);
  });

  it('messages order delivers strictly increasing seq when an insert only arrives at a later change (the gap filled by seq)', async () => {
    const { store, hub, change, send, open, feedReads } = await world(3);
    const messages = open(afterSeq(3)).reader;
    const changes = open(CHANGES_FROM_NOW).reader;
    await messages.attach();
    await changes.attach();
    store.append(ROOM, 1); // change 4: seq 4, its signal lost
    const [m5] = store.append(ROOM, 1); // change 5: seq 5
    const m4 = store.change(ROOM, 4); // change 6: by the time the hub reads the gap, 4 is superseded
    await change(m5);
    await change(m4);
    await waitFor(() => hub.position === 6, 'the hub to fan out change 6');
    await send(); // change 7: seq 6
    expect(await changes.tags(3)).toEqual(['added 5@5', 'added 4@6', 'added 6@7']);
    expect(await messages.take(3)).toEqual([4, 5, 6]);
    expect(feedReads('range')).toEqual([[ROOM, 0, 4, 200]]); // the window 4 falls in (`ReplayWindows`)
  });

  it('takes live changes buffered at the seam of a resume once each, first as added for messages the client never had', async () => {
    const { store, send, edit, open } = await world(4);
    const release = store.hold('changes');
    const { reader } = open(afterChange(2));
    await reader.attach();
    await waitFor(() => store.callsOf('changes').length === 1, 'the replay read');
    // While the replay read (2, 4] is in flight: the hub carries these as updates of 3 and 4.
    await edit(3); // 5
    await send(); // 6: seq 5
    await edit(4); // 7
    await edit(1); // 8
    release();
    expect(await reader.tags(4)).toEqual(['added 3@5', 'added 5@6', 'added 4@7', 'updated 1@8']);
    await send();
    expect(await reader.tags(1)).toEqual(['added 6@9']);
  });

  it('re-reads the changes a slow reader\'s buffer dropped once each, a message changed meanwhile at its latest change', async () => {
    const { edit, send, open } = await world(0);
    const { reader } = open(CHANGES_FROM_NOW);
    await reader.attach();
    await send(20);
    expect(await reader.take(10)).toEqual(range(1, 10));
    await send(1100); // 21..1120 overflow the buffer while 11..20 are unread
    await edit(15); // 1121: 15 was dropped from the buffer unread (iterated), or already written to the socket (pushed)
    await edit(5); // 1122: 5 was delivered
    expect(runs(await reader.take(mode === 'iterated' ? 1111 : 1112))).toBe(mode === 'iterated' ? '11-14, 16-1120, 15, updated 5' : '11-1120, updated 15, updated 5');
  });

  it('gives a messages-order reader whose buffer overflows during the replay every message once, in order', async () => {
    const { send, open } = await world(450);
    const { reader } = open(afterSeq(0));
    expect(await reader.take(1)).toEqual([1]); // the replay waits for the reader
    await send(1500); // 451..1950 overflow the buffer meanwhile
    expect(runs(await reader.until((l) => l === 1950))).toBe('2-1950');
  });

  it('gives a changes-order reader whose buffer overflows during the replay every change once, in order', async () => {
    const { send, open } = await world(450);
    const { reader } = open(afterChange(0));
    expect(await reader.take(1)).toEqual([1]); // the replay waits for the reader
    await send(1500); // changes 451..1950 overflow the buffer meanwhile
    expect(runs(await reader.until((l) => l === 1950))).toBe('2-1950');
  });
});
}
