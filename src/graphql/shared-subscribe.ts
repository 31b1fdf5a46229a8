import { mapAsyncIterator } from '@graphql-tools/utils';
import { createSourceEventStream, execute, GraphQLError, Kind, print, visit, type ASTNode, type DocumentNode, type ExecutionArgs, type ExecutionResult, type FormattedExecutionResult } from 'graphql';
import { setTimeout as sleep } from 'node:timers/promises';
import { LRUCache } from 'lru-cache';
import { catchUpTurn, liveSliceWritten, liveWriteOut, nextTurn } from '../catch-up';
import { AppError, ErrorCode, isUnavailable } from '../errors';
import { isPushStream, sharedAs, type PushSink } from '../push-stream';
import type { GraphQLContext } from './context';
import { confirmViewer } from './viewer';

/**
 * Where a subscription's results go when it runs on a WebSocket: graphql-ws `next` frames written
 * straight to the socket, in order with every other frame of that socket.
 */
export interface FrameSink {
  /** The graphql-ws operation id, spliced into each frame. */
  id: string;
  /**
   * Writes one frame per element of `rests`, message i being `prefix` followed by `rests[i]`
   * (UTF-8 JSON), in one write, reading `rests` before it returns (callers reuse the array); does
   * nothing once the socket is closed. While the socket holds
   * more than it should unsent, a promise that settles once they have gone to the kernel (or the
   * socket closed).
   */
  write(prefix: Buffer, rests: readonly Buffer[]): Promise<void> | undefined;
  /** A result with errors as the client may see it (masked as over HTTP). */
  mask(result: ExecutionResult, ctx: GraphQLContext): FormattedExecutionResult;
}

/** One execution of an event for a share key, and whether it read the viewer. */
interface Execution {
  /** The event object it ran for. */
  event: object;
  result: Promise<ExecutionResult>;
  /** Whose context it ran with. */
  viewerId: string;
  /** Set while it runs: true once a resolver read `ctx.viewer` or a per-viewer loader. */
  readViewer: boolean;
  /** Once it has settled: its result, or why it failed. */
  settled?: { result: ExecutionResult } | { error: unknown };
}

/** Executions per event object (the hub fans one object out to every feed; replayed events: see `sharedAs`) and per share key. */
const shared = new WeakMap<object, Map<string, Execution>>();
/** Each shared result without errors as the rest of a `next` frame after its prefix (`<payload JSON>}`), made once for every subscriber that gets it. */
const serialised = new WeakMap<ExecutionResult, Buffer>();

/**
 * `subscribe` for graphql-ws: like graphql-js's, but an event that reaches many subscribers of the
 * same operation (same document, and the same values of the variables its selection reads) is
 * executed once and every one of them gets that result. Whether a result depends on the viewer is
 * not declared anywhere: it is learned from the execution itself — a resolver that reads
 * `ctx.viewer` or a loader under `ctx.loaders.viewer` marks it — so a new viewer-dependent field
 * cannot be missed. Such an operation is executed per viewer from then on, until an event of it reads
 * no viewer (a message without reactions, for `viewerReacted`); then it is shared again. Each event runs with
 * fresh loaders, so what it shows is current, shared by the executions of that event, so the
 * per-viewer executions of one event read the database together.
 *
 * With a `FrameSink` in the context (graphql-ws over `ws`, see `src/http/websocket.ts`) the results
 * do not go back through graphql-ws: each is serialised once and written as `next` frames with each
 * subscription's id spliced in (`FrameTarget`); graphql-ws only sees the stream end. A source that
 * can push (`PushStream`: the room feeds) hands its live events over inside the hub's fan-out, and
 * a `Lane` writes each execution's frames to all its subscribers at once: no iterator, promise or
 * queue per subscriber between an event and its socket writes.
 */
