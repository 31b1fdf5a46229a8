import { toWire } from '../../src/chat/message-service';
import { createMessageFeed, type FeedEvent, type FeedOptions } from '../../src/chat/message-feed';
import type { MessageModel } from '../../src/chat/models';
import { RoomHub } from '../../src/chat/room-hub';
import type { Logger } from '../../src/logger';
import { MemoryPubSub } from '../../src/pubsub/memory';
import { roomTopic, type RoomSignal } from '../../src/pubsub/types';
import { FakeStore, silentLogger, waitFor } from '../support/fakes';

// ---------------------------------------------------------------------------------------------
// Small fakes
// ---------------------------------------------------------------------------------------------

const ROOM = 'room-a';
const HEAL_NEVER = 60_000;
/** The feed retries a failed read after this long (message-feed.ts RETRY_MS). */
const RETRY_MS = 1000;

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A feed event as a short label: the seq of a message, the kind of anything else. */
function label(event: FeedEvent): number | string {
  return event.kind === 'added' ? event.message.seq : event.kind;
}

/** The next event, failing the test when none comes within `ms` (a bound, not a sleep). */
async function next(feed: AsyncIterableIterator<FeedEvent>, ms = 2000): Promise<IteratorResult<FeedEvent>> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      feed.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no feed event within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The labels of the next `count` events (fails if the feed ends or stalls first). */
async function take(feed: AsyncIterableIterator<FeedEvent>, count: number, ms = 2000): Promise<(number | string)[]> {
  const labels: (number | string)[] = [];
  while (labels.length < count) {
    const result = await next(feed, ms);
    if (result.done) throw new Error(`feed ended after ${labels.length} of ${count} events: ${labels.join(',')}`);
    labels.push(label(result.value));
  }
  return labels;
}

/** Every remaining label until the feed ends. */
async function drain(feed: AsyncIterableIterator<FeedEvent>, ms = 2000): Promise<(number | string)[]> {
  const labels: (number | string)[] = [];
  for (;;) {
    const result = await next(feed, ms);
    if (result.done) return labels;
    labels.push(label(result.value));
  }
}

// ---------------------------------------------------------------------------------------------
// Per-test world: a real RoomHub on the real in-memory bus over the fake store
// ---------------------------------------------------------------------------------------------

const hubs: RoomHub[] = [];
const feeds: AsyncIterableIterator<FeedEvent>[] = [];

afterEach(async () => {
  await Promise.all(feeds.splice(0).map((f) => f.return?.()));
  await Promise.all(hubs.splice(0).map((h) => h.stop()));
});

async function world(messages = 0) {
  const store = new FakeStore();
  store.append(ROOM, messages);
  const pubsub = new MemoryPubSub();
  const log = silentLogger();
  const hub = new RoomHub(ROOM, store.asStore(), pubsub, log as unknown as Logger, HEAL_NEVER);
  hubs.push(hub);
  await hub.start();

  const signal = (s: RoomSignal) => pubsub.publish(roomTopic(ROOM), s);
  /** Commits `count` messages and publishes each, then waits until the hub fanned them out. */
  const send = async (count = 1): Promise<MessageModel[]> => {
    const messages = store.append(ROOM, count);
    for (const m of messages) await signal({ kind: 'added', message: toWire(m) });
    const last = store.last(ROOM);
    await waitFor(() => hub.position >= last, `the hub to fan out seq ${last}`);
    return messages;
  };
  /** Publishes a room signal and waits until the hub fanned it out. */
  const publish = async (s: RoomSignal) => {
    let seen = false;
    const probe = (x: RoomSignal) => {
      if (x === s) seen = true;
    };
    hub.add(probe, '__probe__');
    await signal(s);
    await waitFor(() => seen, `the hub to fan out ${s.kind}`);
    hub.remove(probe);
  };
  const removeViewer = (userId = 'alice') => publish({ kind: 'membership', userId, member: false });
  /** The store's range reads made by the feed (the hub reads nothing here unless a signal skips ahead). */
  const feedReads = () => store.callsOf('range').filter((args) => args[3] === 200);

  const open = (options: Partial<FeedOptions> = {}) => {
    const onClose = jest.fn();
    const feed = createMessageFeed({
      hub,
      store: store.asStore(),
      log: log as unknown as Logger,
      viewerId: 'alice',
      accept: () => false,
      onClose,
      ...options,
    });
    feeds.push(feed);
    return { feed, onClose };
  };
  return { store, hub, log, send, publish, removeViewer, open, feedReads };
}

