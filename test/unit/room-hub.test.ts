import type { MessageModel } from '../../src/chat/models';
import { toWire } from '../../src/chat/message-service';
import { HubRegistry, RoomHub, type HubListener } from '../../src/chat/room-hub';
import type { Logger } from '../../src/logger';
import { MemoryPubSub } from '../../src/pubsub/memory';
import { roomTopic, type PubSub, type RoomSignal, type Topic } from '../../src/pubsub/types';
import { FakeStore, silentLogger, waitFor } from '../support/fakes';

// ---------------------------------------------------------------------------------------------
// Small fakes
// ---------------------------------------------------------------------------------------------

/** A pub/sub whose subscriptions the test can count, whose subscribe can fail, and that can "reconnect". */
class FakePubSub implements PubSub {
  subscribeError?: Error;
  private readonly handlers = new Map<string, Set<(payload: unknown) => void>>();
  private readonly reconnectListeners = new Set<() => void>();

  async publish<T>(topic: Topic<T>, payload: T): Promise<void> {
    for (const handler of [...(this.handlers.get(topic.name) ?? [])]) handler(payload);
  }

  async subscribe<T>(topic: Topic<T>, handler: (payload: T) => void): Promise<() => Promise<void>> {
    if (this.subscribeError) throw this.subscribeError;
    const set = this.handlers.get(topic.name) ?? new Set();
    this.handlers.set(topic.name, set);
    const h = handler as (payload: unknown) => void;
    set.add(h);
    return async () => {
      set.delete(h);
    };
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** Tells every reconnect listener that the bus came back. */
  reconnect(): void {
    for (const listener of [...this.reconnectListeners]) listener();
  }

  get reconnectListenerCount(): number {
    return this.reconnectListeners.size;
  }

  subscribers(roomId: string): number {
    return this.handlers.get(roomTopic(roomId).name)?.size ?? 0;
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}

/** Waits until the hub's serial chain has run everything enqueued so far (reads a private field). */
async function settled(hub: RoomHub): Promise<void> {
  const inner = hub as unknown as { chain: Promise<void> };
  let chain: Promise<void>;
  do {
    chain = inner.chain;
    await chain;
  } while (chain !== inner.chain);
}

const added = (message: MessageModel): RoomSignal => ({ kind: 'added', message: toWire(message) });

function seqsOf(signals: RoomSignal[]): number[] {
  return signals.flatMap((s) => (s.kind === 'added' ? [s.message.seq] : []));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

const HEAL_NEVER = 60_000;
const ROOM = 'room-a';

// ---------------------------------------------------------------------------------------------
// Per-test world
// ---------------------------------------------------------------------------------------------

const toStop: { stop(): Promise<void> }[] = [];
const toClose: HubRegistry[] = [];

afterEach(async () => {
  await Promise.all(toStop.splice(0).map((h) => h.stop()));
  await Promise.all(toClose.splice(0).map((r) => r.close()));
});

/** A started hub over a room that already holds `messages` messages, on the real in-memory bus. */
async function startHub(options: { messages?: number; pubsub?: PubSub; healIntervalMs?: number } = {}) {
  const store = new FakeStore();
  store.append(ROOM, options.messages ?? 0);
  const pubsub = options.pubsub ?? new MemoryPubSub();
  const log = silentLogger();
  const hub = new RoomHub(ROOM, store.asStore(), pubsub, log as unknown as Logger, options.healIntervalMs ?? HEAL_NEVER);
  toStop.push(hub);
  await hub.start();
  /** Commits `count` messages; publishes the signal of each unless `publish` is false (a lost signal). */
  const send = async (count = 1, publish = true): Promise<MessageModel[]> => {
    const messages = store.append(ROOM, count);
    if (publish) for (const m of messages) await pubsub.publish(roomTopic(ROOM), added(m));
    return messages;
  };
  const signal = (s: RoomSignal) => pubsub.publish(roomTopic(ROOM), s);
  return { store, pubsub, log, hub, send, signal };
}

function listen(hub: RoomHub, userId: string): RoomSignal[] & { listener: HubListener } {
  const seen = [] as unknown as RoomSignal[] & { listener: HubListener };
  const listener: HubListener = (s) => seen.push(s);
  Object.defineProperty(seen, 'listener', { value: listener, enumerable: false });
  hub.add(listener, userId);
  return seen;
}

function expectStrictlyIncreasingWithoutGap(seqs: number[], from: number): void {
  expect(seqs).toEqual(range(from, from + seqs.length - 1));
}

// ---------------------------------------------------------------------------------------------
// RoomHub
// ---------------------------------------------------------------------------------------------

describe('RoomHub', () => {
  it('starts at the room\'s last seq, subscribing before it reads it', async () => {
    const pubsub = new FakePubSub();
    const store = new FakeStore();
    store.append(ROOM, 7);
    let subscribedWhenRead: number | undefined;
    store.onCall = (method) => {
      if (method === 'lastSeq') subscribedWhenRead = pubsub.subscribers(ROOM);
    };
    const hub = new RoomHub(ROOM, store.asStore(), pubsub, silentLogger() as unknown as Logger, HEAL_NEVER);
    toStop.push(hub);
    await hub.start();
    expect(hub.position).toBe(7);
    expect(subscribedWhenRead).toBe(1);
  });

  it('fans out the message with seq = position + 1 at once, without reading the store', async () => {
    const { hub, store, send } = await startHub({ messages: 3 });
    const seen = listen(hub, 'alice');
    await send();
    await waitFor(() => seen.length === 1, 'seq 4');
    expect(seqsOf(seen)).toEqual([4]);
    expect(hub.position).toBe(4);
    expect(store.callsOf('range')).toEqual([]);
  });

  it('fans out each signal to every listener', async () => {
    const { hub, send } = await startHub({ messages: 1 });
    const a = listen(hub, 'alice');
    const b = listen(hub, 'bob');
    await send(2);
    await waitFor(() => a.length === 2 && b.length === 2, 'both listeners');
    expect(seqsOf(a)).toEqual([2, 3]);
    expect(seqsOf(b)).toEqual([2, 3]);
  });

  it('reads the gap from the store before a signal that skips ahead, so listeners see no gap', async () => {
    const { hub, store, send } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    await send(3, false); // seqs 2..4: their signals were lost
    await send(); // seq 5
    await waitFor(() => seen.length === 4, 'seqs 2..5');
    expect(seqsOf(seen)).toEqual([2, 3, 4, 5]);
    expect(store.callsOf('range')).toEqual([[ROOM, 1, 4, 500]]);
    expect(hub.position).toBe(5);
  });

  it('fills a gap larger than one batch in batches, in order', async () => {
    const { hub, store, send } = await startHub();
    const seen = listen(hub, 'alice');
    await send(1200, false);
    await send();
    await waitFor(() => hub.position === 1201, 'position 1201');
    expectStrictlyIncreasingWithoutGap(seqsOf(seen), 1);
    expect(seqsOf(seen)).toHaveLength(1201);
    expect(store.callsOf('range')).toEqual([
      [ROOM, 0, 1200, 500],
      [ROOM, 500, 1200, 500],
      [ROOM, 1000, 1200, 500],
    ]);
  });

  it('drops duplicate and late signals (seq <= position), also out of order', async () => {
    const { hub, store, send, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const m1 = store.get(ROOM, 1);
    const [m2, m3, m4, m5] = await send(4, false);
    // 4 arrives first (2 and 3 are read from the store), then 2, 3, 4 again, then 1, then 5.
    for (const m of [m4, m2, m3, m4, m1, m5]) await signal(added(m));
    await waitFor(() => hub.position === 5, 'position 5');
    await settled(hub);
    expect(seqsOf(seen)).toEqual([2, 3, 4, 5]);
    expect(store.callsOf('range')).toEqual([[ROOM, 1, 3, 500]]);
  });

  it('passes non-message signals through unchanged', async () => {
    const { hub, signal, store } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    const m1 = store.get(ROOM, 1);
    const signals: RoomSignal[] = [
      { kind: 'updated', message: toWire(m1) },
      { kind: 'delta', messageId: m1.id, index: 0, text: 'Hel' },
      { kind: 'membership', userId: 'bob', member: true },
      { kind: 'membership', userId: 'carol', member: false },
    ];
    for (const s of signals) await signal(s);
    await waitFor(() => seen.length === signals.length, 'all signals');
    expect(seen).toEqual(signals);
    expect(hub.position).toBe(2);
  });

  it('heal() reads and fans out a missed tail', async () => {
    const { hub, store, send } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    await send(3, false);
    hub.heal();
    await waitFor(() => seen.length === 3, 'seqs 3..5');
    expect(seqsOf(seen)).toEqual([3, 4, 5]);
    expect(hub.position).toBe(5);
    expect(store.callsOf('range')).toEqual([[ROOM, 2, 5, 500]]);
  });

  it('heal() with nothing missed reads no messages and fans out nothing', async () => {
    const { hub, store } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    hub.heal();
    await settled(hub);
    expect(store.callsOf('members')).toHaveLength(1);
    expect(seen).toEqual([]);
    expect(store.callsOf('range')).toEqual([]);
  });

  it('heal() re-signals the removal of listeners whose user is no longer a member', async () => {
    const { hub, store } = await startHub({ messages: 1 });
    const alice1 = listen(hub, 'alice');
    const alice2 = listen(hub, 'alice');
    const bob = listen(hub, 'bob');
    store.removeMember(ROOM, 'bob');
    hub.heal();
    await waitFor(() => bob.length === 1, 'the removal');
    const removal = { kind: 'membership', userId: 'bob', member: false };
    expect(bob).toEqual([removal]);
    expect(alice1).toEqual([removal]); // fan-out goes to all; each feed keeps its own user's
    expect(alice2).toEqual([removal]);
    // One membership question per distinct user.
    expect(store.callsOf('members')).toEqual([[ROOM, ['alice', 'bob']]]);
  });

  it('heal() asks about no one when nobody listens', async () => {
    const { hub, store } = await startHub({ messages: 1 });
    hub.heal();
    await waitFor(() => store.callsOf('members').length === 1, 'the membership check');
    expect(store.callsOf('members')).toEqual([[ROOM, []]]);
  });

  it('keeps its position through a store error, and the next signal reads the whole gap', async () => {
    const { hub, store, log, send } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    store.down = true;
    await send(1, false); // 2, lost
    await send(); // 3: the gap read fails
    await waitFor(() => log.warn.mock.calls.length === 1, 'the warning');
    expect(log.warn.mock.calls[0][1]).toBe('room hub could not read the database');
    expect(hub.position).toBe(1);
    expect(seen).toEqual([]);
    store.down = false;
    await send(); // 4
    await waitFor(() => hub.position === 4, 'position 4');
    expect(seqsOf(seen)).toEqual([2, 3, 4]);
  });

  it('keeps its position through a store error, and a later heal() recovers the tail', async () => {
    const { hub, store, log, send } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    store.down = true;
    await send(2, false);
    await send(); // 4: the gap read fails
    hub.heal(); // fails too (lastSeq)
    await waitFor(() => log.warn.mock.calls.length === 2, 'two warnings');
    expect(hub.position).toBe(1);
    store.down = false;
    hub.heal();
    await waitFor(() => hub.position === 4, 'position 4');
    expect(seqsOf(seen)).toEqual([2, 3, 4]);
  });

  it('keeps what it fanned out when a store error cuts a long gap read short, and resumes after it', async () => {
    const { hub, store, send } = await startHub();
    const seen = listen(hub, 'alice');
    let ranges = 0;
    store.failIf = (method) => method === 'range' && ++ranges === 2;
    await send(1200, false);
    await send(); // 1201: the second batch fails
    await waitFor(() => ranges === 2, 'the failing batch');
    await waitFor(() => hub.position === 500, 'position 500');
    hub.heal();
    await waitFor(() => hub.position === 1201, 'position 1201');
    expect(seqsOf(seen)).toEqual(range(1, 1201));
  });

  it('starts anyway when the subscription fails, and its timer heals the room', async () => {
    const pubsub = new FakePubSub();
    pubsub.subscribeError = new Error('redis down');
    const { hub, store, log } = await startHub({ messages: 1, pubsub, healIntervalMs: 10 });
    expect(log.warn).toHaveBeenCalledWith(expect.objectContaining({ err: 'redis down' }), 'room subscription failed; healing by timer');
    const seen = listen(hub, 'alice');
    store.append(ROOM, 2);
    await waitFor(() => seen.length === 2, 'seqs 2..3 by timer');
    expect(seqsOf(seen)).toEqual([2, 3]);
  });

  it('stop() unsubscribes, drops its listeners and handles nothing after', async () => {
    const pubsub = new FakePubSub();
    const { hub, store, send } = await startHub({ messages: 1, pubsub });
    const seen = listen(hub, 'alice');
    expect(pubsub.subscribers(ROOM)).toBe(1);
    await hub.stop();
    expect(pubsub.subscribers(ROOM)).toBe(0);
    expect(hub.size).toBe(0);
    const callsBefore = store.calls.length;
    await send(2, false);
    await pubsub.publish(roomTopic(ROOM), added(store.append(ROOM, 1)[0]));
    hub.heal();
    await settled(hub);
    expect(seen).toEqual([]);
    expect(store.calls.length).toBe(callsBefore);
  });

  it('remove() stops delivery to that listener only', async () => {
    const { hub, send } = await startHub({ messages: 0 });
    const a = listen(hub, 'alice');
    const b = listen(hub, 'bob');
    expect(hub.size).toBe(2);
    hub.remove(a.listener);
    expect(hub.size).toBe(1);
    await send();
    await waitFor(() => b.length === 1, 'seq 1 to bob');
    expect(a).toEqual([]);
  });

  it('does not read the room\'s whole history for a signal that arrives while it reads its starting position', async () => {
    const pubsub = new MemoryPubSub();
    const store = new FakeStore();
    store.append(ROOM, 1000);
    const hub = new RoomHub(ROOM, store.asStore(), pubsub, silentLogger() as unknown as Logger, HEAL_NEVER);
    toStop.push(hub);
    const releaseLastSeq = store.hold('lastSeq');
    const starting = hub.start();
    await waitFor(() => store.callsOf('lastSeq').length === 1, 'the starting read');
    const [m1001] = store.append(ROOM, 1);
    await pubsub.publish(roomTopic(ROOM), added(m1001));
    releaseLastSeq();
    await starting;
    const seen = listen(hub, 'alice');
    const [m1002] = store.append(ROOM, 1);
    await pubsub.publish(roomTopic(ROOM), added(m1002));
    await waitFor(() => seen.length >= 1, 'seq 1002');
    expect(seqsOf(seen)).toEqual([1002]);
    // Messages 1..1000 were there before the hub started; nobody can need them from the hub.
    expect(store.callsOf('range').filter(([, afterSeq]) => (afterSeq as number) < 1000)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// HubRegistry
// ---------------------------------------------------------------------------------------------

describe('HubRegistry', () => {
  function setup() {
    const store = new FakeStore();
    const pubsub = new FakePubSub();
    const log = silentLogger();
    const registry = new HubRegistry(store.asStore(), pubsub, log as unknown as Logger, HEAL_NEVER);
    toClose.push(registry);
    return { store, pubsub, log, registry };
  }

  it('gives every acquirer of a room the same started hub, and each room its own', async () => {
    const { store, pubsub, registry } = setup();
    store.append(ROOM, 4);
    const [a, b] = await Promise.all([registry.acquire(ROOM), registry.acquire(ROOM)]);
    const c = await registry.acquire(ROOM);
    const other = await registry.acquire('room-b');
    expect(b.hub).toBe(a.hub);
    expect(c.hub).toBe(a.hub);
    expect(other.hub).not.toBe(a.hub);
    expect(a.hub.position).toBe(4);
    expect(registry.size).toBe(2);
    expect(store.callsOf('lastSeq')).toEqual([[ROOM], ['room-b']]);
    expect(pubsub.subscribers(ROOM)).toBe(1);
  });

  it('keeps the hub while anyone holds it and removes and stops it when the last releases', async () => {
    const { pubsub, registry } = setup();
    const a = await registry.acquire(ROOM);
    const b = await registry.acquire(ROOM);
    a.release();
    expect(registry.size).toBe(1);
    expect(pubsub.subscribers(ROOM)).toBe(1);
    b.release();
    expect(registry.size).toBe(0);
    await waitFor(() => pubsub.subscribers(ROOM) === 0, 'the unsubscribe');
    const again = await registry.acquire(ROOM);
    expect(again.hub).not.toBe(a.hub);
    expect(pubsub.subscribers(ROOM)).toBe(1);
  });

  it('counts a release only once however often it is called', async () => {
    const { pubsub, registry } = setup();
    const a = await registry.acquire(ROOM);
    const b = await registry.acquire(ROOM);
    a.release();
    a.release();
    a.release();
    expect(registry.size).toBe(1);
    expect(pubsub.subscribers(ROOM)).toBe(1);
    b.release();
    b.release();
    expect(registry.size).toBe(0);
  });

  it('reports the listeners of a room, 0 without a hub', async () => {
    const { registry } = setup();
    expect(registry.listeners(ROOM)).toBe(0);
    const { hub } = await registry.acquire(ROOM);
    hub.add(() => undefined, 'alice');
    hub.add(() => undefined, 'bob');
    expect(registry.listeners(ROOM)).toBe(2);
  });

  it('rejects acquire when the hub cannot start, leaves no hub behind, and starts afresh next time', async () => {
    const { store, pubsub, registry } = setup();
    store.append(ROOM, 3);
    store.down = true;
    const results = await Promise.allSettled([registry.acquire(ROOM), registry.acquire(ROOM)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toEqual(new Error('connect ECONNREFUSED (fake outage)'));
    expect(registry.size).toBe(0);
    await waitFor(() => pubsub.subscribers(ROOM) === 0, 'the failed hub to unsubscribe');
    store.down = false;
    const { hub } = await registry.acquire(ROOM);
    expect(hub.position).toBe(3);
    expect(registry.size).toBe(1);
    expect(pubsub.subscribers(ROOM)).toBe(1);
  });

  it('heals every hub when pub/sub reconnects', async () => {
    const { store, pubsub, registry } = setup();
    store.append(ROOM, 1);
    const a = await registry.acquire(ROOM);
    const b = await registry.acquire('room-b');
    const seenA = listen(a.hub, 'alice');
    const seenB = listen(b.hub, 'alice');
    store.append(ROOM, 2); // signals lost while the bus was down
    store.append('room-b', 1);
    store.removeMember('room-b', 'alice');
    pubsub.reconnect();
    await waitFor(() => seenA.length === 2 && seenB.length === 2, 'the missed tails');
    expect(seqsOf(seenA)).toEqual([2, 3]);
    expect(seenB).toEqual([
      expect.objectContaining({ kind: 'added' }),
      { kind: 'membership', userId: 'alice', member: false },
    ]);
    expect(seqsOf(seenB)).toEqual([1]);
  });

  it('close() stops every hub and stops listening for reconnects', async () => {
    const { store, pubsub, registry } = setup();
    const a = await registry.acquire(ROOM);
    await registry.acquire('room-b');
    expect(pubsub.reconnectListenerCount).toBe(1);
    await registry.close();
    expect(registry.size).toBe(0);
    expect(pubsub.subscribers(ROOM)).toBe(0);
    expect(pubsub.subscribers('room-b')).toBe(0);
    expect(pubsub.reconnectListenerCount).toBe(0);
    const callsBefore = store.calls.length;
    pubsub.reconnect();
    a.release(); // a late release after close is harmless
    expect(store.calls.length).toBe(callsBefore);
    expect(registry.size).toBe(0);
  });
});
