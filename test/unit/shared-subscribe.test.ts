import { makeExecutableSchema } from '@graphql-tools/schema';
import { parse, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { CATCH_UP_CONCURRENCY, catchUpTurn, LIVE_SLICES_PER_TURN } from '../../src/catch-up';
import { subscribeShared } from '../../src/graphql/shared-subscribe';
import { SHARED_AS, type PushSink } from '../../src/push-stream';
import { waitFor } from '../support/fakes';

/** A full garbage collection (V8's `gc`, made reachable for this test only). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Resolves to what `promise` gave, or to `timeout` when it gives nothing within `ms` (a bound, not a sleep). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);
}

/** A schema whose subscription emits the events pushed by `emit`, counting resolver runs. */
function setup() {
  const listeners = new Set<(e: object) => void>();
  let runs = 0;
  const schema = makeExecutableSchema({
    typeDefs: `type Query { x: Int } type Subscription { tick(from: Int): Tick! } type Tick { n: Int! viewerRole: String mine: Boolean fresh: Int seen: Boolean }`,
    resolvers: {
      Subscription: {
        tick: {
          subscribe: async function* () {
            const queue: object[] = [];
            let wake: (() => void) | undefined;
            const listener = (e: object) => {
              queue.push(e);
              wake?.();
            };
            listeners.add(listener);
            try {
              for (;;) {
                while (queue.length) yield queue.shift();
                await new Promise<void>((r) => (wake = r));
              }
            } finally {
              listeners.delete(listener);
            }
          },
          resolve: (e: { n: number }) => {
            runs++;
            return e;
          },
        },
      },
      Tick: {
        // Reads the viewer directly; nothing declares it.
        viewerRole: (_: unknown, __: unknown, ctx: { viewer: { id: string } }) => ctx.viewer.id,
        // Reads the viewer only through a per-viewer loader.
        mine: (_: unknown, __: unknown, ctx: { loaders: { viewer: { owns: (n: number) => boolean } } }) => ctx.loaders.viewer.owns(1),
        // Reads a loader whose cache must not outlive one event.
        fresh: (_: unknown, __: unknown, ctx: { loaders: { generation: number } }) => ctx.loaders.generation,
        // Reads the viewer for some events only (as `viewerReacted` does for a message with reactions).
        seen: (e: { watched?: boolean }, __: unknown, ctx: { viewer: { id: string } }) => (e.watched ? ctx.viewer.id === 'a' : null),
      },
    },
  });
  return { schema, emit: (e: object) => listeners.forEach((l) => l(e)), runs: () => runs };
}

let generation = 0;
/** A context as the app builds it: the viewer, loaders (per-viewer ones under `viewer`), fresh loaders per event. */
function contextOf(viewer: string) {
  const loaders = () => ({ generation: ++generation, viewer: { owns: () => viewer === 'a' } });
  const byKey = new WeakMap<object, ReturnType<typeof loaders>>();
  const eventLoaders = (key: object) => byKey.get(key) ?? byKey.set(key, loaders()).get(key)!;
  return { viewer: { id: viewer }, loaders: loaders(), newLoaders: loaders, eventLoaders };
}

async function open(schema: ReturnType<typeof setup>['schema'], query: string, viewer: string) {
  const result = await subscribeShared({ schema, document: parse(query), contextValue: contextOf(viewer) });
  return result as AsyncIterableIterator<ExecutionResult>;
}

/** Subscribes `viewer` with `query`, emits `event` once it waits, and ends it: the data of its one result. */
async function resultOf({ schema, emit }: ReturnType<typeof setup>, query: string, viewer: string, event: object) {
  const sub = await open(schema, query, viewer);
  const next = sub.next();
  await new Promise((r) => setImmediate(r));
  emit(event);
  const { value } = await next;
  await sub.return!();
  return value.data;
}

describe('subscribeShared', () => {
  it('executes an event once for every subscriber of the same operation', async () => {
    const { schema, emit, runs } = setup();
    const subs = await Promise.all(['a', 'b', 'c'].map((v) => open(schema, 'subscription { tick { n } }', v)));
    const next = subs.map((s) => s.next());
    await new Promise((r) => setImmediate(r));
    emit({ n: 1 });
    const results = await Promise.all(next);
    expect(results.map((r) => r.value.data)).toEqual([{ tick: { n: 1 } }, { tick: { n: 1 } }, { tick: { n: 1 } }]);
    expect(runs()).toBe(1);
    await Promise.all(subs.map((s) => s.return!()));
  });

  it('learns from the execution that a result reads the viewer, and executes per viewer', async () => {
    const { schema, emit, runs } = setup();
    const subs = await Promise.all(['a', 'b'].map((v) => open(schema, 'subscription { tick { n viewerRole } }', v)));
    const next = subs.map((s) => s.next());
    await new Promise((r) => setImmediate(r));
    emit({ n: 2 });
    const results = await Promise.all(next);
    expect(results.map((r) => r.value.data)).toEqual([{ tick: { n: 2, viewerRole: 'a' } }, { tick: { n: 2, viewerRole: 'b' } }]);
    expect(runs()).toBe(2);
    await Promise.all(subs.map((s) => s.return!()));
  });

  it('tells a per-viewer loader apart too, and keeps executing per viewer for later events', async () => {
    const { schema, emit, runs } = setup();
    const subs = await Promise.all(['a', 'b', 'c'].map((v) => open(schema, 'subscription { tick { n mine } }', v)));
    for (const n of [5, 6]) {
      const next = subs.map((s) => s.next());
      await new Promise((r) => setImmediate(r));
      emit({ n });
      const results = await Promise.all(next);
      expect(results.map((r) => r.value.data)).toEqual([{ tick: { n, mine: true } }, { tick: { n, mine: false } }, { tick: { n, mine: false } }]);
    }
    expect(runs()).toBe(6);
    await Promise.all(subs.map((s) => s.return!()));
  });

  it('shares executions again once an event executed per viewer reads no viewer', async () => {
    const { schema, emit, runs } = setup();
    const subs = await Promise.all(['a', 'b', 'c'].map((v) => open(schema, 'subscription { tick { n seen } }', v)));
    const seen: unknown[] = [];
    const counts: number[] = [];
    for (const event of [{ n: 1 }, { n: 2, watched: true }, { n: 3 }, { n: 4 }, { n: 5, watched: true }]) {
      const next = subs.map((s) => s.next());
      await new Promise((r) => setImmediate(r));
      emit(event);
      seen.push((await Promise.all(next)).map((r) => r.value.data.tick.seen));
      counts.push(runs());
    }
    expect(seen).toEqual([[null, null, null], [true, false, false], [null, null, null], [null, null, null], [true, false, false]]);
    // Shared; read the viewer (once shared, then b's and c's own); each viewer's own, reading none; shared again; as the second.
    expect(counts).toEqual([1, 4, 7, 8, 11]);
    await Promise.all(subs.map((s) => s.return!()));
  });

  it('runs each event with fresh loaders', async () => {
    const { schema, emit } = setup();
    const sub = await open(schema, 'subscription { tick { fresh } }', 'a');
    const seen: number[] = [];
    for (const n of [7, 8]) {
      const next = sub.next();
      await new Promise((r) => setImmediate(r));
      emit({ n });
      seen.push((await next).value.data.tick.fresh);
    }
    expect(seen[1]).toBeGreaterThan(seen[0]);
    await sub.return!();
  });

  it('shares between subscriptions that differ only in the root field\'s arguments (such as where they resumed), not in what the selection reads', async () => {
    const { schema, emit, runs } = setup();
    const query = 'subscription($from: Int, $show: Boolean!) { tick(from: $from) { n @include(if: $show) } }';
    const open2 = (variables: Record<string, unknown>) =>
      subscribeShared({ schema, document: parse(query), variableValues: variables, contextValue: contextOf('a') }) as Promise<AsyncIterableIterator<ExecutionResult>>;
    const subs = await Promise.all([open2({ from: 1, show: true }), open2({ from: 2, show: true }), open2({ from: 1, show: false })]);
    const next = subs.map((s) => s.next());
    await new Promise((r) => setImmediate(r));
    emit({ n: 9 });
    const results = await Promise.all(next);
    expect(results.map((r) => r.value.data)).toEqual([{ tick: { n: 9 } }, { tick: { n: 9 } }, { tick: {} }]);
    expect(runs()).toBe(2);
    await Promise.all(subs.map((s) => s.return!()));
  });

  it('does not share between different selections or variables', async () => {
    const { schema, emit, runs } = setup();
    const a = await open(schema, 'subscription { tick { n } }', 'a');
    const b = await open(schema, 'subscription Other { tick { n } }', 'a');
    const next = [a.next(), b.next()];
    await new Promise((r) => setImmediate(r));
    emit({ n: 3 });
    await Promise.all(next);
    expect(runs()).toBe(2);
    await Promise.all([a.return!(), b.return!()]);
  });

  it('does not give a later subscriber an execution of the same event that failed: it executes the event afresh', async () => {
    const shared = setup();
    const event = { n: 5 }; // one object, as a replayed event is for every feed its window served
    const failing = {
      ...contextOf('a'),
      eventLoaders: () => {
        throw new Error('the loaders could not be made');
      },
    };
    const first = (await subscribeShared({ schema: shared.schema, document: parse('subscription { tick { n } }'), contextValue: failing })) as AsyncIterableIterator<ExecutionResult>;
    const failed = first.next();
    await new Promise((r) => setImmediate(r));
    shared.emit(event);
    await expect(failed).rejects.toThrow('the loaders could not be made');
    expect(await resultOf(shared, 'subscription { tick { n } }', 'b', event)).toEqual({ tick: { n: 5 } });
    expect(shared.runs()).toBe(1); // the failed attempt never reached the resolver
  });

  it('shares an execution that reads no viewer between event objects shared as one (a message replayed by two reads of its window)', async () => {
    const shared = setup();
    const as = {};
    expect(await resultOf(shared, 'subscription { tick { n } }', 'a', { n: 6, [SHARED_AS]: as })).toEqual({ tick: { n: 6 } });
    expect(await resultOf(shared, 'subscription { tick { n } }', 'b', { n: 6, [SHARED_AS]: as })).toEqual({ tick: { n: 6 } });
    expect(shared.runs()).toBe(1);
  });

  it('never shares an execution that read the viewer beyond its own event object, even with the same viewer', async () => {
    const shared = setup();
    const as = {};
    const query = 'subscription { tick { n viewerRole } }';
    expect(await resultOf(shared, query, 'a', { n: 7, [SHARED_AS]: as })).toEqual({ tick: { n: 7, viewerRole: 'a' } });
    // The viewer's own state is read again for another event object of the same message.
    expect(await resultOf(shared, query, 'a', { n: 7, [SHARED_AS]: as })).toEqual({ tick: { n: 7, viewerRole: 'a' } });
    expect(shared.runs()).toBe(2);
  });

  it('ends the source when the subscriber returns', async () => {
    const { schema, emit } = setup();
    const sub = await open(schema, 'subscription { tick { n } }', 'a');
    const pending = sub.next();
    await new Promise((r) => setImmediate(r));
    emit({ n: 4 });
    await pending;
    expect(await sub.return!()).toEqual({ done: true, value: undefined });
  });

  it('fails the stream with SERVICE_UNAVAILABLE when the database cannot serve its start, and returns any other refusal as a result', async () => {
    const schema = makeExecutableSchema({
      typeDefs: `type Query { x: Int } type Subscription { stalled: Int broken: Int }`,
      resolvers: {
        Subscription: {
          stalled: { subscribe: () => Promise.reject(new Error('timeout exceeded when trying to connect')) },
          broken: { subscribe: () => Promise.reject(new Error('not a member')) },
        },
      },
    });
    const stalled = (await subscribeShared({ schema, document: parse('subscription { stalled }'), contextValue: contextOf('a') })) as AsyncIterableIterator<ExecutionResult>;
    await expect(stalled.next()).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
    const broken = (await subscribeShared({ schema, document: parse('subscription { broken }'), contextValue: contextOf('a') })) as ExecutionResult;
    expect(broken.errors?.[0].message).toBe('not a member');
  });

  it('answers a subscription whose start throws (a fault of graphql-js or of this server) with an error result, not a rejection that would close the socket', async () => {
    const { schema } = setup();
    // Validation refuses a skipped root field (limits.ts); were one to get through, graphql-js 16 throws a TypeError.
    const result = (await subscribeShared({ schema, document: parse('subscription { tick @skip(if: true) { n } }'), contextValue: contextOf('a') })) as ExecutionResult;
    expect(result.errors).toHaveLength(1);
    expect(result.errors![0].originalError).toBeInstanceOf(TypeError);
    expect(result.errors![0].extensions.code).toBeUndefined(); // masked as INTERNAL_SERVER_ERROR by the transport
  });

  describe('with a frame sink (graphql-ws over a WebSocket)', () => {
    /** Opens a subscription whose frames are collected; `until(n)` waits for n of them. */
    async function openWithFrames(schema: ReturnType<typeof setup>['schema'], query: string, viewer: string, id: string) {
      const frames: string[] = [];
      let waiting: { n: number; resolve: () => void } | undefined;
      const frameSink = {
        id,
        write: (prefix: Buffer, rests: readonly Buffer[]) => {
          for (const rest of rests) frames.push(Buffer.concat([prefix, rest]).toString());
          if (waiting && frames.length >= waiting.n) waiting.resolve();
          return undefined;
        },
        mask: (result: ExecutionResult) => ({ ...result, errors: result.errors!.map(() => ({ message: 'masked' })) }),
      };
      const contextValue = { ...contextOf(viewer), frames: frameSink };
      const iterator = (await subscribeShared({ schema, document: parse(query), contextValue })) as AsyncIterableIterator<ExecutionResult>;
      const until = (n: number) => (frames.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { n, resolve })));
      return { frames, iterator, until };
    }

    it('writes next frames as graphql-ws would, the shared payload serialised once, and ends on return', async () => {
      const { schema, emit, runs } = setup();
      const subs = await Promise.all(['a', 'b'].map((v, i) => openWithFrames(schema, 'subscription { tick { n } }', v, `op-${i}`)));
      const ended = subs.map((s) => s.iterator.next());
      await new Promise((r) => setImmediate(r));
      emit({ n: 1 });
      emit({ n: 2 });
      await Promise.all(subs.map((s) => s.until(2)));
      subs.forEach(({ frames }, i) => {
        expect(frames).toEqual([1, 2].map((n) => JSON.stringify({ id: `op-${i}`, type: 'next', payload: { data: { tick: { n } } } })));
      });
      expect(runs()).toBe(2);
      // This source (unlike a feed) takes return() only at a yield: one more event lets it end.
      const returned = Promise.all(subs.map((s) => s.iterator.return!()));
      emit({ n: 3 });
      await returned;
      expect(await Promise.all(ended)).toEqual([{ done: true, value: undefined }, { done: true, value: undefined }]);
      expect(subs.map((s) => s.frames.length)).toEqual([2, 2]);
    });

    it('writes each viewer its own result when the execution read the viewer', async () => {
      const { schema, emit } = setup();
      const subs = await Promise.all(['a', 'b'].map((v) => openWithFrames(schema, 'subscription { tick { n viewerRole } }', v, '1')));
      void subs.map((s) => s.iterator.next());
      await new Promise((r) => setImmediate(r));
      emit({ n: 9 });
      await Promise.all(subs.map((s) => s.until(1)));
      expect(subs.map((s) => JSON.parse(s.frames[0]).payload.data.tick.viewerRole)).toEqual(['a', 'b']);
      const returned = Promise.all(subs.map((s) => s.iterator.return!()));
      emit({ n: 10 });
      await returned;
    });
  });

  describe('with a source that pushes (the room feeds) and a frame sink: live events through lanes', () => {
    /** A schema whose `tick` source pushes each emitted event to every subscriber synchronously, as a room hub does; `Tick.late` waits for the event's gate. */
    function pushSetup() {
      const sinks = new Set<PushSink<object>>();
      const channel = {};
      let runs = 0;
      const source = () => {
        let stopped = false;
        return {
          [Symbol.asyncIterator]: () => ({ next: () => new Promise<never>(() => undefined) }),
          startPush: (sink: PushSink<object>) => {
            sinks.add(sink);
            return () => {
              if (stopped) return;
              stopped = true;
              sinks.delete(sink);
              sink.end();
            };
          },
        };
      };
      const schema = makeExecutableSchema({
        typeDefs: `type Query { x: Int } type Subscription { tick: Tick! } type Tick { n: Int! late: Int viewerRole: String loads: Int seen: Boolean }`,
        resolvers: {
          Subscription: {
            tick: {
              subscribe: source,
              resolve: (e: object) => {
                runs++;
                return e;
              },
            },
          },
          Tick: {
            late: async (e: { n: number; gate?: Promise<void>; unavailable?: number }) => {
              await e.gate;
              // The database cannot serve this event for its first `unavailable` attempts (a pool timeout).
              if (e.unavailable && e.unavailable-- > 0) throw new Error('timeout exceeded when trying to connect');
              return e.n;
            },
            viewerRole: (_: unknown, __: unknown, ctx: { viewer: { id: string } }) => ctx.viewer.id,
            seen: (e: { watched?: boolean }, __: unknown, ctx: { viewer: { id: string } }) => (e.watched ? ctx.viewer.id === 'a' : null),
            // Which loaders the execution read with (executions that load together show the same).
            loads: (_: unknown, __: unknown, ctx: { loaders: { generation: number } }) => ctx.loaders.generation,
          },
        },
      });
      /** Hands `event` to every subscriber, as one fan-out; returns what each sink answered. */
      const emit = (event: object) => [...sinks].map((sink) => sink.live(event, channel));
      return { schema, emit, runs: () => runs, sinks };
    }

    /**
     * `flushOf`: what a write answers, as `SocketFrames.write` does: a promise of the frames'
     * going out while the socket is congested, undefined otherwise.
     */
    async function openPushed(
      schema: GraphQLSchema,
      query: string,
      viewer: string,
      id: string,
      flushOf: () => Promise<void> | undefined = () => undefined,
      onWrite: () => void = () => undefined,
    ) {
      const frames: string[] = [];
      const writes: number[] = [];
      const waiters: { n: number; resolve: () => void }[] = [];
      const frameSink = {
        id,
        write: (prefix: Buffer, rests: readonly Buffer[]) => {
          onWrite();
          writes.push(rests.length);
          for (const rest of rests) frames.push(Buffer.concat([prefix, rest]).toString());
          for (const w of waiters.filter((w) => frames.length >= w.n)) w.resolve();
          return flushOf();
        },
        mask: (result: ExecutionResult) => ({ ...result, errors: result.errors!.map((e) => ({ message: `masked: ${e.message}` })) }),
      };
      const iterator = (await subscribeShared({ schema, document: parse(query), contextValue: { ...contextOf(viewer), frames: frameSink } })) as AsyncIterableIterator<ExecutionResult>;
      const until = (n: number) => (frames.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })));
      const payloads = () => frames.map((f) => JSON.parse(f) as { id: string; type: string; payload: { data: { tick: Record<string, unknown> } } });
      return { frames, writes, iterator, until, payloads };
    }

    const gate = () => {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      return { promise, open };
    };

    it('executes each live event once for 200 subscribers and writes their frames in event order when a later execution settles first', async () => {
      const { schema, emit, runs } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 200 }, (_, i) => openPushed(schema, 'subscription { tick { n late } }', `v${i % 5}`, `op-${i}`)));
      const first = gate();
      const answers = [...emit({ n: 1, gate: first.promise }), ...emit({ n: 2 }), ...emit({ n: 3 })];
      expect(answers.every((a) => a === undefined)).toBe(true); // nobody asked the source to wait
      await new Promise((r) => setTimeout(r, 20));
      expect(subs.every((s) => s.frames.length === 0)).toBe(true); // 2 and 3 are ready, but 1 is not: nothing goes out of order
      first.open();
      await Promise.all(subs.map((s) => s.until(3)));
      subs.forEach((s, i) => {
        expect(s.frames).toEqual([1, 2, 3].map((n) => JSON.stringify({ id: `op-${i}`, type: 'next', payload: { data: { tick: { n, late: n } } } })));
      });
      expect(runs()).toBe(3);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('writes the events that settle within one turn of the event loop to each subscriber in one write', async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(['a', 'b'].map((v, i) => openPushed(schema, 'subscription { tick { n } }', v, `op-${i}`)));
      for (const n of [1, 2, 3]) emit({ n });
      await Promise.all(subs.map((s) => s.until(3)));
      expect(subs.map((s) => s.writes)).toEqual([[3], [3]]);
      expect(subs[1].payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3]);
      emit({ n: 4 });
      await Promise.all(subs.map((s) => s.until(4)));
      expect(subs.map((s) => s.writes)).toEqual([[3, 1], [3, 1]]);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it("keeps neither a lane nor the subscribers of its last events once they are written, while the channel lives on", async () => {
      const { schema, emit } = pushSetup();
      const stays = await openPushed(schema, 'subscription { tick { n } }', 'a', 'op-stays'); // the room stays subscribed
      // Each of another shape (its own lane), takes one event, completes. (In a function of its
      // own: the test's suspended frame would hold the last one.)
      const openTakeOneAndEnd = async (i: number) => {
        const sub = await openPushed(schema, `subscription { tick { n again${i}: n } }`, 'a', `op-${i}`);
        emit({ n: i });
        await sub.until(1);
        await sub.iterator.return!();
        return new WeakRef(sub.iterator);
      };
      const gone: Array<WeakRef<object>> = [];
      for (let i = 0; i < 20; i++) gone.push(await openTakeOneAndEnd(i));
      await stays.until(20);
      await new Promise((r) => setTimeout(r, 10));
      collectGarbage();
      expect(gone.flatMap((ref, i) => (ref.deref() === undefined ? [] : [i]))).toEqual([]); // before: each held by its lane's last batch
      await stays.iterator.return!();
    });

    it('writes a large fan-out in slices, letting other work run between them', async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 1200 }, (_, i) => openPushed(schema, 'subscription { tick { n } }', 'a', `op-${i}`)));
      emit({ n: 1 });
      await new Promise((r) => setTimeout(r, 0)); // the execution settles; the first slice is due
      const writtenWhenOtherWorkRan = await new Promise<number>((resolve) => setImmediate(() => resolve(subs.filter((s) => s.frames.length > 0).length)));
      expect(writtenWhenOtherWorkRan).toBeGreaterThan(0);
      expect(writtenWhenOtherWorkRan).toBeLessThan(1200);
      await Promise.all(subs.map((s) => s.until(1)));
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it(`lets catch-up turns start only one per ${LIVE_SLICES_PER_TURN} slices of a large fan-out, between its slices`, async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 1200 }, (_, i) => openPushed(schema, 'subscription { tick { n } }', 'a', `op-${i}`)));
      emit({ n: 1 });
      await new Promise((r) => setTimeout(r, 0)); // the execution settles; the write-out is under way
      // Written subscribers when each turn started: 1,200 are written in 19 slices of 64.
      const writtenAtTurns = await Promise.all(
        Array.from({ length: CATCH_UP_CONCURRENCY }, () => catchUpTurn(async () => subs.filter((s) => s.frames.length > 0).length)),
      );
      for (let i = 1; i < writtenAtTurns.length; i++) expect(writtenAtTurns[i] - writtenAtTurns[i - 1]).toBeGreaterThanOrEqual(64 * LIVE_SLICES_PER_TURN);
      expect(writtenAtTurns[writtenAtTurns.length - 1]).toBeLessThan(1200); // they ran while it was written
      await Promise.all(subs.map((s) => s.until(1)));
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('writes the events ready together to each subscriber of a large fan-out in one write, in event order, across slices', async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 700 }, (_, i) => openPushed(schema, 'subscription { tick { n } }', 'a', `op-${i}`)));
      for (const n of [1, 2, 3]) emit({ n });
      await Promise.all(subs.map((s) => s.until(3)));
      expect(new Set(subs.map((s) => s.writes.join()))).toEqual(new Set(['3']));
      for (const s of subs) expect(s.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3]);
      // One more subscriber: the next events' subscribers differ from the earlier ones', and each keeps its order.
      subs.push(await openPushed(schema, 'subscription { tick { n } }', 'a', 'op-late'));
      for (const n of [4, 5]) emit({ n });
      await Promise.all(subs.map((s) => s.until(s === subs[700] ? 2 : 5)));
      expect(subs[700].payloads().map((p) => p.payload.data.tick.n)).toEqual([4, 5]);
      for (const s of subs.slice(0, 700)) expect(s.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3, 4, 5]);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('writes fewer subscribers per slice when each takes many events at once, each still in one write', async () => {
      const { schema, emit } = pushSetup();
      // The writes of one slice run in one go: a microtask queued at a slice's first write counts them.
      const slices: number[] = [];
      let current = 0;
      const onWrite = () => {
        if (current++ === 0) queueMicrotask(() => (slices.push(current), (current = 0)));
      };
      const subs = await Promise.all(Array.from({ length: 200 }, (_, i) => openPushed(schema, 'subscription { tick { n } }', 'a', `op-${i}`, () => undefined, onWrite)));
      for (let n = 1; n <= 40; n++) emit({ n }); // 8,000 frames ready at once
      await Promise.all(subs.map((s) => s.until(40)));
      expect(slices.length).toBeGreaterThan(1);
      expect(Math.max(...slices) * 40).toBeLessThanOrEqual(2048 + 40);
      for (const s of subs) {
        expect(s.writes).toEqual([40]);
        expect(s.payloads().map((p) => p.payload.data.tick.n)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      }
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it("writes each viewer's own results of events ready together in one write per subscriber, in order", async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 200 }, (_, i) => openPushed(schema, 'subscription { tick { n viewerRole } }', i % 2 ? 'b' : 'a', `op-${i}`)));
      emit({ n: 1 }); // learns that results depend on the viewer
      await Promise.all(subs.map((s) => s.until(1)));
      const before = subs.map((s) => s.writes.length);
      for (const n of [2, 3, 4]) emit({ n }); // each viewer's executions: 2a 2b 3a 3b 4a 4b
      await Promise.all(subs.map((s) => s.until(4)));
      subs.forEach((s, i) => {
        expect(s.writes.slice(before[i])).toEqual([3]);
        expect(s.payloads().map((p) => `${p.payload.data.tick.n}${p.payload.data.tick.viewerRole}`)).toEqual([1, 2, 3, 4].map((n) => `${n}${i % 2 ? 'b' : 'a'}`));
      });
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('writes 200 subscribers of two viewers their own result of an event that read the viewer, and shares the events after once one reads none', async () => {
      const { schema, emit, runs } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 200 }, (_, i) => openPushed(schema, 'subscription { tick { n seen } }', i % 2 ? 'b' : 'a', `op-${i}`)));
      const counts: number[] = [];
      for (const [n, event] of [{ n: 1, watched: true }, { n: 2 }, { n: 3 }, { n: 4, watched: true }, { n: 5 }].entries()) {
        emit(event);
        await Promise.all(subs.map((s) => s.until(n + 1)));
        counts.push(runs());
      }
      subs.forEach((s, i) => expect(s.payloads().map((p) => p.payload.data.tick.seen)).toEqual([i % 2 ? false : true, null, null, i % 2 ? false : true, null]));
      // Shared, then b's own; a's and b's own, reading none; shared; shared, then b's own; a's and b's own.
      expect(counts).toEqual([2, 4, 5, 7, 9]);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('keeps each subscriber\'s order when the events ready together went to different subscribers (one joined, then left)', async () => {
      const { schema, emit } = pushSetup();
      const query = 'subscription { tick { n late } }';
      const subs = await Promise.all(['s0', 's1'].map((id) => openPushed(schema, query, 'a', id)));
      const first = gate();
      emit({ n: 1, gate: first.promise }); // to s0 s1; 2 and 3 settle first and wait behind it
      const joined = await openPushed(schema, query, 'a', 's2');
      emit({ n: 2 }); // to s0 s1 s2
      await joined.iterator.return!();
      emit({ n: 3 }); // to s0 s1 again: its subscribers are 1's, but 2 (between them) has them too
      first.open();
      await Promise.all(subs.map((s) => s.until(3)));
      for (const s of subs) expect(s.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3]);
      expect(joined.frames).toEqual([]);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('writes each viewer its own live result once an execution read the viewer, in order, executing once per viewer from then on', async () => {
      const { schema, emit, runs } = pushSetup();
      const subs = await Promise.all(['a', 'b', 'a', 'c'].map((v, i) => openPushed(schema, 'subscription { tick { n viewerRole } }', v, `op-${i}`)));
      emit({ n: 1 });
      emit({ n: 2 });
      emit({ n: 3 });
      await Promise.all(subs.map((s) => s.until(3)));
      expect(subs.map((s) => s.payloads().map((p) => `${p.payload.data.tick.n}${p.payload.data.tick.viewerRole}`))).toEqual([
        ['1a', '2a', '3a'],
        ['1b', '2b', '3b'],
        ['1a', '2a', '3a'],
        ['1c', '2c', '3c'],
      ]);
      // The first event ran once shared, then once for each other viewer; later ones once per viewer (but 2 and 3 were already shared when it was learned).
      expect(runs()).toBeLessThanOrEqual(3 + 2 + 3 * 3);
      emit({ n: 4 });
      await Promise.all(subs.map((s) => s.until(4)));
      expect(runs()).toBeLessThanOrEqual(3 + 2 + 3 * 3 + 3);
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('asks the source to wait once a write finds the socket congested, until the frames have gone out', async () => {
      const { schema, emit } = pushSetup();
      let flush: ReturnType<typeof gate> | undefined;
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op', () => flush?.promise);
      const slow = gate();
      expect(emit({ n: 1, gate: slow.promise })).toEqual([undefined]);
      flush = gate(); // the socket is congested from now on: event 1's write finds it so
      expect(emit({ n: 2 })).toEqual([undefined]); // no write has found it yet
      slow.open();
      await sub.until(2);
      const [wait] = emit({ n: 3 });
      expect(wait).toBeInstanceOf(Promise);
      expect(await within(wait!, 50)).toBe('timeout'); // event 3 is written, but nothing has gone out
      const congested = flush;
      flush = undefined;
      congested.open();
      await wait;
      expect(emit({ n: 4 })).toEqual([undefined]); // gone out: live again
      await sub.until(4);
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3, 4]);
      await sub.iterator.return!();
    });

    it('takes live events at once again when a congested write has gone out before the next event', async () => {
      const { schema, emit } = pushSetup();
      let flush: ReturnType<typeof gate> | undefined = gate();
      const sub = await openPushed(schema, 'subscription { tick { n } }', 'a', 'op', () => flush?.promise);
      expect(emit({ n: 1 })).toEqual([undefined]);
      await sub.until(1);
      const congested = flush!;
      flush = undefined;
      congested.open();
      await new Promise((r) => setImmediate(r));
      expect(emit({ n: 2 })).toEqual([undefined]);
      await sub.until(2);
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2]);
      await sub.iterator.return!();
    });

    it('writes nothing after return(), and ends the stream', async () => {
      const { schema, emit, sinks } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const ended = sub.iterator.next();
      const slow = gate();
      emit({ n: 1, gate: slow.promise });
      await sub.iterator.return!();
      slow.open();
      await new Promise((r) => setTimeout(r, 10));
      expect(sub.frames).toEqual([]);
      expect(sinks.size).toBe(0);
      expect(await ended).toEqual({ done: true, value: undefined });
    });

    it('executes an event again while the database cannot serve it, and delivers it whole, in order', async () => {
      const { schema, emit, runs } = pushSetup();
      const subs = await Promise.all(['a', 'b'].map((v, i) => openPushed(schema, 'subscription { tick { n late } }', v, `op-${i}`)));
      emit({ n: 1, unavailable: 2 });
      emit({ n: 2 });
      await Promise.all(subs.map((s) => s.until(2)));
      for (const s of subs) expect(s.payloads().map((p) => p.payload)).toEqual([{ data: { tick: { n: 1, late: 1 } } }, { data: { tick: { n: 2, late: 2 } } }]);
      expect(runs()).toBe(4); // event 1 three times (once for both subscribers each time), event 2 once
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('ends the subscription with SERVICE_UNAVAILABLE when the database cannot serve an event for seconds, delivering nothing in its place or after it', async () => {
      const { schema, emit } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const ended = sub.iterator.next();
      emit({ n: 1 });
      await sub.until(1);
      emit({ n: 2, unavailable: 99 });
      emit({ n: 3 });
      await expect(ended).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1]);
    }, 15_000);

    it('asks the source to wait once 256 live events are unwritten, and lets it go on once they are written', async () => {
      const { schema, emit } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const stall = gate();
      const answers = Array.from({ length: 256 }, (_, i) => emit({ n: i + 1, gate: stall.promise })[0]);
      expect(answers.slice(0, 255).every((a) => a === undefined)).toBe(true);
      expect(answers[255]).toBeInstanceOf(Promise); // the 256th: the feed buffers from here on
      expect(await within(answers[255]!, 50)).toBe('timeout');
      stall.open();
      await answers[255];
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual(Array.from({ length: 256 }, (_, i) => i + 1));
      await sub.iterator.return!();
    });

    it('asks every subscriber of a lane to wait once its oldest execution has waited over a second (the database stalls), and lets them go on once written', async () => {
      const { schema, emit } = pushSetup();
      const subs = await Promise.all(['a', 'b'].map((v, i) => openPushed(schema, 'subscription { tick { n late } }', v, `op-${i}`)));
      const stall = gate();
      // The lane reads its clock as each execution is made; it moves here by hand, so a busy machine's late timers cannot age them.
      let now = performance.now();
      const clock = jest.spyOn(performance, 'now').mockImplementation(() => now);
      let waits: unknown[] = [];
      try {
        expect(emit({ n: 1, gate: stall.promise })).toEqual([undefined, undefined]);
        now += 500;
        expect(emit({ n: 2, gate: stall.promise })).toEqual([undefined, undefined]); // half a second: not yet
        now += 600;
        waits = emit({ n: 3, gate: stall.promise });
      } finally {
        clock.mockRestore();
        stall.open();
      }
      expect(waits.length).toBe(2);
      expect(waits.every((w) => w instanceof Promise)).toBe(true);
      await Promise.all(waits);
      for (const sub of subs) expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3]);
      expect(emit({ n: 4 })).toEqual([undefined, undefined]); // settled: live again
      await Promise.all(subs.map((s) => s.until(4)));
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('executes the replay groups of many subscriptions a few at a time (the instance\'s catch-up turns), each subscription\'s in order', async () => {
      const { schema, sinks } = pushSetup();
      const subs = await Promise.all(Array.from({ length: 20 }, (_, i) => openPushed(schema, 'subscription { tick { n late } }', 'a', `op-${i}`)));
      const stall = gate();
      let started = 0; // executions that reached the database (read their gate)
      const event = (n: number) => ({
        n,
        get gate() {
          started++;
          return stall.promise;
        },
      });
      for (const sink of sinks) for (let n = 1; n <= 64; n++) void sink.replay(event(n)); // two groups each
      try {
        // 6 groups of 32 run; the other 34 wait their turn (a busy machine may take a while to start them).
        await waitFor(() => started >= CATCH_UP_CONCURRENCY * 32, 'the first groups to start', 10_000);
        await new Promise((r) => setTimeout(r, 50));
        expect(started).toBe(CATCH_UP_CONCURRENCY * 32);
      } finally {
        stall.open(); // the turns are the instance's: a failure here must not hold them for the next tests
      }
      await Promise.all(subs.map((s) => s.until(64)));
      for (const sub of subs) expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
      await Promise.all(subs.map((s) => s.iterator.return!()));
    });

    it('replays in groups: the executions of a group run and load together, and its frames go out in order in one write', async () => {
      const { schema, sinks } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late loads } }', 'a', 'op');
      const [sink] = sinks;
      const stall = gate();
      const answers = Array.from({ length: 100 }, (_, i) => sink.replay({ n: i + 1, gate: stall.promise }));
      // The first 31 are taken at once; the 32nd fills the group and waits for its write.
      expect(await within(Promise.all(answers.slice(0, 31)), 5000)).not.toBe('timeout');
      expect(await within(answers[31], 50)).toBe('timeout');
      stall.open();
      await Promise.all(answers);
      await sub.until(100);
      const ticks = sub.payloads().map((p) => p.payload.data.tick);
      expect(ticks.map((t) => t.n)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
      expect(sub.writes).toEqual([32, 32, 32, 4]);
      for (const group of [ticks.slice(0, 32), ticks.slice(32, 64), ticks.slice(64, 96), ticks.slice(96)]) {
        expect(new Set(group.map((t) => t.loads)).size).toBe(1);
      }
      expect(ticks[32].loads).not.toBe(ticks[0].loads);
      await sub.iterator.return!();
    });

    it('writes live events that come while replayed frames are unwritten after them, in order', async () => {
      const { schema, emit, sinks } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const [sink] = sinks;
      const stall = gate();
      const replayed = [1, 2, 3].map((n) => sink.replay({ n, gate: stall.promise }));
      expect(emit({ n: 4 })).toEqual([undefined]);
      expect(emit({ n: 5 })).toEqual([undefined]);
      await new Promise((r) => setImmediate(r));
      expect(sub.frames).toEqual([]);
      stall.open();
      await Promise.all(replayed);
      await sub.until(5);
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3, 4, 5]);
      emit({ n: 6 }); // all written: back on the lane
      await sub.until(6);
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1, 2, 3, 4, 5, 6]);
      await sub.iterator.return!();
    });

    it('ends the stream once its replayed frames are written', async () => {
      const { schema, sinks } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const [sink] = sinks;
      const ended = sub.iterator.next();
      const stall = gate();
      void sink.replay({ n: 1, gate: stall.promise });
      sink.end();
      expect(await within(ended, 50)).toBe('timeout');
      stall.open();
      expect(await ended).toEqual({ done: true, value: undefined });
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1]);
    });

    it('ends the stream with SERVICE_UNAVAILABLE after the replayed frames before an event the database cannot serve, writing nothing after it', async () => {
      const { schema, sinks } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const [sink] = sinks;
      const ended = sub.iterator.next();
      for (const event of [{ n: 1 }, { n: 2, unavailable: 99 }, { n: 3 }]) void sink.replay(event);
      await expect(ended).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
      expect(sub.payloads().map((p) => p.payload.data.tick.n)).toEqual([1]);
      expect(sinks.size).toBe(0); // the source was stopped
    }, 15_000);

    it('masks a live result with errors for each subscriber', async () => {
      const { schema, emit } = pushSetup();
      const sub = await openPushed(schema, 'subscription { tick { n late } }', 'a', 'op');
      const failing = { n: 1, gate: Promise.reject(new Error('database said no')) };
      failing.gate.catch(() => undefined);
      emit(failing);
      await sub.until(1);
      expect(JSON.parse(sub.frames[0]).payload.errors).toEqual([{ message: 'masked: database said no' }]);
      await sub.iterator.return!();
    });
  });
});