export async function subscribeShared(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const ctx = args.contextValue as GraphQLContext;
  // Nothing is read before the socket's session is checked (an ended one subscribes signed out,
  // and its socket closes); a database that cannot check it cannot start the subscription either.
  if (ctx.pendingViewer && (await confirmViewer(ctx).then(() => false, () => true))) return failing(unavailable());
  let source: Awaited<ReturnType<typeof createSourceEventStream>>;
  try {
    source = await createSourceEventStream(args);
  } catch (err) {
    // A fault of this server (graphql-js or a subscribe resolver threw): this subscription is
    // answered an error (INTERNAL_SERVER_ERROR, logged, when the transport masks it), and the
    // socket keeps its other operations; graphql-ws would close it with 4500.
    const fault = err instanceof Error && !(err instanceof GraphQLError) ? err : new Error(err instanceof Error ? err.message : String(err), { cause: err });
    return { errors: [new GraphQLError(fault.message, { originalError: fault })] };
  }
  if (!isAsyncIterable(source)) {
    // The database could not serve the subscription's start: an `error` the client answers by
    // subscribing again, not a result that completes the stream as a refusal would.
    if (source.errors?.length && source.errors.every(isUnavailable)) return failing(unavailable());
    return source;
  }
  const subscription = new SharedSubscription(args, ctx);
  if (!ctx.frames) return mapAsyncIterator(source[Symbol.asyncIterator](), (event) => subscription.resultFor(event));
  const target = new FrameTarget(subscription, ctx.frames, ctx);
  if (isPushStream<object>(source)) target.start(source.startPush(target));
  else target.pull(source[Symbol.asyncIterator]());
  return target;
}

/** One subscription's side of the sharing: its share key, and whether its results depend on its viewer. */
class SharedSubscription {
  /**
   * Learned from this subscription's events: its latest results differed per viewer, so its next
   * events are executed for its viewer alone, until one of them reads no viewer (a message whose
   * `viewerReacted` has no reactions to read it for): the events after that are tried shared again.
   */
  perViewer = false;
  readonly viewerId: string;
  /** The key of executions every subscriber of this shape may share. */
  readonly shape: string;

  constructor(
    private readonly args: ExecutionArgs,
    private readonly ctx: GraphQLContext,
  ) {
    this.viewerId = ctx.viewer?.id ?? '';
    this.shape = shapeOf(args);
  }

  /** The key of executions for this viewer alone (made when first needed). */
  private ownKey?: string;

  /** The key of the executions this subscription takes now. */
  get key(): string {
    return this.perViewer ? (this.ownKey ??= `${this.shape}\u0000${this.viewerId}`) : this.shape;
  }

  /**
   * The event's execution under this subscription's key: one already made for it by another
   * subscriber, or a new one. Executions for every viewer are found under `sharedAs(event)`, one
   * that read the viewer only under the event object itself. One that failed is not taken again:
   * a replayed event outlives it (`src/chat/replay-windows.ts` keeps its window a while), and a
   * later subscription tries afresh.
   */
  execution(event: object, loads: object = event): Execution {
    const { key } = this;
    const under = this.perViewer ? event : sharedAs(event);
    const made = shared.get(under)?.get(key);
    const failed = made?.settled !== undefined && 'error' in made.settled;
    const anotherRead = made?.readViewer === true && made.event !== event; // it read the viewer for another read of the message
    return made && !failed && !anotherRead ? made : this.run(event, key, loads, under);
  }

  /** Whether `execution`'s result is this subscription's too (for `event`); learns whether its results depend on the viewer. */
  mayTake(execution: Execution, event: object): boolean {
    this.perViewer = execution.readViewer;
    return !execution.readViewer || (execution.viewerId === this.viewerId && execution.event === event);
  }

  /**
   * This subscription's result for `event`. A new execution loads with every other execution made
   * with the same `loads` key (by default the event: every subscriber's execution of it).
   */
  async resultFor(event: unknown, loads?: object): Promise<ExecutionResult> {
    if (typeof event !== 'object' || event === null) return execute({ ...this.args, rootValue: event });
    const execution = this.execution(event, loads);
    const result = await execution.result;
    return this.mayTake(execution, event) ? result : this.execution(event).result; // another viewer's result: run this one's own
  }