// ---------------------------------------------------------------------------------------------
// Replay, then live
// ---------------------------------------------------------------------------------------------

describe('createMessageFeed: replay and live', () => {
  it('replays the messages after the cursor, then goes live, without a gap or a duplicate at the seam', async () => {
    const { send, open, feedReads } = await world(5);
    const { feed } = open({ afterSeq: 2 });
    expect(await take(feed, 3)).toEqual([3, 4, 5]);
    await send(2);
    expect(await take(feed, 2)).toEqual([6, 7]);
    expect(feedReads()).toEqual([[ROOM, 2, 5, 200]]);
  });

  it('delivers live messages that arrived during the replay read after it, each once', async () => {
    const { store, send, open } = await world(5);
    const release = store.hold('range');
    const { feed } = open({ afterSeq: 0 });
    const first = next(feed);
    await waitFor(() => store.callsOf('range').length === 1, 'the replay read');
    await send(3); // 6, 7, 8 reach the feed's buffer while the replay read is in flight
    release();
    const result = await first;
    expect(result.done).toBe(false);
    expect([label(result.value as FeedEvent), ...(await take(feed, 7))]).toEqual(range(1, 8));
    await send();
    expect(await take(feed, 1)).toEqual([9]);
  });

  it('delivers live messages buffered before the first read after the replay, without duplicates', async () => {
    const { send, open } = await world(3);
    const { feed } = open({ afterSeq: 1 });
    await send(2); // 4, 5: buffered, and 4, 5 are also within reach of the replay
    expect(await take(feed, 4)).toEqual([2, 3, 4, 5]);
  });

  it('reads the gap from the store when the first live message is ahead of the cursor', async () => {
    const { send, open, feedReads } = await world(3);
    const { feed } = open({ afterSeq: 0 });
    await send(); // 4 is at the head of the buffer; 1..3 are only in the store
    expect(await take(feed, 4)).toEqual([1, 2, 3, 4]);
    expect(feedReads()).toEqual([[ROOM, 0, 3, 200]]);
  });

  it('replays more than one batch in order', async () => {
    const { open, feedReads } = await world(450);
    const { feed } = open({ afterSeq: 10 });
    expect(await take(feed, 440)).toEqual(range(11, 450));
    expect(feedReads()).toEqual([
      [ROOM, 10, 450, 200],
      [ROOM, 210, 450, 200],
      [ROOM, 410, 450, 200],
    ]);
  });

  it('starts at the hub\'s position when afterSeq is undefined, replaying nothing', async () => {
    const { send, open, feedReads } = await world(5);
    const { feed } = open();
    await send();
    expect(await take(feed, 1)).toEqual([6]);
    expect(feedReads()).toEqual([]);
  });

  it('replays nothing for a cursor at the hub\'s position', async () => {
    const { send, open, feedReads } = await world(5);
    const { feed } = open({ afterSeq: 5 });
    await send();
    expect(await take(feed, 1)).toEqual([6]);
    expect(feedReads()).toEqual([]);
  });

  it('gives a reader too slow for its buffer (over 1,000 live messages unread) every seq once, in order, from the store', async () => {
    const { send, open, feedReads, hub } = await world(0);
    const { feed, onClose } = open({ afterSeq: 0 });
    await send(1500);
    expect(hub.position).toBe(1500);
    expect(await take(feed, 1500)).toEqual(range(1, 1500));
    expect(feedReads().length).toBeGreaterThan(0); // the dropped buffer was re-read from the store
    await send();
    expect(await take(feed, 1)).toEqual([1501]);
    expect(onClose).not.toHaveBeenCalled();
  });

  it('gives a reader that falls behind again mid-stream every seq once, in order', async () => {
    const { send, open } = await world(0);
    const { feed } = open();
    await send(20);
    expect(await take(feed, 10)).toEqual(range(1, 10));
    await send(2100); // overflows the buffer twice over while 11..20 are still unread
    expect(await take(feed, 2110)).toEqual(range(11, 2120));
  });
});

// ---------------------------------------------------------------------------------------------
// Database outage
// ---------------------------------------------------------------------------------------------

