import type { MessageModel } from '../../src/chat/models';
import { AddedSet } from '../../src/chat/added-set';
import { HubRegistry, RoomHub, type HubEvent, type HubListener } from '../../src/chat/room-hub';
import type { Logger } from '../../src/logger';
import { MemoryPubSub } from '../../src/pubsub/memory';
import { activityTopic, roomTopic, type PubSub, type RoomSignal, type Topic } from '../../src/pubsub/types';
import { toWire } from '../../src/pubsub/wire';
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

  readonly connected = true;

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

/** The pub/sub signal of a message at its current change. */
const changed = (message: MessageModel): RoomSignal => ({ kind: 'change', message: toWire(message) });

/** Change events as short labels, `added 4@4` or `updated 1@6` (seq @ change); other events by kind. */
function labels(events: HubEvent[]): string[] {
  return events.map((e) => (e.kind === 'added' || e.kind === 'updated' ? `${e.kind} ${e.message.seq}@${e.change}` : e.kind));
}

/** The seqs of the messages fanned out as added, in order. */
function seqsOf(events: HubEvent[]): number[] {
  return events.flatMap((e) => (e.kind === 'added' ? [e.message.seq] : []));
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

/**
 * A started hub over a room that already holds `messages` messages (at changes 1..messages), on
 * the real in-memory bus unless another is given.
 */
async function startHub(options: { messages?: number; pubsub?: PubSub; onFill?: (count: number) => void } = {}) {
  const store = new FakeStore();
  store.append(ROOM, options.messages ?? 0);
  const pubsub = options.pubsub ?? new MemoryPubSub();
  const log = silentLogger();
  const hub = new RoomHub(ROOM, store.asStore(), pubsub, log as unknown as Logger, options.onFill);
  toStop.push(hub);
  await hub.start();
  const signal = (s: RoomSignal) => pubsub.publish(roomTopic(ROOM), s);
  /** Commits `count` messages; publishes the signal of each unless `publish` is false (a lost signal). */
  const send = async (count = 1, publish = true): Promise<MessageModel[]> => {
    const messages = store.append(ROOM, count);
    if (publish) for (const m of messages) await signal(changed(m));
    return messages;
  };
  /** Commits an edit of message `seq` (its next change); publishes its signal unless `publish` is false. */
  const edit = async (seq: number, publish = true): Promise<MessageModel> => {
    const message = store.change(ROOM, seq);
    if (publish) await signal(changed(message));
    return message;
  };
  return { store, pubsub, log, hub, send, edit, signal };
}

function listen(hub: RoomHub, userId: string): HubEvent[] & { listener: HubListener } {
  const seen = [] as unknown as HubEvent[] & { listener: HubListener };
  const listener: HubListener = (e) => seen.push(e);
  Object.defineProperty(seen, 'listener', { value: listener, enumerable: false });
  hub.add(listener, userId);
  return seen;
}

// ---------------------------------------------------------------------------------------------
// RoomHub: ported from the seq-numbered hub
// ---------------------------------------------------------------------------------------------

describe('RoomHub', () => {
  it('starts at the room\'s head (last change and last seq), subscribing before it reads it', async () => {
    const pubsub = new FakePubSub();
    const store = new FakeStore();
    store.append(ROOM, 7);
    store.change(ROOM, 2);
    store.change(ROOM, 5);
    let subscribedWhenRead: number | undefined;
    store.onCall = (method) => {
      if (method === 'head') subscribedWhenRead = pubsub.subscribers(ROOM);
    };
    const hub = new RoomHub(ROOM, store.asStore(), pubsub, silentLogger() as unknown as Logger);
    toStop.push(hub);
    await hub.start();
    expect(hub.position).toBe(9);
    expect(hub.lastSeq).toBe(7);
    expect(subscribedWhenRead).toBe(1);
  });

  it('fans out the change numbered position + 1 at once, as added, without reading the store', async () => {
    const { hub, store, send } = await startHub({ messages: 3 });
    const seen = listen(hub, 'alice');
    await send();
    await waitFor(() => seen.length === 1, 'change 4');
    expect(labels(seen)).toEqual(['added 4@4']);
    expect(seen[0]).toMatchObject({ kind: 'added', change: 4, message: toWire(store.get(ROOM, 4)) });
    expect(hub.position).toBe(4);
    expect(hub.lastSeq).toBe(4);
    expect(store.callsOf('changes')).toEqual([]);
  });

  it('fans out each change to every listener', async () => {
    const { hub, send } = await startHub({ messages: 1 });
    const a = listen(hub, 'alice');
    const b = listen(hub, 'bob');
    await send(2);
    await waitFor(() => a.length === 2 && b.length === 2, 'both listeners');
    expect(labels(a)).toEqual(['added 2@2', 'added 3@3']);
    expect(labels(b)).toEqual(['added 2@2', 'added 3@3']);
  });

  it('reads the gap from the store before a signal that skips ahead, so listeners see no gap', async () => {
    const { hub, store, send } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    await send(3, false); // changes 2..4: their signals were lost
    await send(); // change 5
    await waitFor(() => seen.length === 4, 'changes 2..5');
    expect(labels(seen)).toEqual(['added 2@2', 'added 3@3', 'added 4@4', 'added 5@5']);
    expect(store.callsOf('changes')).toEqual([[ROOM, 1, 4, 500]]);
    expect(hub.position).toBe(5);
  });

  it('fills a gap larger than one batch in batches, in order', async () => {
    const { hub, store, send } = await startHub();
    const seen = listen(hub, 'alice');
    await send(1200, false);
    await send();
    await waitFor(() => hub.position === 1201, 'position 1201');
    expect(seqsOf(seen)).toEqual(range(1, 1201));
    expect(seen.map((e) => (e as { change: number }).change)).toEqual(range(1, 1201));
    expect(store.callsOf('changes')).toEqual([
      [ROOM, 0, 1200, 500],
      [ROOM, 500, 1200, 500],
      [ROOM, 1000, 1200, 500],
    ]);
  });

  it('drops duplicate and late signals (change <= position), also out of order', async () => {
    const { hub, store, send, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const m1 = store.get(ROOM, 1);
    const [m2, m3, m4, m5] = await send(4, false);
    // 4 arrives first (it waits for 2 and 3, which come within the reorder window), then 2, 3, 4 again, then 1, then 5.
    for (const m of [m4, m2, m3, m4, m1, m5]) await signal(changed(m));
    await waitFor(() => hub.position === 5, 'position 5');
    await settled(hub);
    expect(labels(seen)).toEqual(['added 2@2', 'added 3@3', 'added 4@4', 'added 5@5']);
    expect(store.callsOf('changes')).toEqual([]); // nothing was missing long enough to be read
  });

  it('keeps every state of a message written twice on two instances when their signals cross', async () => {
    const { hub, store, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const first = { ...store.change(ROOM, 1) }; // change 2, published by one instance
    const second = store.change(ROOM, 1); // change 3, published first by the other
    await signal(changed(second));
    await signal(changed(first));
    await waitFor(() => hub.position === 3, 'position 3');
    expect(labels(seen)).toEqual(['updated 1@2', 'updated 1@3']);
    expect(store.callsOf('changes')).toEqual([]);
  });

  it('passes delta and membership signals through unchanged, without moving its position', async () => {
    const { hub, signal, store } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    const m1 = store.get(ROOM, 1);
    const signals: RoomSignal[] = [
      { kind: 'delta', messageId: m1.id, index: 0, text: 'Hel' },
      { kind: 'membership', userId: 'bob', role: 'MEMBER' },
      { kind: 'membership', userId: 'carol', role: null },
    ];
    for (const s of signals) await signal(s);
    await waitFor(() => seen.length === signals.length, 'all signals');
    expect(seen).toEqual(signals);
    expect(hub.position).toBe(2);
  });

  it("passes no typing of a user after the signal of their removal (a setTyping that raced it) until they are a member again; their stop passes", async () => {
    const { hub, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const typing = (userId: string, on: boolean): RoomSignal => ({ kind: 'typing', userId, typing: on });
    const signals: RoomSignal[] = [
      typing('bob', true),
      { kind: 'membership', userId: 'bob', role: null },
      typing('bob', true), // checked before the removal, published after it
      typing('carol', true),
      typing('bob', false),
      { kind: 'membership', userId: 'bob', role: 'MEMBER' },
      typing('bob', true),
    ];
    for (const s of signals) await signal(s);
    await waitFor(() => seen.length === signals.length - 1, 'all signals but one');
    expect(seen).toEqual(signals.filter((_, i) => i !== 2));
  });

  it("passes no membership change older than one it passed for that member (two instances' publishes crossed), nor one twice", async () => {
    const { hub, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const member = (userId: string, role: 'ADMIN' | 'MEMBER' | null, change?: number): RoomSignal => ({
      kind: 'membership',
      userId,
      role,
      ...(change === undefined ? {} : { change }),
    });
    const signals: RoomSignal[] = [
      member('bob', 'ADMIN', 10),
      member('bob', 'ADMIN', 12), // committed after 11, published before it
      member('bob', 'MEMBER', 11), // older than the last passed: not passed
      member('carol', 'MEMBER', 11), // another member: their own order
      member('bob', 'ADMIN', 12), // the same change again: not passed
      member('bob', null), // a timed check's finding (no number): passed
      member('bob', 'MEMBER', 13),
    ];
    for (const s of signals) await signal(s);
    await waitFor(() => seen.length === 5, 'five signals');
    await settled(hub);
    expect(seen).toEqual([signals[0], signals[1], signals[3], signals[5], signals[6]]);
  });

  it('heal() reads and fans out a missed tail', async () => {
    const { hub, store, send } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    await send(3, false);
    hub.heal();
    await waitFor(() => seen.length === 3, 'changes 3..5');
    expect(labels(seen)).toEqual(['added 3@3', 'added 4@4', 'added 5@5']);
    expect(hub.position).toBe(5);
    expect(store.callsOf('changes')).toEqual([[ROOM, 2, 5, 500]]);
  });

  it('heal() with nothing missed reads no changes and fans out nothing', async () => {
    const { hub, store } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    hub.heal();
    await settled(hub);
    expect(store.callsOf('members')).toHaveLength(1);
    expect(seen).toEqual([]);
    expect(store.callsOf('changes')).toEqual([]);
  });

  it('heal() re-signals the removal of listeners whose user is no longer a member', async () => {
    const { hub, store } = await startHub({ messages: 1 });
    const alice1 = listen(hub, 'alice');
    const alice2 = listen(hub, 'alice');
    const bob = listen(hub, 'bob');
    store.removeMember(ROOM, 'bob');
    hub.heal();
    await waitFor(() => bob.length === 1, 'the removal');
    const removal = { kind: 'membership', userId: 'bob', role: null };
    expect(bob).toEqual([removal]);
    expect(alice1).toEqual([removal]); // fan-out goes to all; each feed keeps its own user's
    expect(alice2).toEqual([removal]);
    // One membership question per distinct user.
    expect(store.callsOf('members')).toEqual([[ROOM, ['alice', 'bob']]]);
  });

  it('heal() re-signals a removal before the tail it reads, so what was sent after a lost removal never reaches the removed member', async () => {
    const { hub, store } = await startHub({ messages: 1 });
    const bob = listen(hub, 'bob');
    store.removeMember(ROOM, 'bob'); // its signal was lost (pub/sub down) …
    store.append(ROOM, 2); // … and so were those of the two messages sent after it
    hub.heal();
    await waitFor(() => bob.length === 3, 'the removal and the tail');
    expect(bob[0]).toEqual({ kind: 'membership', userId: 'bob', role: null });
    expect(labels(bob.slice(1))).toEqual(['added 2@2', 'added 3@3']);
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
    expect(labels(seen)).toEqual(['added 2@2', 'added 3@3', 'added 4@4']);
  });

  it('keeps its position through a store error, and a later heal() recovers the tail', async () => {
    const { hub, store, log, send } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    store.down = true;
    await send(2, false);
    await send(); // 4: the gap read fails
    hub.heal(); // fails too (head)
    await waitFor(() => log.warn.mock.calls.length === 2, 'two warnings');
    expect(hub.position).toBe(1);
    store.down = false;
    hub.heal();
    await waitFor(() => hub.position === 4, 'position 4');
    expect(labels(seen)).toEqual(['added 2@2', 'added 3@3', 'added 4@4']);
  });

  it('keeps what it fanned out when a store error cuts a long gap read short, and resumes after it', async () => {
    const { hub, store, send } = await startHub();
    const seen = listen(hub, 'alice');
    let reads = 0;
    store.failIf = (method) => method === 'changes' && ++reads === 2;
    await send(1200, false);
    await send(); // 1201: the second batch fails
    await waitFor(() => reads === 2, 'the failing batch');
    await waitFor(() => hub.position === 500, 'position 500');
    hub.heal();
    await waitFor(() => hub.position === 1201, 'position 1201');
    expect(seqsOf(seen)).toEqual(range(1, 1201));
  });

  it('starts anyway when the subscription fails, and its registry\'s timer heals the room', async () => {
    const pubsub = new FakePubSub();
    pubsub.subscribeError = new Error('redis down');
    const store = new FakeStore();
    store.append(ROOM, 1);
    const log = silentLogger();
    const registry = new HubRegistry(store.asStore(), pubsub, log as unknown as Logger, 10);
    toClose.push(registry);
    const { hub } = await registry.acquire(ROOM);
    expect(log.warn).toHaveBeenCalledWith(expect.objectContaining({ err: 'redis down' }), 'room subscription failed; healing by timer');
    const seen = listen(hub, 'alice');
    store.append(ROOM, 2);
    store.change(ROOM, 1);
    await waitFor(() => seen.length === 3, 'changes 2..4 by timer');
    expect(labels(seen)).toEqual(['added 2@2', 'added 3@3', 'updated 1@4']);
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
    await pubsub.publish(roomTopic(ROOM), changed(store.append(ROOM, 1)[0]));
    hub.heal();
    await settled(hub);
    expect(seen).toEqual([]);
    expect(store.calls.length).toBe(callsBefore);
  });

  it('goes on past a listener that throws: the listeners after it get the change, and the fault is logged', async () => {
    const { hub, log, send } = await startHub({ messages: 0 });
    hub.add(() => {
      throw new TypeError('a faulty listener');
    }, 'alice');
    const b = listen(hub, 'bob');
    await send(2);
    await waitFor(() => b.length === 2, 'both changes to bob');
    expect(labels(b)).toEqual(['added 1@1', 'added 2@2']);
    expect(log.error).toHaveBeenCalledTimes(2);
    expect(log.warn).not.toHaveBeenCalled(); // not taken for a failed read
  });

  it('remove() stops delivery to that listener only', async () => {
    const { hub, send } = await startHub({ messages: 0 });
    const a = listen(hub, 'alice');
    const b = listen(hub, 'bob');
    expect(hub.size).toBe(2);
    hub.remove(a.listener);
    expect(hub.size).toBe(1);
    await send();
    await waitFor(() => b.length === 1, 'change 1 to bob');
    expect(a).toEqual([]);
  });

  it('starts from the head as it was when asked if its subscription is stuck (Redis down), so what is sent while it waits is delivered', async () => {
    const pubsub = new MemoryPubSub();
    jest.spyOn(pubsub, 'subscribe').mockReturnValue(new Promise(() => undefined)); // a subscribe behind a dead Redis
    const store = new FakeStore();
    store.append(ROOM, 3);
    const hub = new RoomHub(ROOM, store.asStore(), pubsub, silentLogger() as unknown as Logger);
    toStop.push(hub);
    const starting = hub.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    store.append(ROOM, 2); // sent while the hub waits for its subscription
    await starting;
    expect(hub.lastSeq).toBe(3);
    const seen = listen(hub, 'alice');
    hub.heal(); // the registry's timer
    await waitFor(() => seen.length === 2, 'the two sent while it waited');
    expect(labels(seen)).toEqual(['added 4@4', 'added 5@5']);
  }, 10_000);

  it('does not read the room\'s whole history for a signal that arrives while it reads its starting position', async () => {
    const pubsub = new MemoryPubSub();
    const store = new FakeStore();
    store.append(ROOM, 1000);
    const hub = new RoomHub(ROOM, store.asStore(), pubsub, silentLogger() as unknown as Logger);
    toStop.push(hub);
    const releaseHead = store.hold('head');
    const starting = hub.start();
    await waitFor(() => store.callsOf('head').length === 1, 'the starting read');
    const [m1001] = store.append(ROOM, 1);
    await pubsub.publish(roomTopic(ROOM), changed(m1001));
    releaseHead();
    await starting;
    const seen = listen(hub, 'alice');
    const [m1002] = store.append(ROOM, 1);
    await pubsub.publish(roomTopic(ROOM), changed(m1002));
    await waitFor(() => seen.length >= 1, 'change 1002');
    expect(labels(seen)).toEqual(['added 1002@1002']);
    // Changes 1..1000 were there before the hub started; nobody can need them from the hub.
    expect(store.callsOf('changes').filter(([, afterChange]) => (afterChange as number) < 1000)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// RoomHub: the change log
// ---------------------------------------------------------------------------------------------

describe('RoomHub: the change log', () => {
  it('fans out a change of a message it already carried as updated, at the change\'s number', async () => {
    const { hub, store, edit } = await startHub({ messages: 3 });
    const seen = listen(hub, 'alice');
    await edit(1);
    await edit(3);
    await waitFor(() => seen.length === 2, 'changes 4 and 5');
    expect(labels(seen)).toEqual(['updated 1@4', 'updated 3@5']);
    expect(seen[0]).toMatchObject({ kind: 'updated', change: 4, message: toWire(store.get(ROOM, 1)) });
    expect(hub.position).toBe(5);
    expect(hub.lastSeq).toBe(3); // changes move position, not lastSeq
  });

  it('fills a gap whose numbers were superseded: a message edited twice appears once, in its latest state, at its latest change', async () => {
    const { hub, store, send, edit, signal } = await startHub({ messages: 1 });
    const seen = listen(hub, 'alice');
    const [m2] = await send(1, false); // change 2
    const firstEdit = await edit(2, false); // change 3
    await send(1, false); // change 4: seq 3
    const latest = await edit(2, false); // change 5: 2 and 3 are superseded
    await send(); // change 6: seq 4, the first signal the hub sees
    await waitFor(() => hub.position === 6, 'position 6');
    expect(labels(seen)).toEqual(['added 3@4', 'added 2@5', 'added 4@6']);
    expect(seen[1]).toMatchObject({ kind: 'added', change: 5, message: toWire(latest) });
    // Late signals of the superseded states are duplicates.
    for (const m of [m2, firstEdit, latest]) await signal(changed(m));
    await settled(hub);
    expect(seen).toHaveLength(3);
    expect(store.callsOf('changes')).toEqual([[ROOM, 1, 5, 500]]);
  });

  it('jumps to the end of a gap after a short batch when its last numbers were superseded', async () => {
    const { hub, store, send, edit } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    for (let i = 0; i < 5; i++) await edit(1, false); // changes 3..7: only 7 holds a row
    await send(1, false); // change 8: seq 3
    for (let i = 0; i < 3; i++) await edit(3, false); // changes 9..11: only 11 holds a row
    hub.heal();
    await waitFor(() => hub.position === 11, 'position 11');
    expect(labels(seen)).toEqual(['updated 1@7', 'added 3@11']);
    expect(store.callsOf('changes')).toEqual([[ROOM, 2, 11, 500]]);
  });

  it('delivers a message inserted and then changed before it saw either once, as added', async () => {
    const { hub, store, send, edit, signal } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    const [m3] = await send(1, false); // change 3, its signal delayed
    await edit(3); // change 4 arrives first: 3 is superseded, nothing to fill
    await waitFor(() => hub.position === 4, 'position 4');
    await signal(changed(m3)); // the delayed insert
    await edit(3); // change 5
    await waitFor(() => hub.position === 5, 'position 5');
    await settled(hub);
    expect(labels(seen)).toEqual(['added 3@4', 'updated 3@5']);
    expect(store.callsOf('changes')).toEqual([[ROOM, 2, 3, 500]]);
  });

  it('fans out a message whose insert was superseded during a fill after later messages, still once as added', async () => {
    const { hub, store, send, edit } = await startHub({ messages: 3 });
    const seen = listen(hub, 'alice');
    const release = store.hold('changes');
    await send(1, false); // change 4: seq 4, lost
    await send(); // change 5: seq 5; the hub reads the gap (4)...
    await waitFor(() => store.callsOf('changes').length === 1, 'the gap read');
    await edit(4); // ...and the edit of seq 4 commits before the read returns
    release();
    await edit(5); // seq 5 was carried: updated
    await send(); // seq 6 at change 8
    await waitFor(() => hub.position === 8, 'position 8');
    expect(labels(seen)).toEqual(['added 5@5', 'added 4@6', 'updated 5@7', 'added 6@8']);
    expect(hub.lastSeq).toBe(6);
  });

  it('tells onFill how many changes each fill read from the database', async () => {
    const onFill = jest.fn();
    const { hub, send, edit } = await startHub({ messages: 1, onFill });
    await send(3, false); // changes 2..4
    await edit(2, false); // change 5 supersedes 2
    await send(); // change 6
    await waitFor(() => hub.position === 6, 'position 6');
    await send(); // change 7: no fill
    await waitFor(() => hub.position === 7, 'position 7');
    expect(onFill.mock.calls).toEqual([[3]]);
  });

  it('heal() reads missed changes of old messages as updated and new ones as added', async () => {
    const { hub, store, edit } = await startHub({ messages: 2 });
    const seen = listen(hub, 'alice');
    await edit(2, false); // change 3
    store.append(ROOM, 1); // change 4
    await edit(1, false); // change 5
    hub.heal();
    await waitFor(() => hub.position === 5, 'position 5');
    expect(labels(seen)).toEqual(['updated 2@3', 'added 3@4', 'updated 1@5']);
  });
});

// ---------------------------------------------------------------------------------------------
// AddedSet
// ---------------------------------------------------------------------------------------------

describe('AddedSet', () => {
  it('answers whether a seq was already carried, counting every seq up to its watermark as carried', () => {
    const set = new AddedSet(3);
    expect([1, 3, 4, 4, 5].map((seq) => set.mark(seq))).toEqual([true, true, false, true, false]);
  });

  it('remembers seqs that arrive early and carries each once when the ones before them arrive', () => {
    const set = new AddedSet(0);
    expect([3, 1, 3, 2, 1, 2, 4].map((seq) => set.mark(seq))).toEqual([false, false, true, false, true, true, false]);
  });

  it('travels in cursors: a snapshot names the watermark and the early seqs, and parses back to the same set', () => {
    const set = new AddedSet(3);
    expect(set.snapshot()).toBe('3');
    set.mark(5);
    set.mark(7);
    expect(set.snapshot()).toBe('3.5.7');
    const back = AddedSet.parse(set.snapshot())!;
    expect([4, 5, 6, 7, 8].map((seq) => back.mark(seq))).toEqual([false, true, false, true, false]);
    for (const bad of ['', 'x', '3..5', '-1', '1.2.x', '99999999999']) expect(AddedSet.parse(bad)).toBeUndefined();
  });

  it('clone() is independent of the original', () => {
    const set = new AddedSet(1);
    set.mark(3);
    const copy = set.clone();
    expect(copy.mark(2)).toBe(false);
    expect(set.mark(3)).toBe(true);
    expect(set.mark(2)).toBe(false);
    expect(copy.mark(3)).toBe(true);
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
    store.change(ROOM, 1);
    const [a, b] = await Promise.all([registry.acquire(ROOM), registry.acquire(ROOM)]);
    const c = await registry.acquire(ROOM);
    const other = await registry.acquire('room-b');
    expect(b.hub).toBe(a.hub);
    expect(c.hub).toBe(a.hub);
    expect(other.hub).not.toBe(a.hub);
    expect(a.hub.position).toBe(5);
    expect(a.hub.lastSeq).toBe(4);
    expect(registry.size).toBe(2);
    expect(store.callsOf('head')).toEqual([[ROOM], [ROOM], ['room-b'], ['room-b']]); // as asked, and once subscribed
    expect(pubsub.subscribers(ROOM)).toBe(1);
  });

  it('checks every hub in one read of heads and one of memberships: a hub behind reads its tail, a listener no longer a member is removed', async () => {
    const { store, log, registry } = setup();
    const rooms = Array.from({ length: 30 }, (_, i) => `room-${i}`);
    const hubs = await Promise.all(rooms.map(async (room) => (await registry.acquire(room)).hub));
    const seen = hubs.map((hub) => listen(hub, 'alice'));
    listen(hubs[3], 'bob');
    store.append('room-7', 2); // two changes whose signals were lost
    store.removeMember('room-3', 'bob'); // a removal whose signal was lost
    const before = store.calls.length;
    await registry.check();
    await waitFor(() => seen[7].length === 2, 'room-7 fills its tail');
    // Two reads for the 30 rooms, and room-7's tail: nothing read per room otherwise.
    expect(store.calls.slice(before).map((c) => c.method).sort()).toEqual(['changes', 'heads', 'memberships']);
    expect(labels(seen[7])).toEqual(['added 1@1', 'added 2@2']);
    await waitFor(() => seen[3].length === 1, 'room-3 re-signals the removal');
    expect(seen[3]).toEqual([{ kind: 'membership', userId: 'bob', role: null }]);
    expect(seen.filter((events, i) => i !== 3 && i !== 7).every((events) => events.length === 0)).toBe(true);
    // A removal and the messages sent after it, all signals lost: the removal goes out first.
    const carol = listen(hubs[5], 'carol');
    store.removeMember('room-5', 'carol');
    store.append('room-5', 2);
    await registry.check();
    await waitFor(() => carol.length === 3, 'room-5 re-signals the removal and fills its tail');
    expect(carol[0]).toEqual({ kind: 'membership', userId: 'carol', role: null });
    expect(labels(carol.slice(1))).toEqual(['added 1@1', 'added 2@2']);
    store.down = true;
    await registry.check(); // a failed read is logged and retried at the next interval
    expect(log.warn).toHaveBeenCalledWith(expect.anything(), 'room hubs could not check the database; retrying at the next interval');
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
    store.change(ROOM, 1);
    store.append('room-b', 1);
    store.removeMember('room-b', 'alice');
    pubsub.reconnect();
    await waitFor(() => seenA.length === 3 && seenB.length === 2, 'the missed tails');
    expect(labels(seenA)).toEqual(['added 2@2', 'added 3@3', 'updated 1@4']);
    // The removal goes out before the tail: with every signal lost, the hub cannot tell which of
    // the tail's messages came before it, and none may reach a removed member after it.
    expect(seenB).toEqual([
      { kind: 'membership', userId: 'alice', role: null },
      expect.objectContaining({ kind: 'added', change: 1 }),
    ]);
  });

  it('holds the changes signalled after a pub/sub reconnect until its check has told the removals it missed', async () => {
    const { store, pubsub, registry } = setup();
    store.append(ROOM, 1);
    const { hub } = await registry.acquire(ROOM);
    const bob = listen(hub, 'bob');
    store.removeMember(ROOM, 'bob'); // its signal was lost while the bus was down
    const [after] = store.append(ROOM, 1); // sent after the removal
    pubsub.reconnect();
    await pubsub.publish(activityTopic, { message: toWire(after) }); // its signal comes before the check has read anything
    await waitFor(() => bob.length === 2, 'the removal and the message');
    expect(bob[0]).toEqual({ kind: 'membership', userId: 'bob', role: null });
    expect(labels(bob.slice(1))).toEqual(['added 2@2']);
    // Held no longer: the next change goes out as it comes.
    const [next] = store.append(ROOM, 1);
    await pubsub.publish(activityTopic, { message: toWire(next) });
    await waitFor(() => bob.length === 3, 'the next message');
    expect(labels(bob.slice(2))).toEqual(['added 3@3']);
  });

  it('lets the changes held after a reconnect go when its check fails (the database is down)', async () => {
    const { store, pubsub, registry } = setup();
    const { hub } = await registry.acquire(ROOM);
    const alice = listen(hub, 'alice');
    store.down = true;
    pubsub.reconnect();
    const [message] = store.append(ROOM, 1);
    await pubsub.publish(activityTopic, { message: toWire(message) });
    await waitFor(() => alice.length === 1, 'the message');
    expect(labels(alice)).toEqual(['added 1@1']);
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