  /**
   * Executes `event` with fresh loaders; while the database cannot serve it, again after a
   * while. When it still cannot, the subscription ends with SERVICE_UNAVAILABLE (the client
   * subscribes again after its last cursor, and the replay brings the event): an event is
   * delivered whole or the stream ends, never skipped.
   */
  private async attempts(event: object, execution: Execution, loads: object): Promise<ExecutionResult> {
    for (let attempt = 0; ; attempt++) {
      // The first attempt loads with every other execution of the same key (other viewers' of this event, or the rest of a replayed group); a retry afresh.
      const loaders = attempt === 0 && this.ctx.eventLoaders ? this.ctx.eventLoaders(loads) : this.ctx.newLoaders();
      const contextValue = watchViewer({ ...this.ctx, loaders }, () => (execution.readViewer = true));
      const result = await execute({ ...this.args, rootValue: event, contextValue });
      if (!result.errors?.some(isUnavailable)) return result;
      if (attempt === RETRY_DELAYS_MS.length) throw unavailable();
      await sleep(RETRY_DELAYS_MS[attempt] * (0.5 + Math.random())); // jittered: stalled executions do not all come back at once
    }
  }

  private run(event: object, key: string, loads: object, under: object): Execution {
    const execution: Execution = { event, viewerId: this.viewerId, readViewer: false, result: Promise.resolve({}) };
    execution.result = this.attempts(event, execution, loads);
    execution.result.then(
      (result) => (execution.settled = { result }),
      (error: unknown) => (execution.settled = { error }),
    );
    let byKey = shared.get(under);
    if (!byKey) shared.set(under, (byKey = new Map()));
    byKey.set(key, execution);
    return execution;
  }
}

const unavailable = () => new AppError(ErrorCode.ServiceUnavailable, 'The database is unreachable or overloaded; subscribe again after your last cursor');

/** A stream that fails at once with `error` (graphql-ws then sends an `error` message for the subscription). */
function failing(error: unknown): AsyncIterableIterator<ExecutionResult> {
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    [Symbol.asyncIterator]: () => iterator,
    next: () => Promise.reject(error),
    return: () => Promise.resolve({ done: true, value: undefined }),
  };
  return iterator;
}

/**
 * Waits before each new attempt of an event's execution that the database could not serve (about
 * 4 s in all). A result with such an error is never delivered: it would stand in for the event.
 */
const RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000];

/**
 * Live events a subscription may have waiting for their executions and writes before its feed
 * buffers instead: far more than a busy event loop falls behind by (leaving the live path costs a
 * re-read and executions of its own), a bound on what a subscription holds all the same.
 */
const MAX_PENDING_LIVE = 256;

/**
 * How long a lane's oldest execution may wait (the database stalls) before its subscriptions take
 * no more live events: their feeds buffer, bounded, and catch up once it answers, instead of each
 * holding a second's worth of retrying executions per second of the stall.
 */
const STALL_MS = 1000;

/**
 * Replayed events a subscription executes and writes together (a catch-up goes a group at a time:
 * their loads in one query per kind, their frames in one write).
 */
const REPLAY_GROUP = 32;

/** Replayed events executed together and written together, in order. */
interface ReplayGroup {
  events: object[];
  /** Per event, the loaders' key of its execution (a live event's is the event: it loads with its other subscribers); none for a replayed one, which loads with the group. */
  loads: Array<object | undefined>;
}

/** Subscribers a lane writes to before it lets other work run (a send's request waits at most one slice). */
const WRITE_SLICE = 64;
/** Frames a slice writes at most: fewer subscribers per slice when each takes many events at once. */
const WRITE_SLICE_FRAMES = 2048;

/** The lanes of each channel (a room hub), by share shape. */
const lanes = new WeakMap<object, Map<string, Lane>>();

function laneOf(channel: object, shape: string): Lane {
  let byShape = lanes.get(channel);
  if (!byShape) lanes.set(channel, (byShape = new Map()));
  let lane = byShape.get(shape);
  if (!lane) byShape.set(shape, (lane = new Lane(byShape, shape)));
  return lane;
}

/** An execution waiting in a lane, with the subscribers that take its result. */
interface LaneEntry {
  event: object;
  execution: Execution;
  /** When the entry was made (`performance.now()`). */
  since: number;
  targets: FrameTarget[];
}

/**
 * The live events of one channel for subscriptions of one shape, in fan-out order: each event's
 * execution (one per share key) with the subscribers that take it. Settled executions leave the
 * lane from the front, in order — a later one that settles first waits — so each subscriber's
 * frames keep its events' order, however the executions interleave. Their frames are written at
 * the end of the event loop's turn, all of one subscriber's in one write: under load, when events
 * come faster than they are written, one write carries several (and costs one system call). A
 * large fan-out is written in slices of subscribers; the events ready when a slice begins that go
 * to the same subscribers in the same order (a run of one shared execution each) go out together,
 * each subscriber's frames in event order in its one write.
 */