describe('createMessageFeed: database outage', () => {
  it('retries a catch-up read that failed and does not fail the subscription', async () => {
    const { store, log, open } = await world(3);
    let failures = 0;
    store.failIf = (method) => method === 'range' && failures++ === 0;
    const { feed, onClose } = open({ afterSeq: 0 });
    const started = Date.now();
    expect(await take(feed, 3, RETRY_MS + 1500)).toEqual([1, 2, 3]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(RETRY_MS - 50);
    expect(log.warn).toHaveBeenCalledTimes(1);
    expect(log.warn).toHaveBeenCalledWith(
      { err: 'connect ECONNREFUSED (fake outage)', roomId: ROOM },
      'feed could not read the database; retrying',
    );
    expect(onClose).not.toHaveBeenCalled();
  });

  it('retries at once when a live message arrives during the outage', async () => {
    const { store, log, send, open } = await world(3);
    store.down = true;
    const { feed } = open({ afterSeq: 0 });
    const first = next(feed);
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed read');
    store.down = false;
    await send(); // 4 wakes the waiting retry
    const result = await first;
    expect([label(result.value as FeedEvent), ...(await take(feed, 3, RETRY_MS / 2))]).toEqual([1, 2, 3, 4]);
  });
});

// ---------------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------------

describe('createMessageFeed: the viewer\'s removal', () => {
  it('yields revoked and nothing after it when the viewer is removed, then ends and closes once', async () => {
    const { hub, send, removeViewer, open } = await world(2);
    const { feed, onClose } = open();
    await removeViewer();
    await send(2); // after the removal: must not reach the removed viewer
    expect(await drain(feed)).toEqual(['revoked']);
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
    expect(await next(feed)).toEqual({ done: true, value: undefined });
  });

  it('drops the messages still waiting in the buffer when the viewer is removed', async () => {
    const { send, removeViewer, open } = await world(2);
    const { feed } = open();
    await send(2);
    await removeViewer();
    expect(await drain(feed)).toEqual(['revoked']);
  });

  it('stops a catch-up in the middle when the viewer is removed, yielding revoked and nothing after', async () => {
    const { removeViewer, open, feedReads } = await world(450);
    const { feed, onClose } = open({ afterSeq: 0 });
    expect(await take(feed, 3)).toEqual([1, 2, 3]);
    await removeViewer();
    expect(await drain(feed)).toEqual(['revoked']);
    expect(feedReads()).toHaveLength(1);
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it('stops a gap read for a live message when the viewer is removed, without delivering that message', async () => {
    const { store, send, removeViewer, open } = await world(3);
    const { feed } = open({ afterSeq: 0 });
    await send(); // 4 at the head of the buffer: the feed reads 1..3 first
    const release = store.hold('range');
    const first = next(feed);
    await waitFor(() => store.callsOf('range').length === 1, 'the gap read');
    await removeViewer();
    release();
    const result = await first;
    expect(result.done ? 'end' : label(result.value)).toBe('revoked');
    expect(await drain(feed)).toEqual([]);
  });

  it('yields revoked as soon as a catch-up read in flight at the removal returns, without waiting a retry interval', async () => {
    const { store, removeViewer, open } = await world(5);
    const release = store.hold('range');
    const { feed } = open({ afterSeq: 0 });
    const first = feed.next();
    await waitFor(() => store.callsOf('range').length === 1, 'the replay read');
    await removeViewer();
    release();
    const result = await Promise.race([
      first,
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), RETRY_MS / 2).unref()),
    ]);
    expect(result === 'timeout' ? `nothing within ${RETRY_MS / 2} ms` : label(result.value as FeedEvent)).toBe('revoked');
    expect(await next(feed, 500)).toEqual({ done: true, value: undefined });
  });

  it('keeps the revocation final even when over 1,000 accepted signals follow it before the reader reads', async () => {
    const { publish, removeViewer, open } = await world(1);
    const { feed } = open({ accept: () => true });
    await removeViewer();
    for (let i = 0; i < 1001; i++) await publish({ kind: 'delta', messageId: `${ROOM}-m1`, index: i, text: 'x' });
    const first = await next(feed, 500);
    expect(first.done ? 'end' : label(first.value)).toBe('revoked');
    expect(await next(feed, 500)).toEqual({ done: true, value: undefined });
  });

  it('yields revoked when a heal finds the viewer is no longer a member (a lost removal signal)', async () => {
    const { store, hub, open } = await world(2);
    const { feed } = open();
    store.removeMember(ROOM, 'alice');
    hub.heal();
    expect(await drain(feed)).toEqual(['revoked']);
  });

  it('ignores the removal of another user and membership additions', async () => {
    const { send, publish, removeViewer, open } = await world(2);
    const { feed, onClose } = open();
    await removeViewer('bob');
    await publish({ kind: 'membership', userId: 'alice', member: true });
    await publish({ kind: 'membership', userId: 'carol', member: true });
    await send();
    expect(await take(feed, 1)).toEqual([3]);
    expect(onClose).not.toHaveBeenCalled();
  });
});

// ---------------------------------------------------------------------------------------------
// Other signals
// ---------------------------------------------------------------------------------------------

describe('createMessageFeed: other signals', () => {
  it('passes non-message signals only when accept() says so, and never asks about messages or memberships', async () => {
    const { store, send, publish, removeViewer, open } = await world(1);
    const accept = jest.fn((s: RoomSignal) => s.kind === 'updated');
    const { feed } = open({ accept });
    const m1 = toWire(store.get(ROOM, 1));
    const delta: RoomSignal = { kind: 'delta', messageId: m1.id, index: 0, text: 'Hel' };
    const updated: RoomSignal = { kind: 'updated', message: { ...m1, body: 'edited' } };
    await publish(delta);
    await publish(updated);
    await send();
    await removeViewer('bob');
    const events: FeedEvent[] = [];
    for (let i = 0; i < 2; i++) events.push((await next(feed)).value as FeedEvent);
    expect(events).toEqual([updated, expect.objectContaining({ kind: 'added' })]);
    expect(label(events[1])).toBe(2);
    expect(accept.mock.calls.map(([s]) => s)).toEqual([delta, updated]);
  });

  it('keeps accepted signals in their order among live messages', async () => {
    const { store, send, publish, open } = await world(1);
    const { feed } = open({ accept: (s) => s.kind === 'delta' });
    const id = store.get(ROOM, 1).id;
    await publish({ kind: 'delta', messageId: id, index: 0, text: 'a' });
    await send();
    await publish({ kind: 'delta', messageId: id, index: 1, text: 'b' });
    expect(await take(feed, 3)).toEqual(['delta', 2, 'delta']);
  });
});

// ---------------------------------------------------------------------------------------------
// Ending
// ---------------------------------------------------------------------------------------------

describe('createMessageFeed: return()', () => {
  it('ends the feed promptly while it waits for events, calls onClose once and removes its listener', async () => {
    const { hub, send, open } = await world(1);
    const { feed, onClose } = open();
    expect(hub.size).toBe(1);
    const pending = feed.next(); // waits: nothing to deliver
    const ended = await Promise.race([
      Promise.all([pending, feed.return!()]),
      new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 500).unref()),
    ]);
    expect(ended).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
    await send();
    expect(await next(feed)).toEqual({ done: true, value: undefined });
    await feed.return!();
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it('ends the feed promptly while it waits to retry during a database outage', async () => {
    const { store, hub, log, open } = await world(3);
    store.down = true;
    const { feed, onClose } = open({ afterSeq: 0 });
    const pending = feed.next();
    await waitFor(() => log.warn.mock.calls.length === 1, 'the failed read');
    const started = Date.now();
    await expect(Promise.all([pending, feed.return!()])).resolves.toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    expect(Date.now() - started).toBeLessThan(RETRY_MS / 2);
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });

  it('ends a feed that was never read, calling onClose once', async () => {
    const { hub, open } = await world(3);
    const { feed, onClose } = open({ afterSeq: 0 });
    await expect(feed.return!()).resolves.toEqual({ done: true, value: undefined });
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
    expect(await next(feed)).toEqual({ done: true, value: undefined });
  });

  it('ends between events of a replay without reading further', async () => {
    const { open, feedReads } = await world(450);
    const { feed, onClose } = open({ afterSeq: 0 });
    expect(await take(feed, 2)).toEqual([1, 2]);
    await feed.return!();
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(await next(feed)).toEqual({ done: true, value: undefined });
    expect(feedReads()).toHaveLength(1);
  });

  it('throw() ends the feed and calls onClose once', async () => {
    const { hub, open } = await world(1);
    const { feed, onClose } = open();
    await expect(feed.throw!(new Error('client gone'))).rejects.toThrow('client gone');
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(hub.size).toBe(0);
  });
});