class Lane {
  /**
   * Set once the lane has written everything it was given and left its channel's lanes: a busy
   * room's hub lives on, and the lanes of every shape ever subscribed there, with the subscribers
   * of their last events, would live with it. Its subscribers take the next lane of their shape.
   */
  retired = false;
  private readonly entries: LaneEntry[] = [];
  private readonly waiting = new Map<Execution, LaneEntry>();
  /** The entry the last subscriber joined: the next one of the same fan-out most likely joins it too. */
  private last?: { event: object; key: string; entry: LaneEntry };
  /** Settled, in order, waiting to be written. */
  private ready: LaneEntry[] = [];
  /**
   * What is being written, as runs of entries with the same subscribers in the same order, and
   * how far: a large fan-out is written in slices, with other work (a send's request) in between.
   */
  private batch: LaneEntry[][] = [];
  private atRun = 0;
  private atTarget = 0;
  /** The subscribers a slice gave a first result to (reused: a slice allocates nothing per subscriber). */
  private readonly touched: Array<FrameTarget | undefined> = [];
  private scheduled = false;
  /** Ends the write-out's mark (`liveWriteOut`) once nothing is left to write. */
  private writing?: () => void;
  /** The oldest execution has waited over STALL_MS (checked as each new one is made; cleared as executions settle). */
  stalled = false;

  constructor(
    /** The lanes of its channel, by shape. */
    private readonly home: Map<string, Lane>,
    private readonly shape: string,
  ) {}

  add(event: object, target: FrameTarget): void {
    const { key } = target.subscription;
    const { last } = this;
    if (last && last.event === event && last.key === key) last.entry.targets.push(target);
    else this.join(event, target, (entry) => this.entries.push(entry));
  }

  /** Puts `target` into the entry of `event`'s execution for it, making the entry with `place` when there is none. */
  private join(event: object, target: FrameTarget, place: (entry: LaneEntry) => void): void {
    const execution = target.subscription.execution(event);
    let entry = this.waiting.get(execution);
    if (!entry) {
      const since = performance.now();
      entry = { event, execution, since, targets: [] };
      this.waiting.set(execution, entry);
      place(entry);
      const oldest = this.entries[0];
      this.stalled = oldest !== undefined && since - oldest.since > STALL_MS;
      if (!execution.settled) void execution.result.then(this.settle, this.settle);
      else queueMicrotask(this.settle);
    }
    entry.targets.push(target);
    this.last = { event, key: target.subscription.key, entry };
  }

  private readonly settle = (): void => {
    if (this.entries[0]?.execution.settled) this.stalled = false;
    while (this.entries.length > 0 && this.entries[0].execution.settled) {
      const entry = this.entries.shift()!;
      const { event, execution, targets } = entry;
      this.waiting.delete(execution);
      if (this.last?.entry === entry) this.last = undefined;
      // Split in one pass: those whose result this is stay, the others run their own. The kept
      // ones are copied only once one is refused: usually none is, and an event copies nothing.
      const again: FrameTarget[] = [];
      if ('result' in execution.settled!) {
        let keep: FrameTarget[] | undefined;
        for (let i = 0; i < targets.length; i++) {
          if (targets[i].subscription.mayTake(execution, event)) {
            keep?.push(targets[i]);
          } else {
            keep ??= targets.slice(0, i);
            again.push(targets[i]);
          }
        }
        if (keep) entry.targets = keep;
      }
      this.ready.push(entry);
      // Another viewer's result: these run their own, ahead of their later events.
      const front: LaneEntry[] = [];
      for (const target of again) this.join(event, target, (made) => front.push(made));
      this.entries.unshift(...front);
    }
    if (this.ready.length > 0 && !this.scheduled) {
      this.scheduled = true;
      this.writing ??= liveWriteOut();
      setImmediate(this.writeOut);
    }
  };

  private readonly writeOut = (): void => {
    if (this.atRun >= this.batch.length) {
      this.batch = runsOfAlike(this.ready);
      this.ready = [];
      this.atRun = this.atTarget = 0;
    }
    const { touched } = this;
    let count = 0;
    let writes = WRITE_SLICE;
    let frames = WRITE_SLICE_FRAMES;
    while (this.atRun < this.batch.length && writes > 0 && frames > 0) {
      const run = this.batch[this.atRun];
      const size = run[0].targets.length;
      // Subscribers this step: as many writes as are left, each taking the run's every entry (at least one).
      const step = Math.min(writes, Math.max(1, Math.floor(frames / run.length)));
      const end = Math.min(size, this.atTarget + step);
      for (const { execution, targets } of run) {
        const settled = execution.settled!;
        const bytes = 'result' in settled ? sharedPayloadBytes(settled.result) : undefined;
        for (let i = this.atTarget; i < end; i++) {
          const target = targets[i];
          if ('error' in settled) target.fail(settled.error);
          else if (target.take(settled.result, bytes)) touched[count++] = target;
        }
      }
      writes -= end - this.atTarget;
      frames -= (end - this.atTarget) * run.length;
      this.atTarget = end;
      if (this.atTarget >= size) {
        this.atRun++;
        this.atTarget = 0;
      }
    }
    for (let i = 0; i < count; i++) {
      touched[i]!.writeTaken();
      touched[i] = undefined;
    }
    liveSliceWritten();
    this.scheduled = this.atRun < this.batch.length || this.ready.length > 0;
    if (this.scheduled) return void setImmediate(this.writeOut);
    this.writing?.();
    this.writing = undefined;
    this.batch = [];
    if (this.entries.length === 0) this.retire();
  };

  /** Everything given is written: leaves its channel (see `retired`). */
  private retire(): void {
    this.retired = true;
    if (this.home.get(this.shape) === this) this.home.delete(this.shape);
  }
}

/**
 * `entries` (in order) as runs of entries whose subscribers are the same, in the same order: a
 * slice of a run writes every entry of the run to the same subscribers, and each of them gets its
 * frames in entry order. An entry joins an earlier run only when none of the runs after it has
 * any of those subscribers (as with each viewer's own executions of a series of events), so
 * every subscriber still gets its entries in order.
 */
function runsOfAlike(entries: LaneEntry[]): LaneEntry[][] {
  const runs: LaneEntry[][] = [];
  /** Each subscriber's last run so far; made only when an entry is not like the one before it. */
  let lastRun: Map<FrameTarget, number> | undefined;
  for (const entry of entries) {
    const { targets } = entry;
    const latest = runs[runs.length - 1];
    if (latest && sameTargets(latest[0].targets, targets)) {
      latest.push(entry);
      continue;
    }
    if (targets.length > 0 && runs.length > 1) {
      const last = (lastRun ??= lastRunsOf(runs));
      const at = last.get(targets[0]);
      const run = at === undefined ? undefined : runs[at];
      if (run && sameTargets(run[0].targets, targets) && targets.every((target) => last.get(target) === at)) {
        run.push(entry);
        continue;
      }
    }
    runs.push([entry]);
    if (lastRun) for (const target of targets) lastRun.set(target, runs.length - 1);
  }
  return runs;
}

/** For each subscriber of `runs`, the index of the last run it is in. */
function lastRunsOf(runs: LaneEntry[][]): Map<FrameTarget, number> {
  const last = new Map<FrameTarget, number>();
  runs.forEach((run, i) => {
    for (const target of run[0].targets) last.set(target, i);
  });
  return last;
}

function sameTargets(a: FrameTarget[], b: FrameTarget[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * One subscription on a WebSocket: writes its results as `next` frames,
 * `{"id":<id>,"type":"next","payload":<result>}` byte for byte as graphql-ws would, the shared
 * results' bytes made once. Live events reach it through a `Lane`; replayed ones (and every event
 * of a source that cannot push) in groups, after its live frames: a group's executions run
 * together, in one of the instance's catch-up turns, and load together (one query per kind for the
 * group), and its frames go out in order in one write, so a subscription whose selection reads the
 * database catches up at the pace of its groups, not of one round trip per event, and many
 * catching up at once take turns on the database. Live events that come while a group is unwritten
 * join the groups, behind it. It is also the iterator
 * graphql-ws holds: its `next()` settles only when the stream ends (then graphql-ws sends
 * `complete`) or fails (then `error`); its `return()` (the client's `complete`, a closed socket)
 * ends the stream, and nothing is written after it.
 */
class FrameTarget implements PushSink<object>, AsyncIterableIterator<ExecutionResult> {
  private readonly prefix: Buffer;
  /** The lane of the channel this subscription's live events come from. */
  private channel?: object;
  private lane?: Lane;
  /** The first live result taken this turn (its payload bytes), and any after it: written together. */
  private taken?: Buffer;
  private takenMore?: Buffer[];
  private stopped = false;
  /** Live events handed over whose frames are not written yet. */
  private pending = 0;
  /** Settles when `pending` drops to 0 (or the subscription stops). */
  private idle?: { promise: Promise<void>; resolve: () => void };
  /** The flush of the last live frame written while the socket was congested, until it has gone out (or `drained` took it). */
  private lastFlush?: Promise<void>;
  /** The replayed group taking events, until its write begins or it is full. */
  private group?: ReplayGroup;
  /** Events in groups whose frames are not written yet. */
  private unwritten = 0;
  /** Every group's write, one after the other. */
  private tail: Promise<void> = Promise.resolve();
  private stopSource: () => unknown = () => undefined;
  private readonly ended: Promise<void>;
  private settle!: (error?: unknown) => void;

  constructor(
    readonly subscription: SharedSubscription,
    private readonly sink: FrameSink,
    private readonly ctx: GraphQLContext,
  ) {
    this.prefix = ownBuffer(`{"id":${JSON.stringify(sink.id)},"type":"next","payload":`);
    this.ended = new Promise<void>((resolve, reject) => (this.settle = (error) => (error === undefined ? resolve() : reject(error))));
    this.ended.catch(() => undefined); // a failure after return() has no one to tell
  }

  /** The source's stop, called on `return()`. */
  start(stop: () => unknown): void {
    this.stopSource = stop;
    if (this.stopped) stop();
  }

  /** Pumps an iterator (a source that cannot push) through `replay`. */
  pull(events: AsyncIterator<unknown>): void {
    this.start(() => events.return?.());
    void (async () => {
      for (;;) {
        const step = await events.next();
        if (step.done || this.stopped) return this.end();
        await this.replay(step.value as object);
      }
    })().catch((err: unknown) => this.end(err));
  }

  live(event: object, channel: object): Promise<void> | undefined {
    if (this.stopped) return undefined;
    if (this.unwritten > 0) return this.ahead(event, event); // behind the replayed frames still to write
    this.pending++;
    if (this.channel !== channel || this.lane!.retired) {
      this.channel = channel;
      this.lane = laneOf(channel, this.subscription.shape);
    }
    this.lane!.add(event, this);
    // A socket its last live write found congested, executions that do not settle (the database
    // stalls), or too many events unwritten: no more live events until they are written and gone
    // out — the feed buffers, bounded, meanwhile. The socket itself is not asked here: this runs for
    // every subscriber of a fan-out before any write, and reading a thousand sockets' state then,
    // and again as each is written, took ~4 % of the fan-out's time (BENCHMARKS.md, "Backpressure
    // read where the frame is written"). A socket congested meanwhile is found by the next write,
    // one frame later.
    return this.lastFlush !== undefined || this.lane!.stalled || this.pending >= MAX_PENDING_LIVE ? this.drained() : undefined;
  }

  /** A replayed event: executed and written with its group; waits while a full group is unwritten. */
  async replay(event: object): Promise<void> {
    if (this.pending > 0 || this.lastFlush) await this.drained(); // its live frames first
    if (this.stopped) return;
    const full = this.ahead(event);
    if (full) await full;
  }

  /**
   * Puts `event` in the open group (opening one: it runs after the groups before it and after this
   * turn of the event loop, so what comes meanwhile joins it); once the group is full, resolves to
   * when it is written. `loads`: see `ReplayGroup`.
   */
  private ahead(event: object, loads?: object): Promise<void> | undefined {
    let group = this.group;
    if (!group) {
      const opened: ReplayGroup = (group = this.group = { events: [], loads: [] });
      this.tail = this.tail.then(nextTurn).then(() => this.writeGroup(opened));
    }
    group.events.push(event);
    group.loads.push(loads);
    this.unwritten++;
    if (group.events.length < REPLAY_GROUP) return undefined;
    this.group = undefined;
    return this.tail; // the newest group's write is the tail's end
  }

  /**
   * Executes a group in one of the instance's catch-up turns (`src/catch-up.ts`), then writes its
   * frames in order, in one write; an execution that failed ends the stream after the frames
   * before it.
   */
  private async writeGroup(group: ReplayGroup): Promise<void> {
    if (this.group === group) this.group = undefined;
    const shared = {}; // the loaders' key of the group's own executions
    const results = this.stopped
      ? []
      : await catchUpTurn(() => Promise.allSettled(group.events.map((event, i) => this.subscription.resultFor(event, group.loads[i] ?? shared))));
    this.unwritten -= group.events.length;
    if (this.stopped) return;
    const rests: Buffer[] = [];
    const failed = results.find((result) => result.status === 'rejected');
    for (const result of results) {
      if (result.status === 'rejected') break;
      rests.push(payloadBytes(result.value, this.sink, this.ctx));
    }
    const flushed = rests.length > 0 ? this.sink.write(this.prefix, rests) : undefined;
    if (failed) {
      this.stopped = true; // nothing goes out after the error
      this.settle(failed.reason);
      void this.stopSource();
    } else if (flushed) {
      await flushed;
    }
  }

  /** The stream ends (with `error`) once the frames of its replayed events are written. */
  end(error?: unknown): void {
    void this.tail.then(() => this.settle(error));
  }

  /** A live result from its lane, written with the others of this turn by `writeTaken`; true when it is the first of them. */
  take(result: ExecutionResult, shared: Buffer | undefined): boolean {
    this.pending--;
    if (this.stopped) {
      if (this.pending === 0) this.wakeIdle();
      return false;
    }
    const bytes = shared ?? payloadBytes(result, this.sink, this.ctx);
    if (this.taken === undefined) {
      this.taken = bytes;
      return true;
    }
    (this.takenMore ??= []).push(bytes);
    return false;
  }

  /** Writes the live results taken this turn, in one write. */
  writeTaken(): void {
    const first = this.taken;
    if (first !== undefined && !this.stopped) {
      const more = this.takenMore;
      const flushed = more ? this.sink.write(this.prefix, [first, ...more]) : this.writeOne(first);
      if (flushed) this.congestedUntil(flushed);
    }
    this.taken = this.takenMore = undefined;
    if (this.pending === 0) this.wakeIdle();
  }

  /** The socket was congested at a live write: `live` asks the source to wait until that write's frames have gone out. */
  private congestedUntil(flushed: Promise<void>): void {
    this.lastFlush = flushed;
    const gone = () => {
      if (this.lastFlush === flushed) this.lastFlush = undefined;
    };
    flushed.then(gone, gone);
  }

  /** One frame, through an array made once (`write` reads its `rests` before it returns). */
  private writeOne(rest: Buffer): Promise<void> | undefined {
    ONE[0] = rest;
    try {
      return this.sink.write(this.prefix, ONE);
    } finally {
      ONE[0] = EMPTY;
    }
  }

  private wakeIdle(): void {
    this.idle?.resolve();
    this.idle = undefined;
  }

  /** A live execution failed: the stream ends with its error (graphql-ws sends `error`) after what it took before. */
  fail(error: unknown): void {
    this.writeTaken();
    this.pending--;
    if (this.stopped) return;
    this.stopped = true; // nothing goes out after the error
    this.wakeIdle();
    this.settle(error);
    void this.stopSource();
  }

  // The iterator graphql-ws holds, as methods of the class (no closures per subscription).

  /** Settles only when the stream ends (graphql-ws then sends `complete`) or fails (then `error`). */
  next(): Promise<IteratorResult<ExecutionResult>> {
    return this.ended.then(() => DONE);
  }

  /** The client's `complete` or a closed socket: ends the stream; nothing is written after it. */
  return(): Promise<IteratorResult<ExecutionResult>> {
    return this.stop().then(() => DONE);
  }

  throw(err: unknown): Promise<IteratorResult<ExecutionResult>> {
    return this.stop().then(() => Promise.reject(err));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private async stop(): Promise<void> {
    this.stopped = true;
    this.wakeIdle();
    await this.stopSource();
  }

  /** Settles once every live frame handed over is written and the last congested one has gone out. */
  private async drained(): Promise<void> {
    while (this.pending > 0 && !this.stopped) {
      if (!this.idle) {
        let resolve!: () => void;
        const promise = new Promise<void>((r) => (resolve = r));
        this.idle = { promise, resolve };
      }
      await this.idle.promise;
    }
    const flush = this.lastFlush;
    this.lastFlush = undefined;
    if (flush) await flush;
  }
}

/**
 * `text` in a buffer of its own. `Buffer.from` cuts small buffers from a shared 8 KB pool, and a
 * slice kept for a subscription's life keeps its whole pool alive (~2 KB per subscription).
 */
function ownBuffer(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** `FrameTarget.writeOne`'s array. */
const EMPTY = Buffer.alloc(0);
const ONE: Buffer[] = [EMPTY];

/** A result as the rest of a `next` frame (`<payload JSON>}`): a shared one's made once; one with errors masked for this subscriber. */
function payloadBytes(result: ExecutionResult, sink: FrameSink, ctx: GraphQLContext): Buffer {
  return sharedPayloadBytes(result) ?? Buffer.from(`${JSON.stringify(sink.mask(result, ctx))}}`);
}

/** The rest of a `next` frame for a result every subscriber sees alike (one without errors), made once; undefined for one with errors. */
function sharedPayloadBytes(result: ExecutionResult): Buffer | undefined {
  if (result.errors?.length) return undefined;
  let bytes = serialised.get(result);
  if (bytes === undefined) serialised.set(result, (bytes = Buffer.from(`${JSON.stringify(result)}}`)));
  return bytes;
}

/** Each document's text, printed once (subscriptions of one query text share one document, see `prepareOperation`). */
const texts = new WeakMap<DocumentNode, string>();
function printed(document: DocumentNode): string {
  let text = texts.get(document);
  if (text === undefined) texts.set(document, (text = print(document)));
  return text;
}

/**
 * What makes two subscriptions execute an event alike: the document, the operation, and the values
 * of the variables read below the root field. The root field's own arguments choose the stream
 * (the room, the resume point `after`), not how an event is read, so clients that resumed from
 * different cursors still share one execution.
 */
function shapeOf(args: ExecutionArgs): string {
  const values = args.variableValues ?? {};
  const readValues = Object.fromEntries(variablesRead(args.document).map((name) => [name, values[name]]));
  return interned(JSON.stringify([printed(args.document), readValues, args.operationName ?? null]));
}

/** Each document's variables read below its root fields, sorted (found once per document). */
const readByDocument = new WeakMap<DocumentNode, string[]>();
function variablesRead(document: DocumentNode): string[] {
  let names = readByDocument.get(document);
  if (names) return names;
  const read = new Set<string>();
  const collect = (node: ASTNode) => visit(node, { Variable: (v) => void read.add(v.name.value) });
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) {
      collect(definition);
      continue;
    }
    for (const directive of definition.directives ?? []) collect(directive);
    for (const selection of definition.selectionSet.selections) {
      if (selection.kind !== Kind.FIELD) collect(selection);
      else for (const part of [...(selection.directives ?? []), ...(selection.selectionSet ? [selection.selectionSet] : [])]) collect(part);
    }
  }
  names = [...read].sort();
  readByDocument.set(document, names);
  return names;
}

/**
 * Shapes in use, each kept once: thousands of subscriptions of one shape hold one string, and
 * compare by identity. Bounded by count and by characters (a shape carries the values of the
 * variables read below its root field, up to a request's size each); one that leaves only stops
 * being shared, never being correct.
 */
const shapes = new LRUCache<string, string>({ max: 10_000, maxSize: 8 * 1024 * 1024, sizeCalculation: (shape) => 2 * shape.length }); // two bytes a character: printed documents are two-byte strings

function interned(shape: string): string {
  const known = shapes.get(shape);
  if (known !== undefined) return known;
  shapes.set(shape, shape);
  return shape;
}

/** The context with its viewer and per-viewer loaders watched: `onRead` is told when either is read. */
function watchViewer(ctx: GraphQLContext, onRead: () => void): GraphQLContext {
  const loaders = Object.defineProperty({ ...ctx.loaders }, 'viewer', {
    get: () => {
      onRead();
      return ctx.loaders.viewer;
    },
  });
  return Object.defineProperty({ ...ctx, loaders }, 'viewer', {
    get: () => {
      onRead();
      return ctx.viewer;
    },
  });
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function';
}
